import { strict as assert } from 'assert';
import * as path from 'path';
import * as fs from 'fs';
import { base, modelsDir, shippedModels } from '../../src/lab/base';
import { generate } from '../../src/model';
import { textDocuments } from '../../src/data/load';
import { evalWindows, evaluateLm, tokenStream } from '../../src/train/causal-lm';
import { engineReady } from '../helpers';

const root = path.join(__dirname, '..', '..');

describe('lab/base', () => {
  before(engineReady);

  // Every shipped base: its card's perplexity is re-measured, and what it writes is English-like.
  // The corpus's words and word pairs, read once when an English-likeness test first runs (not at file load).
  let corpusSets: { vocabulary: Set<string>; bigrams: Set<string> } | undefined;
  const corpus = () => {
    if (!corpusSets) {
      const words = fs.readFileSync(path.join(root, 'datasets/general/train.txt'), 'utf8').toLowerCase().match(/[a-z]+/g) ?? [];
      corpusSets = { vocabulary: new Set(words), bigrams: new Set(words.slice(1).map((w, i) => `${words[i]} ${w}`)) };
    }
    return corpusSets;
  };

  it('ships tiny-llama and a larger base with a context of at least 256', () => {
    const names = shippedModels();
    assert.ok(names.includes('tiny-llama'), names.join());
    const contexts = names.map((n) => JSON.parse(fs.readFileSync(path.join(modelsDir, n, 'config.json'), 'utf8')).max_position_embeddings as number);
    assert.ok(contexts.some((c) => c >= 256), `contexts ${contexts}`);
  });

  for (const name of shippedModels()) {
    describe(name, () => {
      it('its held-out perplexity is the one its card records, on all of datasets/general/heldout.txt', async function () {
        this.timeout(600_000);
        const b = await base(name);
        try {
          assert.equal(b.model.config.family, 'llama');
          const card = b.card!;
          assert.equal(card.params, b.model.paramCount());
          const held = tokenStream(b.tokenizer, textDocuments(path.join(root, 'datasets/general/heldout.txt'), '\n\n\n'));
          const r = await evaluateLm(b.model, evalWindows(held, b.model.config.contextLength, Number(card.batchSize ?? 16)));
          assert.ok(Math.abs(r.perplexity - Number(card.heldOutPerplexity)) < 0.006, `perplexity ${r.perplexity} vs card ${card.heldOutPerplexity}`);
          assert.ok(r.perplexity < 100, `a trained base, not noise (vocab ${b.tokenizer.vocabSize})`);
        } finally {
          b.model.dispose();
        }
      });

      it('writes English-like text: its words and word pairs are found in the corpus', async function () {
        this.timeout(120_000);
        const { model, tokenizer } = await base(name);
        const { vocabulary, bigrams } = corpus();
        const words: string[] = [];
        let pairs = 0;
        let knownPairs = 0;
        try {
          for (const [i, prompt] of ['The ship', 'It was the best', 'Fellow citizens,', 'In the beginning', 'The whale'].entries()) {
            const ids = generate(model, tokenizer.encode(prompt), { maxNewTokens: 60, doSample: true, topP: 0.9, temperature: 0.8, seed: i + 1 });
            const w = tokenizer.decode(ids, { skipSpecialTokens: true }).toLowerCase().match(/[a-z]+/g) ?? [];
            for (let j = 1; j < w.length; j++) {
              pairs++;
              if (bigrams.has(`${w[j - 1]} ${w[j]}`)) knownPairs++;
            }
            words.push(...w);
          }
        } finally {
          model.dispose();
        }
        // Measured (BENCHMARKS.md, "Base models"): tiny-llama 0.975 of words and 0.815 of pairs; an untrained
        // model of the same tokenizer 0.55 and 0.07. The bounds sit well between.
        const wordShare = words.filter((w) => vocabulary.has(w)).length / words.length;
        assert.ok(words.length >= 100, `only ${words.length} words`);
        assert.ok(wordShare >= 0.9, `${(wordShare * 100).toFixed(1)}% of generated words are in the corpus`);
        assert.ok(knownPairs / pairs >= 0.6, `${((knownPairs / pairs) * 100).toFixed(1)}% of generated word pairs are in the corpus`);
      });
    });
  }

  it('names what is shipped when a name is unknown, and the folder when a path is not a model', async () => {
    await assert.rejects(base('gpt-17'), /no shipped model "gpt-17" \(shipped: .*tiny-llama/);
    await assert.rejects(base('./no/such/model'), /no\/such\/model: not a model folder/);
  });
});
