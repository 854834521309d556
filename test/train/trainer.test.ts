import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { CausalLM, modelConfig, ModelConfig } from '../../src/model';
import { AdamW, decays } from '../../src/train/optimizer';
import { learningRateAt } from '../../src/train/schedule';
import { NonFiniteLossError, Objective, Trainer, TrainConfig } from '../../src/train/trainer';
import { LmBatch, TokenWindows, causalLmObjective, evalWindows, evaluateLm, maskedCrossEntropy } from '../../src/train/causal-lm';
import { checkpointWriter, resumeFrom } from '../../src/io/checkpoint';
import { addLora } from '../../src/peft/lora';
import { engineReady, maxAbsDiff } from '../helpers';

const cfg = (over: Partial<ModelConfig> = {}) => modelConfig({ vocabSize: 64, contextLength: 16, dModel: 32, nLayers: 2, nHeads: 4, dFf: 64, ...over });
// A learnable stream: a repeating pattern with some seeded noise.
const stream = (n: number) => Array.from({ length: n }, (_, i) => (i % 7 === 6 ? (i * 31) % 64 : (i * 3) % 13));

function trainer(over: Partial<TrainConfig> = {}, model = new CausalLM(cfg(), { seed: 1 }), data = new TokenWindows(stream(4000), 16, 8, 3)) {
  return new Trainer(model, causalLmObjective, data, { lr: 3e-3, maxSteps: 10, ...over }, { checkpoints: checkpointWriter() });
}

describe('train', () => {
  before(engineReady);

  it('schedules: warmup then linear, cosine or constant', () => {
    const o = { lr: 1, warmupSteps: 10, totalSteps: 110, minLrRatio: 0 };
    assert.equal(learningRateAt(0, { ...o, schedule: 'linear' }), 0);
    assert.equal(learningRateAt(5, { ...o, schedule: 'cosine' }), 0.5);
    assert.equal(learningRateAt(10, { ...o, schedule: 'cosine' }), 1);
    assert.ok(Math.abs(learningRateAt(60, { ...o, schedule: 'cosine' }) - 0.5) < 1e-12);
    assert.equal(learningRateAt(60, { ...o, schedule: 'linear' }), 0.5);
    assert.equal(learningRateAt(110, { ...o, schedule: 'linear' }), 0);
    assert.equal(learningRateAt(60, { ...o, schedule: 'constant' }), 1);
    assert.ok(Math.abs(learningRateAt(110, { ...o, schedule: 'cosine', minLrRatio: 0.1 }) - 0.1) < 1e-12);
  });

  it('AdamW matches a hand computation, decaying matrices only', () => {
    const w = tf.variable(tf.tensor2d([[1, -2]], [1, 2]));
    const b = tf.variable(tf.tensor1d([0.5]));
    const opt = new AdamW(new Map<string, tf.Variable>([['lin.weight', w], ['lin.bias', b]]), { weightDecay: 0.1 });
    const gw = tf.tensor2d([[0.2, -0.4]], [1, 2]);
    const gb = tf.tensor1d([1]);
    for (let s = 0; s < 2; s++) opt.apply(new Map<string, tf.Tensor>([['lin.weight', gw], ['lin.bias', gb]]), 0.01);
    // Constant gradient g: m̂ = g, v̂ = g², so each step moves by lr·(sign(g)·|g|/(|g|+ε) + λ·p).
    let p = [1, -2];
    let q = 0.5;
    for (let s = 0; s < 2; s++) {
      p = p.map((x, i) => x - 0.01 * ([0.2, -0.4][i] / (Math.abs([0.2, -0.4][i]) + 1e-8) + 0.1 * x));
      q = q - 0.01 * (1 / (1 + 1e-8));
    }
    assert.ok(maxAbsDiff(w.dataSync(), p) < 1e-6);
    assert.ok(Math.abs(b.dataSync()[0] - q) < 1e-6, 'bias is not decayed');
    assert.equal(decays('embed_tokens.weight', w), false);
    assert.equal(decays('layers.0.attn_norm.weight', b), false);
    assert.equal(decays('layers.0.attn.q_proj.weight', w), true);
    opt.dispose();
    tf.dispose([w, b, gw, gb]);
  });

  it('masked cross-entropy equals the hand value and ignores masked positions', () => {
    const logits = tf.tensor3d([[[1, 2, 3], [0, 0, 0]]]);
    const targets = tf.tensor2d([[2, 1]], [1, 2], 'int32');
    const l1 = -(3 - Math.log(Math.exp(1) + Math.exp(2) + Math.exp(3)));
    const l2 = Math.log(3);
    assert.ok(Math.abs(maskedCrossEntropy(logits, targets, tf.tensor2d([[1, 1]])).dataSync()[0] - (l1 + l2) / 2) < 1e-6);
    assert.ok(Math.abs(maskedCrossEntropy(logits, targets, tf.tensor2d([[1, 0]])).dataSync()[0] - l1) < 1e-6);
    assert.equal(Math.abs(maskedCrossEntropy(logits, targets, tf.tensor2d([[0, 0]])).dataSync()[0]), 0);
  });

  it('lowers the loss, keeps the tensor count flat, and is deterministic for a seed', async () => {
    const run = async () => {
      const t = trainer({ maxSteps: 30, warmupSteps: 3, schedule: 'cosine' }, new CausalLM(cfg({ dropout: 0.1 }), { seed: 1 }));
      const counts: number[] = [];
      t.on('step', () => counts.push(tf.memory().numTensors));
      const r = await t.train();
      t.dispose();
      t.model.dispose();
      return { losses: r.history.map((h) => h.loss), counts };
    };
    const a = await run();
    const b = await run();
    assert.deepEqual(a.losses, b.losses);
    assert.ok(a.losses.at(-1)! < a.losses[0] - 1, `loss ${a.losses[0]} → ${a.losses.at(-1)}`);
    assert.equal(new Set(a.counts.slice(1)).size, 1, `tensor counts ${a.counts}`);
  });

  it('profiles the first step\'s peak memory, without changing the run', async () => {
    const plain = trainer({ maxSteps: 3 });
    const profiled = trainer({ maxSteps: 3, profileMemory: true });
    const [a, b] = [await plain.train(), await profiled.train()];
    assert.deepEqual(a.history.map((m) => m.loss), b.history.map((m) => m.loss));
    const peak = b.history[0].peakBytes!;
    // At least the weights, their gradients and the AdamW moments' share live during a step.
    const weightBytes = profiled.model.paramCount() * 4;
    assert.ok(peak > weightBytes, `peak ${peak} vs weights ${weightBytes}`);
    assert.equal(b.history[1].peakBytes, undefined);
    assert.equal(a.history[0].peakBytes, undefined);
    for (const t of [plain, profiled]) {
      t.dispose();
      t.model.dispose();
    }
  });

  it('frees every tensor it made: trainer.dispose + model.dispose return to the starting count', async () => {
    const before = tf.memory().numTensors;
    const t = trainer({ maxSteps: 3 });
    await t.train();
    t.dispose();
    t.model.dispose();
    assert.equal(tf.memory().numTensors, before);
  });

  it('gradient accumulation of 2×4 equals one batch of 8', async () => {
    const base = new CausalLM(cfg(), { seed: 4 });
    const copy = new CausalLM(cfg(), { seed: 4 });
    const a = trainer({ maxSteps: 3 }, base, new TokenWindows(stream(4000), 16, 8, 5));
    const b = trainer({ maxSteps: 3, gradAccumSteps: 2 }, copy, new TokenWindows(stream(4000), 16, 4, 5));
    const ra = await a.train();
    const rb = await b.train();
    for (let i = 0; i < 3; i++) assert.ok(Math.abs(ra.history[i].loss - rb.history[i].loss) < 1e-5);
    for (const [p, { variable }] of base.params) assert.ok(maxAbsDiff(variable.dataSync(), copy.weight(p).dataSync()) < 1e-5, p);
    [a, b].forEach((t) => { t.dispose(); t.model.dispose(); });
  });

  it('clips the global gradient norm', async () => {
    const m = new CausalLM(cfg(), { seed: 2 });
    const before = new Map([...m.params].map(([p, { variable }]) => [p, variable.dataSync().slice()]));
    // With clipping to 1e-3 and SGD-like first Adam step, the step size is still lr·sign; so compare
    // the reported pre-clip norm with a direct computation instead.
    const data = new TokenWindows(stream(4000), 16, 8, 9);
    const probe = data.next();
    const vars = [...m.trainableParams().values()];
    const { value, grads } = tf.variableGrads(() => causalLmObjective.loss(m, probe, { training: false, seed: 0 }), vars);
    const direct = Math.sqrt(Object.values(grads).reduce((s, g) => s + tf.sum(tf.square(g)).dataSync()[0], 0));
    tf.dispose([value, Object.values(grads)]);
    causalLmObjective.dispose(probe);
    const t = trainer({ maxSteps: 1, maxGradNorm: 1e-3 }, m, new TokenWindows(stream(4000), 16, 8, 9));
    const r = await t.train();
    assert.ok(Math.abs(r.history[0].gradNorm - direct) < 1e-3 * direct);
    assert.ok([...m.params].some(([p, { variable }]) => maxAbsDiff(variable.dataSync(), before.get(p)!) > 0));
    t.dispose();
    m.dispose();
  });

  it('stops on a NaN loss with an error naming the step and the last good checkpoint', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-nan-'));
    let calls = 0;
    const poisoned: Objective<LmBatch> = {
      ...causalLmObjective,
      loss: (model, batch, ctx) => {
        const l = causalLmObjective.loss(model, batch, ctx);
        return ++calls >= 5 ? (tf.mul(l, NaN) as tf.Scalar) : l;
      },
    };
    const m = new CausalLM(cfg(), { seed: 1 });
    const t = new Trainer(m, poisoned, new TokenWindows(stream(4000), 16, 8), { lr: 1e-3, maxSteps: 10, checkpointEvery: 2, outDir: dir }, { checkpoints: checkpointWriter() });
    const snapshot = () => m.weight('layers.0.attn.q_proj.weight').dataSync().slice();
    let atFailure: ReturnType<typeof snapshot> | undefined;
    t.on('step', (s) => { if (s.step === 4) atFailure = snapshot(); });
    await assert.rejects(t.train(), (e: unknown) => {
      assert.ok(e instanceof NonFiniteLossError);
      assert.match(e.message, /step 5: loss is NaN; last good checkpoint: .*checkpoint-4/);
      return true;
    });
    assert.deepEqual(snapshot(), atFailure, 'weights untouched by the bad step');
    assert.ok(fs.existsSync(path.join(dir, 'checkpoint-4', 'model.safetensors')));
    t.dispose();
    m.dispose();
  });

  it('resumes from a checkpoint to the same losses as an uninterrupted run', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-resume-'));
    const mk = (over: Partial<TrainConfig> = {}) => trainer({ maxSteps: 8, warmupSteps: 2, schedule: 'cosine', outDir: dir, ...over }, new CausalLM(cfg({ dropout: 0.1 }), { seed: 7 }), new TokenWindows(stream(3000), 16, 8, 11));
    const full = mk();
    const whole = (await full.train()).history.map((h) => h.loss);
    const first = mk({ checkpointEvery: 4 });
    first.on('step', () => undefined);
    const stopAt4 = first.on('checkpoint', () => { first.config.maxSteps = 4; });
    await first.train();
    stopAt4();
    const resumed = mk();
    resumeFrom(resumed as Trainer<unknown>, path.join(dir, 'checkpoint-4'));
    assert.equal(resumed.step, 4);
    const rest = (await resumed.train()).history.map((h) => h.loss);
    assert.equal(rest.length, 8);
    for (let i = 0; i < 8; i++) assert.ok(Math.abs(rest[i] - whole[i]) < 1e-6, `step ${i + 1}: ${rest[i]} vs ${whole[i]}`);
    for (const t of [full, first, resumed]) { t.dispose(); t.model.dispose(); }
  });

  it('resumes a LoRA run: adapter weights travel in the checkpoint, losses continue exactly', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-resume-lora-'));
    const mk = (over: Partial<TrainConfig> = {}) => {
      const m = new CausalLM(cfg(), { seed: 7 });
      addLora(m, { r: 4, targetModules: 'all-linear', seed: 3 });
      return trainer({ maxSteps: 6, lr: 1e-2, outDir: dir, ...over }, m, new TokenWindows(stream(3000), 16, 8, 11));
    };
    const full = mk();
    const whole = (await full.train()).history.map((h) => h.loss);
    const first = mk({ checkpointEvery: 3 });
    first.on('checkpoint', () => { first.config.maxSteps = 3; });
    await first.train();
    assert.ok(fs.existsSync(path.join(dir, 'checkpoint-3', 'adapter_params.safetensors')));
    const resumed = mk();
    resumeFrom(resumed as Trainer<unknown>, path.join(dir, 'checkpoint-3'));
    const rest = (await resumed.train()).history.map((h) => h.loss);
    for (let i = 0; i < 6; i++) assert.ok(Math.abs(rest[i] - whole[i]) < 1e-6, `step ${i + 1}: ${rest[i]} vs ${whole[i]}`);
    const plain = trainer({ maxSteps: 6 }, new CausalLM(cfg(), { seed: 7 }));
    assert.throws(() => resumeFrom(plain as Trainer<unknown>, path.join(dir, 'checkpoint-3')), /adapter_params\.safetensors: tensor "adapters\.default\..*" has no adapter weight in the model/);
    for (const t of [full, first, resumed, plain]) { t.dispose(); t.model.dispose(); }
  });

  it('evaluates periodically and stops early when eval loss stalls', async () => {
    const evalTokens = stream(600);
    let evalCalls = 0;
    const m = new CausalLM(cfg(), { seed: 1 });
    const t = new Trainer(m, causalLmObjective, new TokenWindows(stream(4000), 16, 8), { lr: 1e-2, maxSteps: 200, evalEvery: 2, earlyStopPatience: 2, earlyStopThreshold: 10 },
      { evaluate: async (model) => { evalCalls++; return evaluateLm(model, evalWindows(evalTokens, 16, 8)); } });
    const r = await t.train();
    assert.equal(r.stoppedEarly, true);
    assert.equal(r.steps, 6, 'first eval sets the best; two more without a 10-nat gain stop it');
    assert.equal(evalCalls, 3);
    assert.ok(r.evals.every((e) => Math.abs(e.perplexity - Math.exp(e.evalLoss)) < 1e-6 * e.perplexity));
    t.dispose();
    m.dispose();
  });

  it('rejects bad options naming the option', () => {
    const m = new CausalLM(cfg(), { seed: 1 });
    const data = new TokenWindows(stream(400), 16, 2);
    assert.throws(() => new Trainer(m, causalLmObjective, data, { lr: -1 }), /TrainConfig\.lr/);
    assert.throws(() => new Trainer(m, causalLmObjective, data, { gradAccumSteps: 0 }), /TrainConfig\.gradAccumSteps/);
    assert.throws(() => new Trainer(m, causalLmObjective, data, { schedule: 'step' as 'linear' }), /TrainConfig\.schedule/);
    assert.throws(() => new Trainer(m, causalLmObjective, data, { checkpointEvery: 5 }), /outDir/);
    assert.throws(() => new TokenWindows([1, 2, 3], 16, 2), /too few/);
    m.setTrainable(() => true, false);
    assert.throws(() => new Trainer(m, causalLmObjective, data, {}), /no trainable parameters/);
    m.dispose();
  });
});
