import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { CausalLM, modelConfig } from '../../src/model';
import { Trainer } from '../../src/train/trainer';
import { TokenWindows, causalLmObjective } from '../../src/train/causal-lm';
import { checkOutputPlace, checkpointBytes } from '../../src/train/output-check';
import { checkpointWriter } from '../../src/io/checkpoint';
import { Tokenizer } from '../../src/tokenizer';
import { engineReady } from '../helpers';

describe('output-check', () => {
  before(engineReady);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-outcheck-'));

  it('accepts a missing folder under a writable one, and an existing folder; creates nothing', () => {
    const fresh = path.join(dir, 'a', 'b');
    assert.ok(checkOutputPlace(fresh).freeBytes > 0);
    assert.ok(!fs.existsSync(path.join(dir, 'a')));
    assert.ok(checkOutputPlace(dir).freeBytes > 0);
  });

  it('names a file in the way: at the folder itself or at a parent', () => {
    const file = path.join(dir, 'f');
    fs.writeFileSync(file, '');
    assert.throws(() => checkOutputPlace(file, { option: '--out' }), { message: `--out ${file}: is a file, not a folder` });
    assert.throws(() => checkOutputPlace(path.join(file, 'x', 'y'), { option: 'TrainConfig.outDir' }),
      { message: `TrainConfig.outDir ${path.join(file, 'x', 'y')}: ${file} is a file, so no folder can be made under it` });
  });

  it('refuses a disk with less free space than one checkpoint, with both sizes', () => {
    const statfs = () => ({ bavail: 100, bsize: 4096 });
    assert.throws(() => checkOutputPlace(dir, { option: '--out', bytesNeeded: 5e6, statfs }), /--out .*: 400\.0 kB free on its disk, but one checkpoint of this model needs about 4\.8 MB/);
    assert.equal(checkOutputPlace(dir, { bytesNeeded: 409_600, statfs }).freeBytes, 409_600);
  });

  it('a Trainer with outDir and a checkpoint writer checks the folder before step 1', async () => {
    const file = path.join(dir, 'in-the-way');
    fs.writeFileSync(file, '');
    const model = new CausalLM(modelConfig({ vocabSize: 64, contextLength: 16, dModel: 32, nLayers: 1, nHeads: 4 }), { seed: 1 });
    const t = new Trainer(model, causalLmObjective, new TokenWindows(Array.from({ length: 400 }, (_, i) => i % 50), 16, 4),
      { lr: 1e-3, maxSteps: 5, checkpointEvery: 5, outDir: path.join(file, 'run') }, { checkpoints: checkpointWriter() });
    await assert.rejects(t.train(), { message: `TrainConfig.outDir ${path.join(file, 'run')}: ${file} is a file, so no folder can be made under it` });
    assert.equal(t.step, 0, 'no step ran');
    t.dispose();
    model.dispose();
  });

  it('estimates a checkpoint within a few percent of the one written', async () => {
    const model = new CausalLM(modelConfig({ vocabSize: 300, contextLength: 16, dModel: 32, nLayers: 2, nHeads: 4 }), { seed: 1 });
    const tok = Tokenizer.train(['the cat sat on the mat '.repeat(50)], { vocabSize: 300 });
    const ids = Array.from({ length: 400 }, (_, i) => i % 50);
    const t = new Trainer(model, causalLmObjective, new TokenWindows(ids, 16, 4), { lr: 1e-3, maxSteps: 2, outDir: dir }, { checkpoints: checkpointWriter(tok) });
    await t.train();
    const saved = await t.saveCheckpoint();
    const bytes = fs.readdirSync(saved).reduce((s, f) => s + fs.statSync(path.join(saved, f)).size, 0);
    const est = checkpointBytes(t as Trainer<unknown>, JSON.stringify(tok.toJSON()).length);
    assert.ok(est >= bytes && est < bytes * 1.5 + 70_000, `estimate ${est} vs written ${bytes}`);
    t.dispose();
    model.dispose();
  });
});
