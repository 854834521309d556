import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { CausalLM, generate } from '../../src/model';
import { addPrefixTuning, addPromptTuning, adapterSize, fitInitTokens, loadAdapter, loadPromptTuning, peft, registerAdapterLoader, saveAdapter } from '../../src/peft';
import { Trainer } from '../../src/train/trainer';
import { TokenWindows, causalLmObjective } from '../../src/train/causal-lm';
import { baseWeights, logitsArray, stream, tinyFamilies } from './fixtures';
import { engineReady, maxAbsDiff } from '../helpers';

const families = tinyFamilies(32);
const logits = logitsArray;
/** One token per character: enough to test PEFT's text initialisation. */
const charTokenizer = { encode: (text: string) => [...text].map((ch) => ch.charCodeAt(0) % 64) };

describe('peft/prompt', () => {
  before(engineReady);

  it('fits init tokens as PEFT does: cut to P, or repeated until P', () => {
    assert.deepEqual(fitInitTokens([1, 2, 3, 4, 5], 3), [1, 2, 3]);
    assert.deepEqual(fitInitTokens([1, 2], 5), [1, 2, 1, 2, 1]);
    assert.deepEqual(fitInitTokens([1, 2, 3], 3), [1, 2, 3]);
    assert.throws(() => fitInitTokens([], 3), /initFrom gives no tokens/);
  });

  for (const [family, cfg] of Object.entries(families)) {
    describe(family, () => {
      let m: CausalLM;
      beforeEach(() => { m = CausalLM.create(cfg, { seed: 5 }); });
      afterEach(() => m.dispose());

      it('counts P·d trainable parameters and writes PEFT\'s config and file key', async () => {
        const p = addPromptTuning(m, { numVirtualTokens: 6, initFrom: { text: 'Answer:', tokenizer: charTokenizer }, tokenizerNameOrPath: 'models/tiny-llama' });
        assert.equal(adapterSize(m, p).trainable, 6 * 32);
        assert.equal(m.paramCount(true), 6 * 32);
        assert.deepEqual([...p.weights.keys()], ['prompt_embeddings']);
        assert.deepEqual(p.peftConfig(), {
          peft_type: 'PROMPT_TUNING', task_type: 'CAUSAL_LM', num_virtual_tokens: 6, token_dim: 32, num_transformer_submodules: 1,
          num_attention_heads: 4, num_layers: 2, prompt_tuning_init: 'TEXT', prompt_tuning_init_text: 'Answer:',
          tokenizer_name_or_path: 'models/tiny-llama', inference_mode: false,
        });
        const file = await p.fileTensors();
        assert.deepEqual([...file.keys()], ['prompt_embeddings']);
        assert.deepEqual(file.get('prompt_embeddings')!.shape, [6, 32]);
        const d = addPromptTuning(m, {}, 'defaults');
        assert.equal(adapterSize(m, d).trainable, 20 * 32);
        assert.equal(d.peftConfig().prompt_tuning_init, 'RANDOM');
        assert.equal(addPromptTuning(m, { numVirtualTokens: 3, initFrom: 'sampleVocab' }, 'vocab').peftConfig().prompt_tuning_init, 'SAMPLE_VOCAB');
      });

      it('initialised from a text of P tokens, the real tokens\' logits equal the base model on text + tokens', () => {
        const text = 'Say:';
        const textIds = charTokenizer.encode(text);
        const rows = [[4, 8, 15, 16, 23, 42], [1, 2, 3, 4, 5, 6]];
        const base = logits(m, rows.map((r) => [...textIds, ...r]));
        const prompt = addPromptTuning(m, { numVirtualTokens: textIds.length, initFrom: { text, tokenizer: charTokenizer } });
        assert.deepEqual(prompt.initTokens, textIds);
        const got = logits(m, rows);
        assert.deepEqual([got.length, got[0].length, got[0][0].length], [2, 6, 64], 'real tokens only');
        for (let i = 0; i < rows.length; i++) assert.ok(maxAbsDiff(base[i].slice(textIds.length).flat(), got[i].flat()) < 1e-4);
      });

      it('generates the same tokens with and without the cache, also past the window, and continues like the base model', () => {
        const textIds = charTokenizer.encode('abc');
        addPromptTuning(m, { numVirtualTokens: 3, initFrom: { tokens: textIds } });
        const base = peft(m).withDisabledSync(() => generate(m, [...textIds, 1, 2], { maxNewTokens: 10 }));
        assert.deepEqual(generate(m, [1, 2], { maxNewTokens: 10 }), base);
        peft(m).remove('default');
        addPromptTuning(m, { numVirtualTokens: 6, initStd: 1, seed: 3 }, 'rand');
        for (const opts of [{}, { doSample: true, temperature: 1.5, topK: 20, seed: 11 }]) {
          const cached = generate(m, [1, 2, 3], { maxNewTokens: 40, ...opts }); // 43 > 32 − 6: slides
          const plain = generate(m, [1, 2, 3], { maxNewTokens: 40, useCache: false, ...opts });
          assert.deepEqual(cached, plain);
        }
      });

      it('disabled gives the base logits bit for bit', () => {
        const before = logits(m, [[3, 1, 4, 1, 5]]);
        addPromptTuning(m, { numVirtualTokens: 4, initStd: 1 });
        assert.ok(maxAbsDiff(before.flat(2), logits(m, [[3, 1, 4, 1, 5]]).flat(2)) > 1e-3);
        peft(m).disable();
        assert.equal(m.hooks.virtualTokens, undefined);
        assert.equal(maxAbsDiff(before.flat(2), logits(m, [[3, 1, 4, 1, 5]]).flat(2)), 0);
      });

      it('packed documents each see the virtual tokens as if alone (segmentIds + positionIds)', () => {
        addPromptTuning(m, { numVirtualTokens: 4, initStd: 1 });
        const d1 = [7, 8, 9];
        const d2 = [10, 11, 12, 13];
        const segmentIds = tf.tensor2d([[0, 0, 0, 1, 1, 1, 1]], [1, 7], 'int32');
        const positionIds = tf.tensor2d([[0, 1, 2, 0, 1, 2, 3]], [1, 7], 'int32');
        const packed = logits(m, [[...d1, ...d2]], { segmentIds, positionIds });
        assert.ok(maxAbsDiff(logits(m, [d1])[0].flat(), packed[0].slice(0, 3).flat()) < 1e-4);
        assert.ok(maxAbsDiff(logits(m, [d2])[0].flat(), packed[0].slice(3).flat()) < 1e-4);
        tf.dispose([segmentIds, positionIds]);
      });
    });
  }

  it('trains with the Trainer: loss falls, base weights stay bit-identical, tensor count stays flat', async () => {
    const m = CausalLM.create({ ...families.gpt2, initStd: 0.1 }, { seed: 5 });
    const before = baseWeights(m);
    const prompt = addPromptTuning(m, { numVirtualTokens: 4, initFrom: 'sampleVocab', seed: 2 });
    const start = Array.from(prompt.weights.get('prompt_embeddings')!.dataSync());
    const t = new Trainer(m, causalLmObjective, new TokenWindows(stream(3000), 16, 8, 3), { lr: 0.1, maxSteps: 16, warmupSteps: 0 });
    const counts: number[] = [];
    t.on('step', () => counts.push(tf.memory().numTensors));
    const losses = (await t.train()).history.map((h) => h.loss);
    t.dispose();
    const mean = (xs: number[]) => xs.reduce((x, y) => x + y, 0) / xs.length;
    assert.ok(mean(losses.slice(-4)) < mean(losses.slice(0, 4)) - 0.1, `losses ${losses}`);
    assert.equal(new Set(counts.slice(2)).size, 1, `tensor counts ${counts}`);
    for (const [k, w] of baseWeights(m)) assert.deepEqual(w, before.get(k), k);
    assert.ok(maxAbsDiff(start, prompt.weights.get('prompt_embeddings')!.dataSync()) > 1e-3);
    m.dispose();
  });

  it('stacks with prefix tuning: prefix, then virtual tokens, then the real tokens; cache equals no cache', () => {
    const m = CausalLM.create(families.llama, { seed: 5 });
    const a = [5, 9, 2];
    const text = [30, 31];
    const base = logits(m, [[...a, ...text, 1, 2, 3]]);
    addPrefixTuning(m, { numVirtualTokens: 3, initFrom: { tokens: a } }, 'prefix');
    addPromptTuning(m, { numVirtualTokens: 2, initFrom: { tokens: text } }, 'prompt');
    peft(m).use(['prefix', 'prompt']);
    assert.equal(m.reservedPositions(), 5);
    assert.ok(maxAbsDiff(base[0].slice(5).flat(), logits(m, [[1, 2, 3]])[0].flat()) < 1e-4);
    const cached = generate(m, [1, 2, 3], { maxNewTokens: 30 });
    assert.deepEqual(cached, generate(m, [1, 2, 3], { maxNewTokens: 30, useCache: false }));
    m.dispose();
  });

  it('rejects bad configs naming the option', () => {
    const m = CausalLM.create(families.llama, { seed: 5 });
    const bad: [object, RegExp][] = [
      [{ numVirtualTokens: -1 }, /numVirtualTokens must be a positive integer/],
      [{ numVirtualTokens: 40 }, /numVirtualTokens \(40\) must be below contextLength \(32\)/],
      [{ initStd: -1 }, /initStd must be > 0/],
      [{ initFrom: 'TEXT' }, /initFrom must be/],
      [{ initFrom: { text: '', tokenizer: charTokenizer } }, /initFrom.text must be a non-empty string/],
      [{ initFrom: { text: 'hi', tokenizer: {} } }, /initFrom.tokenizer must have encode/],
      [{ initFrom: { tokens: [1, 64] } }, /initFrom: 64 is not a token id/],
      [{ prompt_tuning_init: 'TEXT' }, /unknown option "prompt_tuning_init"/],
    ];
    for (const [config, re] of bad) assert.throws(() => addPromptTuning(m, config as never), re);
    addPromptTuning(m, { numVirtualTokens: 20 });
    assert.throws(() => logits(m, [Array.from({ length: 13 }, (_, i) => i)]), /exceeds contextLength 32/);
    m.dispose();
  });
});

describe('peft/prompt files', () => {
  before(engineReady);

  it('saves PEFT\'s prompt_embeddings and loads it back to the same logits', async () => {
    const m = CausalLM.create(families.gpt2, { seed: 5 });
    addPromptTuning(m, { numVirtualTokens: 3, initStd: 1 });
    const want = logits(m, [[1, 2, 3]]);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'prompt-'));
    try {
      await saveAdapter(m, dir);
      peft(m).clear();
      // io.test.ts swaps a fake PROMPT_TUNING loader in and deletes it afterwards; put ours back.
      registerAdapterLoader('PROMPT_TUNING', loadPromptTuning);
      loadAdapter(m, dir, 'back');
      assert.equal(maxAbsDiff(want.flat(2), logits(m, [[1, 2, 3]]).flat(2)), 0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
      m.dispose();
    }
  });
});
