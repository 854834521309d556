import { strict as assert } from 'assert';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { CausalLM } from '../../src/model';
import { base } from '../../src/lab/base';
import { textDocuments } from '../../src/data/load';
import { TokenWindows, causalLmObjective, evalWindows, evaluateLm, maskedCrossEntropy, tokenStream } from '../../src/train/causal-lm';
import { Trainer, TrainConfig } from '../../src/train/trainer';
import { continuedPretraining } from '../../src/train/pretrain';
import { sft } from '../../src/train/sft';
import { Penalty, ewc, fisherDiagonal, l2sp, l2spDefaults, ewcDefaults } from '../../src/train/regularize';
import { engineReady, maxAbsDiff } from '../helpers';

const ds = (p: string) => path.join(__dirname, '..', '..', 'datasets', p);
const tiny = (seed = 1) => CausalLM.create({ family: 'llama', vocabSize: 32, contextLength: 8, dModel: 8, nLayers: 1, nHeads: 2, nKvHeads: 1, dFf: 16 }, { seed });
const stream = (n: number) => Array.from({ length: n }, (_, i) => (i % 5 === 4 ? (i * 7) % 32 : (i * 3) % 11));

/** Current trainable weights as plain arrays, by path. */
const values = (m: CausalLM) => new Map([...m.trainableParams()].map(([p, v]) => [p, Array.from(v.dataSync())]));

/** Moves every trainable weight by a deterministic, entry-dependent amount. */
function perturb(m: CausalLM, scale = 0.05): void {
  let k = 0;
  for (const v of m.trainableParams().values()) {
    const d = Float32Array.from(v.dataSync(), (x) => x + scale * Math.sin(1 + k++ * 0.7));
    tf.tidy(() => v.assign(tf.tensor(d, v.shape)));
  }
}

/** Sets one entry of a variable. */
function setEntry(v: tf.Variable, i: number, x: number): void {
  const d = Float32Array.from(v.dataSync());
  d[i] = x;
  tf.tidy(() => v.assign(tf.tensor(d, v.shape)));
}

const termValue = (p: Penalty, m: CausalLM) => tf.tidy(() => p.term(m).dataSync()[0]);

/** Gradient of the penalty term by parameter path. */
function termGrads(p: Penalty, m: CausalLM): Map<string, Float32Array> {
  const params = m.trainableParams();
  const { value, grads } = tf.variableGrads(() => p.term(m), [...params.values()]);
  const out = new Map([...params].map(([path, v]) => [path, grads[v.name].dataSync() as Float32Array]));
  tf.dispose([value, Object.values(grads)]);
  return out;
}

describe('forgetting penalties (L2-SP, EWC)', function () {
  this.timeout(300000);
  before(engineReady);

  it('L2-SP is zero at creation, equals (α/2)Σ‖w − w⁰‖² after a change, and its gradient is α(w − w⁰)', () => {
    const model = tiny();
    const start = tf.memory().numTensors;
    const w0 = values(model);
    const alpha = 0.3;
    const p = l2sp(model, { alpha });
    assert.equal(p.name, 'l2sp');
    assert.equal(termValue(p, model), 0);
    perturb(model);
    const w = values(model);
    let hand = 0;
    for (const [path, a] of w) a.forEach((x, i) => (hand += (x - w0.get(path)![i]) ** 2));
    hand *= alpha / 2;
    const got = termValue(p, model);
    assert.ok(hand > 0.01 && Math.abs(got - hand) < 1e-5 * hand, `${got} vs ${hand}`);
    for (const [path, g] of termGrads(p, model)) {
      const want = w.get(path)!.map((x, i) => alpha * (x - w0.get(path)![i]));
      assert.ok(maxAbsDiff(g, want) < 1e-6, path);
    }
    p.dispose();
    assert.equal(tf.memory().numTensors, start, 'dispose frees the anchor');
    assert.equal(l2spDefaults.alpha, 0.1);
    assert.throws(() => l2sp(model, { alpha: -1 }), /L2spConfig\.alpha must be ≥ 0 \(got -1\)/);
    model.dispose();
  });

  it('penalties name the parameter when the trainable set changes after creation', () => {
    const model = tiny();
    const tokens = stream(60);
    for (const p of [l2sp(model), ewc(model, { tokens }, { samples: 2 })]) {
      model.setTrainable(/^norm\.weight$/, false);
      assert.throws(() => termValue(p, model), new RegExp(`${p.name}: parameter "norm\\.weight" is no longer trainable`));
      model.setTrainable(/^norm\.weight$/, true);
      assert.equal(termValue(p, model), 0);
      p.dispose();
    }
    model.setTrainable(/^norm\.weight$/, false);
    const p = l2sp(model);
    model.setTrainable(/^norm\.weight$/, true);
    assert.throws(() => termValue(p, model), /l2sp: trainable parameter "norm\.weight" was not trainable/);
    p.dispose();
    model.dispose();
  });

  it('the Fisher diagonal is the mean of squared per-window gradients; EWC matches the hand formula and finite differences', () => {
    const model = tiny(4);
    const T = 8;
    const tokens = stream(5 * T + 1);
    const fisher = fisherDiagonal(model, evalWindows(tokens, T, 1), { samples: 4 });
    // Independently: four windows, their gradients squared and averaged in plain arrays.
    const params = model.trainableParams();
    const want = new Map([...params.keys()].map((p) => [p, new Float64Array(params.get(p)!.size)]));
    for (let w = 0; w < 4; w++) {
      const ids = tf.tensor2d([tokens.slice(w * T, w * T + T)], [1, T], 'int32');
      const tgt = tf.tensor2d([tokens.slice(w * T + 1, w * T + T + 1)], [1, T], 'int32');
      const mask = tf.ones([1, T]) as tf.Tensor2D;
      const { value, grads } = tf.variableGrads(() => maskedCrossEntropy(model.forward(ids), tgt, mask), [...params.values()]);
      for (const [p, v] of params) grads[v.name].dataSync().forEach((g, i) => (want.get(p)![i] += (g * g) / 4));
      tf.dispose([ids, tgt, mask, value, Object.values(grads)]);
    }
    assert.deepEqual([...fisher.keys()], [...params.keys()]);
    let peak = 0;
    for (const [p, f] of fisher) {
      peak = Math.max(peak, ...want.get(p)!);
      assert.ok(maxAbsDiff(f.dataSync(), want.get(p)!) < 1e-6 * Math.max(1, peak), p);
    }
    assert.ok(peak > 0);

    // EWC on the raw Fisher: (λ/2)·Σ F (θ − θ*)², by hand.
    const lambda = 50;
    const before = tf.memory().numTensors;
    const theta0 = values(model);
    const raw = ewc(model, fisher, { lambda, normalize: false });
    const normed = ewc(model, fisher, { lambda });
    assert.equal(termValue(raw, model), 0);
    perturb(model, 0.2);
    const theta = values(model);
    let hand = 0;
    let fSum = 0;
    let count = 0;
    for (const [p, f] of fisher) {
      f.dataSync().forEach((fi, i) => {
        hand += fi * (theta.get(p)![i] - theta0.get(p)![i]) ** 2;
        fSum += fi;
        count++;
      });
    }
    hand *= lambda / 2;
    assert.ok(hand > 0 && Math.abs(termValue(raw, model) - hand) < 1e-4 * hand, `${termValue(raw, model)} vs ${hand}`);
    // Normalized: F / mean(F).
    const scaled = (hand * count) / fSum;
    assert.ok(Math.abs(termValue(normed, model) - scaled) < 1e-4 * scaled);

    // Gradient against central differences on the two entries with the largest Fisher (Ω is quadratic).
    const g = termGrads(normed, model);
    const ranked = [...fisher].flatMap(([p, f]) => Array.from(f.dataSync(), (x, i) => ({ p, i, x }))).sort((a, b) => b.x - a.x).slice(0, 2);
    for (const { p, i } of ranked) {
      const v = params.get(p)!;
      const x = v.dataSync()[i];
      const h = 1e-2;
      setEntry(v, i, x + h);
      const up = termValue(normed, model);
      setEntry(v, i, x - h);
      const down = termValue(normed, model);
      setEntry(v, i, x);
      const fd = (up - down) / (2 * h);
      assert.ok(Math.abs(g.get(p)![i] - fd) < 1e-2 * Math.abs(fd) + 1e-4, `${p}[${i}]: ${g.get(p)![i]} vs ${fd}`);
      assert.ok(Math.abs(fd) > 1e-3);
    }
    raw.dispose();
    normed.dispose();
    assert.equal(tf.memory().numTensors, before, 'EWC copies the Fisher it is given and frees its copies');

    // From tokens: the first `samples` windows of the stream, one per sample.
    model.setTrainable(() => true, true);
    const fromTokens = ewc(model, { tokens }, { lambda: 1, seqLen: T, samples: 4, normalize: false });
    const fromMap = ewc(model, fisherDiagonal(model, evalWindows(tokens, T, 1), { samples: 4 }), { lambda: 1, normalize: false });
    perturb(model, 0.1);
    assert.ok(Math.abs(termValue(fromTokens, model) - termValue(fromMap, model)) < 1e-6 * termValue(fromMap, model));
    fromTokens.dispose();
    fromMap.dispose();

    assert.deepEqual(ewcDefaults, { lambda: 0.1, normalize: true, seqLen: null, samples: 32 });
    assert.throws(() => ewc(model, { tokens }, { lambda: -2 }), /EwcConfig\.lambda must be ≥ 0 \(got -2\)/);
    assert.throws(() => ewc(model, { tokens }, { samples: 0 }), /EwcConfig\.samples/);
    assert.throws(() => ewc(model, { tokens }, { seqLen: 9 }), /EwcConfig\.seqLen/);
    const partial = new Map([...fisher].slice(1));
    assert.throws(() => ewc(model, partial), new RegExp(`the Fisher has no entry for trainable parameter "${[...fisher.keys()][0].replace(/\./g, '\\.')}"`));
    tf.dispose([...fisher.values()]);
    model.dispose();
  });

  it('the trainer reports the objective loss and the penalty apart, with flat memory and deterministic runs', async () => {
    const run = async (penalize: boolean, over: Partial<TrainConfig> = {}) => {
      const model = tiny(2);
      const penalty = penalize ? l2sp(model, { alpha: 1 }) : undefined;
      perturb(model); // away from the anchor, so the penalty is already non-zero at step 1
      const t = new Trainer(model, causalLmObjective, new TokenWindows(stream(800), 8, 4, 3), { lr: 1e-2, maxSteps: 5, seed: 5, ...over }, { penalty });
      const counts: number[] = [];
      t.on('step', () => counts.push(tf.memory().numTensors));
      const r = await t.train();
      t.dispose();
      penalty?.dispose();
      model.dispose();
      return { losses: r.history.map((m) => m.loss), penalties: r.history.map((m) => m.penalty), counts };
    };
    const plain = await run(false);
    const pen = await run(true);
    assert.equal(pen.losses[0], plain.losses[0], 'step 1: same weights, the reported loss is the objective alone');
    assert.ok(plain.penalties.every((p) => p === undefined));
    assert.ok(pen.penalties.every((p) => p! > 0), `${pen.penalties}`);
    assert.notDeepEqual(pen.losses, plain.losses, 'the penalty changes training');
    assert.equal(pen.counts[1], pen.counts[4], `tensors after step 2 and 5: ${pen.counts}`);
    assert.deepEqual(await run(true), pen, 'same seed, same run');
    const accum = await run(true, { gradAccumSteps: 2 });
    assert.equal(accum.counts[1], accum.counts[4]);
    assert.ok(Math.abs(accum.penalties[0]! - pen.penalties[0]!) < 1e-6, 'mean over micro-batches');
  });

  it('on the shipped base, L2-SP and EWC keep the weights nearer the base and forget less general text', async () => {
    const SEQ = 64;
    const probe = await base('tiny-llama');
    const tok = probe.tokenizer;
    const domain = textDocuments(ds('domain/train.txt'), '\n\n\n').slice(0, 20);
    const general = tokenStream(tok, textDocuments(ds('general/heldout.txt'), '\n\n\n'));
    // Fisher from the first windows of the general held-out text, loss measured on later ones.
    const fisherTokens = general.slice(0, 16 * SEQ + 1);
    const genEval = general.slice(16 * SEQ, 22 * SEQ + 1);
    const genLoss = async (m: CausalLM) => (await evaluateLm(m, evalWindows(genEval, SEQ, 6))).loss;
    const before = await genLoss(probe.model);
    probe.model.dispose();
    const run = async (make?: (m: CausalLM) => Penalty) => {
      const { model } = await base('tiny-llama');
      const w0 = [...model.trainableParams().values()].map((v) => v.clone());
      const penalty = make?.(model);
      const r = await continuedPretraining(model, tok, domain, { maxSteps: 20, seqLen: SEQ, batchSize: 8, lr: 2e-3, seed: 7 }, { penalty });
      assert.equal(r.history.at(-1)!.penalty === undefined, !penalty, 'continuedPretraining forwards the penalty');
      const distance = Math.sqrt(tf.tidy(() => tf.addN([...model.trainableParams().values()].map((v, i) => tf.sum(tf.square(tf.sub(v, w0[i]))))).dataSync()[0]));
      const rise = (await genLoss(model)) - before;
      tf.dispose(w0);
      penalty?.dispose();
      model.dispose();
      return { distance, rise };
    };
    const plain = await run();
    const withL2sp = await run((m) => l2sp(m, { alpha: 1 }));
    const withEwc = await run((m) => ewc(m, { tokens: fisherTokens }, { lambda: 1, seqLen: SEQ, samples: 16 }));
    console.log('      general loss rise / distance from base:', { plain, l2sp: withL2sp, ewc: withEwc });
    assert.ok(plain.rise > 0, 'domain training forgets general text');
    for (const [name, r] of [['l2sp', withL2sp], ['ewc', withEwc]] as const) {
      assert.ok(r.distance < plain.distance, `${name} stays nearer the base`);
      assert.ok(r.rise < plain.rise, `${name} forgets less`);
    }

    // sft forwards the penalty too.
    const { model } = await base('tiny-llama');
    const penalty = l2sp(model);
    const rows = [{ prompt: 'Two plus two?', completion: ' Four' }, { prompt: 'Frozen water?', completion: ' Ice' }];
    const r = await sft(model, tok, rows, { maxSteps: 2, batchSize: 2 }, { penalty });
    assert.ok(r.history.every((m) => typeof m.penalty === 'number'));
    penalty.dispose();
    model.dispose();
  });
});
