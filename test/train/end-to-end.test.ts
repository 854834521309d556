import { strict as assert } from 'assert';
import { CausalLM, generate } from '../../src/model';
import { Tokenizer } from '../../src/tokenizer';
import { Trainer } from '../../src/train/trainer';
import { TokenWindows, causalLmObjective, evalWindows, evaluateLm } from '../../src/train/causal-lm';
import { engineReady } from '../helpers';

// A small text with fixed phrases, so a trained model's greedy continuation can be checked.
const lines = [
  'the quick brown fox jumps over the lazy dog.',
  'call me ishmael, said the sailor to the sea.',
  'a stitch in time saves nine, said the tailor.',
  'the whale swam past the ship at dawn.',
];
const text = Array.from({ length: 60 }, (_, i) => lines[(i * 7) % lines.length]).join('\n');

describe('train/end-to-end', () => {
  before(engineReady);

  it('a tiny Llama trained for 250 steps on a small text lowers its loss and generates the text', async () => {
    const tok = Tokenizer.train([text], { vocabSize: 320 });
    const ids = tok.encode(text, { addEos: true });
    const model = CausalLM.create({ family: 'llama', vocabSize: tok.vocabSize, contextLength: 32, dModel: 64, nLayers: 2, nHeads: 4, nKvHeads: 2, dFf: 128 }, { seed: 1 });
    const before = await evaluateLm(model, evalWindows(ids, 32, 16));
    const trainer = new Trainer(model, causalLmObjective, new TokenWindows(ids, 32, 16, 1), { lr: 3e-3, maxSteps: 250, warmupSteps: 20, schedule: 'cosine' });
    const r = await trainer.train();
    const after = await evaluateLm(model, evalWindows(ids, 32, 16));
    assert.ok(after.loss < before.loss / 4, `loss ${before.loss.toFixed(3)} → ${after.loss.toFixed(3)}`);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const losses = r.history.map((h) => h.loss);
    assert.ok(mean(losses.slice(-25)) < mean(losses.slice(0, 25)) / 3, 'training loss falls');
    const continuation = tok.decode(generate(model, tok.encode('the quick brown'), { maxNewTokens: 12 }));
    assert.match(continuation, /^ fox jumps over/);
    const sailor = tok.decode(generate(model, tok.encode('call me'), { maxNewTokens: 12 }));
    assert.match(sailor, /^ ishmael/);
    trainer.dispose();
    model.dispose();
  });
});
