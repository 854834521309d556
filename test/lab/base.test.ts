import { strict as assert } from 'assert';
import * as path from 'path';
import { base, shippedModels } from '../../src/lab/base';
import { generate } from '../../src/model';
import { textDocuments } from '../../src/data/load';
import { evalWindows, evaluateLm, tokenStream } from '../../src/train/causal-lm';
import { engineReady } from '../helpers';

const root = path.join(__dirname, '..', '..');

describe('lab/base', () => {
  before(engineReady);

  it('ships tiny-llama, and its held-out perplexity is the one its card records', async function () {
    this.timeout(300_000);
    assert.ok(shippedModels().includes('tiny-llama'));
    const b = await base('tiny-llama');
    assert.equal(b.model.config.family, 'llama');
    const card = b.card!;
    assert.equal(card.params, b.model.paramCount());
    const held = tokenStream(b.tokenizer, textDocuments(path.join(root, 'datasets/general/heldout.txt'), '\n\n\n'));
    const r = await evaluateLm(b.model, evalWindows(held, b.model.config.contextLength, 16));
    assert.ok(Math.abs(r.perplexity - Number(card.heldOutPerplexity)) < 0.006, `perplexity ${r.perplexity} vs card ${card.heldOutPerplexity}`);
    assert.ok(r.perplexity < 100, `a trained base, not noise (vocab ${b.tokenizer.vocabSize})`);
    b.model.dispose();
  });

  it('writes English-looking text', async () => {
    const { model, tokenizer } = await base('tiny-llama');
    const text = tokenizer.decode(generate(model, tokenizer.encode('The ship'), { maxNewTokens: 60, doSample: true, topP: 0.9, temperature: 0.8, seed: 3 }), { skipSpecialTokens: true });
    const words = text.toLowerCase().match(/[a-z]+/g) ?? [];
    assert.ok(words.length >= 20, text);
    const common = new Set(['the', 'and', 'of', 'to', 'a', 'in', 'that', 'he', 'is', 'it', 'for', 'was', 'his', 'with', 'be', 'not', 'shall', 'i', 'we', 'unto', 'all', 'as', 'our', 'this', 'by', 'but', 'they', 'have']);
    const share = words.filter((w) => common.has(w)).length / words.length;
    assert.ok(share > 0.15, `common English words are ${(share * 100).toFixed(0)}% of: ${text}`);
    model.dispose();
  });

  it('names what is shipped when a name is unknown, and the folder when a path is not a model', async () => {
    await assert.rejects(base('gpt-17'), /no shipped model "gpt-17" \(shipped: .*tiny-llama/);
    await assert.rejects(base('./no/such/model'), /no\/such\/model: not a model folder/);
  });
});
