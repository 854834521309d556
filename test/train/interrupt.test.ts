import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { CausalLM, modelConfig } from '../../src/model';
import { Trainer, TrainConfig } from '../../src/train/trainer';
import { TokenWindows, causalLmObjective } from '../../src/train/causal-lm';
import { requestStop, stopOnSignal } from '../../src/train/interrupt';
import { checkpointWriter, resumeFrom } from '../../src/io/checkpoint';
import { PpoTrainer } from '../../src/rlhf/ppo';
import { base } from '../../src/lab/base';
import { engineReady } from '../helpers';

const cfg = modelConfig({ vocabSize: 64, contextLength: 16, dModel: 32, nLayers: 2, nHeads: 4, dFf: 64, dropout: 0.1 });
const stream = (n: number) => Array.from({ length: n }, (_, i) => (i % 7 === 6 ? (i * 31) % 64 : (i * 3) % 13));

function trainer(over: Partial<TrainConfig> = {}, withWriter = true) {
  const model = new CausalLM(cfg, { seed: 5 });
  return new Trainer(model, causalLmObjective, new TokenWindows(stream(3000), 16, 8, 9),
    { lr: 3e-3, maxSteps: 8, warmupSteps: 2, schedule: 'cosine', ...over }, withWriter ? { checkpoints: checkpointWriter() } : {});
}

const free = (t: Trainer<unknown>) => { t.dispose(); t.model.dispose(); };

describe('interrupt', () => {
  before(engineReady);

  it('requestStop with no trainer running asks nothing (the kernel then interrupts the cell)', () => {
    assert.equal(requestStop(), false);
  });

  it('a notebook interrupt without outDir stops at the step boundary; the model stays usable in memory', async () => {
    const t = trainer({}, false);
    const before = (await t.model.weight('layers.0.attn.q_proj.weight').data()).slice();
    const asked: boolean[] = [];
    // The kernel's SIGINT handler calls requestStop() while a step runs; here, during step 3's event.
    t.on('step', (m) => { if (m.step === 3) asked.push(requestStop(), requestStop()); });
    const tensors = tf.memory().numTensors;
    const r = await t.train();
    assert.deepEqual(asked, [true, false], 'first request asks the trainer; a second finds it asked already');
    assert.equal(r.interrupted, true);
    assert.equal(r.steps, 3);
    assert.equal(r.history.length, 3);
    assert.equal(r.lastCheckpoint, undefined);
    assert.equal(r.evals.length, 0);
    assert.equal(tf.memory().numTensors, tensors, 'no tensors leaked by the stop');
    const after = await t.model.weight('layers.0.attn.q_proj.weight').data();
    assert.ok(after.some((v, i) => v !== before[i]), 'the three steps changed the weights');
    assert.equal(requestStop(), false, 'the trainer is no longer registered after train() returns');
    // The same trainer continues when trained again: the request does not linger.
    const more = await t.train();
    assert.equal(more.interrupted, false);
    assert.equal(more.steps, 8);
    free(t as Trainer<unknown>);
  });

  it('with outDir: writes checkpoint-<step>, and resuming from it gives the losses of an uninterrupted run', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-interrupt-'));
    const full = trainer({ outDir: dir });
    const whole = (await full.train()).history.map((h) => h.loss);
    const first = trainer({ outDir: dir });
    first.on('step', (m) => { if (m.step === 3) first.stop(); });
    const r = await first.train();
    assert.equal(r.interrupted, true);
    assert.equal(r.lastCheckpoint, path.join(dir, 'checkpoint-3'));
    assert.ok(fs.existsSync(path.join(dir, 'checkpoint-3', 'optimizer.safetensors')));
    const saved = JSON.parse(fs.readFileSync(path.join(dir, 'checkpoint-3', 'tunelab_state.json'), 'utf8'));
    assert.ok(saved.elapsedMs > 0 && saved.elapsedMs <= r.totalElapsedMs!, `elapsedMs saved: ${saved.elapsedMs}`);
    const resumed = trainer({ outDir: dir });
    resumeFrom(resumed as Trainer<unknown>, r.lastCheckpoint!);
    const rest = await resumed.train();
    assert.equal(rest.interrupted, false);
    assert.deepEqual(rest.history.map((h) => h.loss), whole, 'same losses, step for step');
    // The summary can report the resumed part and the whole run.
    assert.ok(rest.elapsedMs! < rest.totalElapsedMs!);
    // The checkpoint holds the time up to its save: at least the three steps, at most the whole first call.
    const before = rest.totalElapsedMs! - rest.elapsedMs!;
    assert.ok(before >= r.history[2].elapsedMs && before <= r.totalElapsedMs!, `${before} ms restored; first call ${r.totalElapsedMs} ms`);
    for (const t of [full, first, resumed]) free(t as Trainer<unknown>);
  });

  it('does not write a second checkpoint when the stop falls on a checkpoint step', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-interrupt-'));
    const t = trainer({ outDir: dir, checkpointEvery: 2 });
    const written: string[] = [];
    t.on('checkpoint', (c) => written.push(path.basename(c.path)));
    t.on('step', (m) => { if (m.step === 4) t.stop(); });
    const r = await t.train();
    assert.deepEqual(written, ['checkpoint-2', 'checkpoint-4']);
    assert.equal(r.lastCheckpoint, path.join(dir, 'checkpoint-4'));
    free(t as Trainer<unknown>);
  });

  it('a stop during the last step is a normal finish (final eval, not interrupted)', async () => {
    const t = trainer({ maxSteps: 3 }, false);
    t.on('step', (m) => { if (m.step === 3) t.stop(); });
    const r = await t.train();
    assert.equal(r.interrupted, false);
    assert.equal(r.steps, 3);
    free(t as Trainer<unknown>);
  });

  it('PpoTrainer honours requestStop at its step boundary too', async () => {
    const { model, tokenizer } = await base('tiny-llama');
    const t = new PpoTrainer(model, tokenizer, ['The cat', 'A dog'], (_p, r) => r.length % 3, { maxSteps: 50, batchSize: 2, responseLength: 4, seed: 1 });
    t.on('step', (m) => { if (m.step === 2) assert.equal(requestStop(), true); });
    const r = await t.train();
    assert.equal(r.interrupted, true);
    assert.equal(r.steps, 2);
    assert.equal(requestStop(), false);
    t.dispose();
    model.dispose();
  });

  it('stopOnSignal: the first SIGINT stops at the step boundary, a second one forces; removing restores the default', async () => {
    const listeners = process.listenerCount('SIGINT');
    const t = trainer({}, false);
    const calls: string[] = [];
    const release = stopOnSignal(t, { onStop: () => calls.push('stop'), onForce: () => calls.push('force') });
    assert.equal(process.listenerCount('SIGINT'), listeners + 1);
    t.on('step', (m) => { if (m.step === 2) { process.emit('SIGINT', 'SIGINT'); process.emit('SIGINT', 'SIGINT'); } });
    const r = await t.train();
    release();
    assert.deepEqual(calls, ['stop', 'force']);
    assert.equal(r.steps, 2);
    assert.equal(r.interrupted, true);
    assert.equal(process.listenerCount('SIGINT'), listeners);
    free(t as Trainer<unknown>);
  });
});
