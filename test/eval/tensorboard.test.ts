import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { CausalLM, modelConfig } from '../../src/model';
import { Trainer } from '../../src/train/trainer';
import { TokenWindows, causalLmObjective, evalWindows, evaluateLm } from '../../src/train/causal-lm';
import { tensorboard } from '../../src/eval/tensorboard';
import { engineReady } from '../helpers';
import { readEventFile } from '../io/tfevents-reader';

describe('eval/tensorboard (live event file)', function () {
  this.timeout(120000);
  before(engineReady);

  it('writes each step and eval as it happens, under HF\'s tags, and closes at the end', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tb-live-'));
    try {
      const ids = Array.from({ length: 2000 }, (_, i) => (i * 3) % 13);
      const model = new CausalLM(modelConfig({ vocabSize: 16, contextLength: 16, dModel: 16, nLayers: 1, nHeads: 2, dFf: 32 }), { seed: 2 });
      const t = new Trainer(model, causalLmObjective, new TokenWindows(ids, 16, 4, 1), { lr: 1e-3, maxSteps: 3, evalEvery: 2 }, {
        evaluate: (m) => evaluateLm(m, evalWindows(ids.slice(0, 100), 16, 8)),
      });
      const writer = tensorboard(t, dir);
      let seenAfterStep1 = 0;
      t.on('step', (m) => { if (m.step === 1) seenAfterStep1 = readEventFile(writer.file).length; });
      const r = await t.train();
      assert.equal(seenAfterStep1, 1 + 4, 'file version + step 1\'s four scalars, on disk during training');
      assert.throws(() => writer.addScalar('x', 1, 1), /closed/);
      const got = readEventFile(writer.file).slice(1).map((e) => [e.step, e.values[0].tag, e.values[0].value]);
      const want = [
        ...r.history.flatMap((m) => [[m.step, 'train/loss', m.loss], [m.step, 'train/learning_rate', m.lr], [m.step, 'train/grad_norm', m.gradNorm], [m.step, 'train/num_input_tokens_seen', m.tokens]]),
        ...r.evals.flatMap((m) => [[m.step, 'eval/loss', m.evalLoss], [m.step, 'eval/perplexity', m.perplexity]]),
      ].map(([s, tag, v]) => [s, tag, Math.fround(v as number)]);
      const key = (x: unknown[]) => `${x[0]} ${x[1]}`;
      assert.deepEqual([...got].sort((a, b) => key(a).localeCompare(key(b))), [...want].sort((a, b) => key(a).localeCompare(key(b))));
      t.dispose();
      model.dispose();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a writer closed by hand (after a run that threw) stops listening: the trainer trains on', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tb-closed-'));
    try {
      const ids = Array.from({ length: 400 }, (_, i) => (i * 3) % 13);
      const model = new CausalLM(modelConfig({ vocabSize: 16, contextLength: 16, dModel: 16, nLayers: 1, nHeads: 2, dFf: 32 }), { seed: 2 });
      const t = new Trainer(model, causalLmObjective, new TokenWindows(ids, 16, 4, 1), { lr: 1e-3, maxSteps: 2 });
      const writer = tensorboard(t, dir);
      writer.close();
      const r = await t.train();
      assert.equal(r.steps, 2);
      assert.equal(readEventFile(writer.file).length, 1, 'only the file-version event');
      t.dispose();
      model.dispose();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
