/** Shared fixtures of the SimPO / ORPO / KTO suites: a tiny model config, hand-made pairs, a gradient check. */
import { strict as assert } from 'assert';
import * as tf from '@tensorflow/tfjs';
import { CausalLM, type ModelConfig } from '../../src/model';
import { base } from '../../src/lab/base';
import { dataset } from '../../src/lab/data';
import { lab } from '../../src/lab/lab';
import type { PreferenceRow } from '../../src/data/tokenize';
import type { Tokenizer } from '../../src/tokenizer/tokenizer';

export const tiny: Partial<ModelConfig> = { family: 'llama', vocabSize: 32, dModel: 16, nLayers: 1, nHeads: 2, nKvHeads: 1, dFf: 32, contextLength: 16 };
/** A small model that takes the shipped tokenizer's ids. */
export const small: Partial<ModelConfig> = { family: 'llama', vocabSize: 2048, dModel: 16, nLayers: 1, nHeads: 2, nKvHeads: 1, dFf: 32, contextLength: 48 };
export const tokens = { pad: 0, eos: 1 };
export const softplus = (x: number): number => Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x)));
export const mean = (xs: number[]): number => xs.reduce((s, x) => s + x, 0) / xs.length;

/** A hand-made example: prompt (mask 0) then completion (mask 1). */
export const example = (prompt: number[], completion: number[]) => ({
  ids: [...prompt, ...completion], lossMask: [...prompt.map(() => 0), ...completion.map(() => 1)], promptLength: prompt.length, fullLength: prompt.length + completion.length,
});
export const pair = (prompt: number[], chosen: number[], rejected: number[]) => ({ chosen: example(prompt, chosen), rejected: example(prompt, rejected) });
export const tinyPairs = [pair([2, 5, 7, 9], [3, 4, 6, 1], [8, 8, 1]), pair([4, 11, 12], [13, 14, 15, 16, 1], [17, 1])];

/** Asserts that values equal a hand computation, relative to their size. */
export function assertClose(got: Record<string, number>, want: Record<string, number>, tol = 1e-5): void {
  for (const [k, w] of Object.entries(want)) {
    const g = got[k];
    if (Number.isNaN(w)) assert.ok(Number.isNaN(g), `${k}: ${g} vs NaN`);
    else assert.ok(Math.abs(g - w) < tol * Math.max(1, Math.abs(w)), `${k}: ${g} vs ${w}`);
  }
}

/**
 * Analytic gradients of `loss` w.r.t. three parameters of `policy` against central finite differences,
 * on the two largest-gradient entries of each; restores the weights.
 */
export function checkGradients(policy: CausalLM, loss: () => tf.Scalar): void {
  const paths = ['layers.0.attn.q_proj.weight', 'layers.0.mlp.down_proj.weight', 'embed_tokens.weight'];
  const vars = paths.map((p) => policy.weight(p));
  const { value, grads } = tf.variableGrads(loss, vars);
  const l0 = value.dataSync()[0];
  const lossAt = () => tf.tidy(() => loss().dataSync()[0]);
  let checked = 0;
  for (const v of vars) {
    const g = grads[v.name].dataSync();
    const w = v.dataSync().slice();
    const top = Array.from(g.keys()).sort((a, b) => Math.abs(g[b]) - Math.abs(g[a])).slice(0, 2);
    for (const i of top) {
      const h = 1e-2;
      const at = (x: number) => {
        const w2 = w.slice();
        w2[i] = x;
        v.assign(tf.tensor(w2, v.shape));
        return lossAt();
      };
      const fd = (at(w[i] + h) - at(w[i] - h)) / (2 * h);
      v.assign(tf.tensor(w, v.shape));
      assert.ok(Math.abs(g[i]) > 1e-6, `${v.name}[${i}]: no gradient`);
      // Float32 central differences at h = 1e-2: ~1e-5 round-off, ~1% curvature error on the largest entries.
      assert.ok(Math.abs(fd - g[i]) < 5e-5 + 2e-2 * Math.abs(g[i]), `${v.name}[${i}]: analytic ${g[i]} vs finite difference ${fd}`);
      checked++;
    }
  }
  assert.equal(checked, 6);
  assert.ok(Math.abs(lossAt() - l0) < 1e-6); // weights restored
  tf.dispose([value, ...Object.values(grads)]);
}

/** A method's run as the helpers see it: step records carry the metrics (TRL names). */
interface MethodRun {
  history: readonly { loss: number }[];
  metrics: readonly Record<string, number>[];
  evalMetrics: readonly Record<string, number>[];
}
type OnTrainer = { onTrainer: (t: { on(event: 'step', f: () => void): unknown }) => void };

/**
 * Runs `train` twice, each on a fresh small model (seed 3), and checks what every preference method owes:
 * a flat tensor count across steps, nothing leaked, same seed → same losses and evals, evals at
 * `evalSteps`, every metric name on the trainer's step records. Returns the first run.
 */
export async function checkSeededRuns<R extends MethodRun>(train: (model: CausalLM, options: OnTrainer) => Promise<R>, names: readonly string[], evalSteps: number[]): Promise<R> {
  const run = async () => {
    const m = CausalLM.create(small, { seed: 3 });
    const counts: number[] = [];
    const before = tf.memory().numTensors;
    const r = await train(m, { onTrainer: (t) => t.on('step', () => counts.push(tf.memory().numTensors)) });
    const leaked = tf.memory().numTensors - before;
    m.dispose();
    return { r, counts, leaked };
  };
  const a = await run();
  const b = await run();
  assert.ok(a.counts.every((c) => c === a.counts[0]), `tensor count per step ${a.counts}`);
  assert.equal(a.leaked, 0);
  assert.deepEqual(a.r.history.map((h) => h.loss), b.r.history.map((h) => h.loss));
  assert.deepEqual(a.r.evalMetrics, b.r.evalMetrics);
  assert.deepEqual(a.r.evalMetrics.map((e) => e.step), evalSteps);
  const step = a.r.history[0] as unknown as Record<string, number>;
  for (const k of names) assert.ok(Number.isFinite(step[k]) && step[k] === a.r.metrics[0][k], k);
  assert.ok(a.r.history.at(-1)!.loss !== a.r.history[0].loss);
  return a.r;
}

/**
 * The suite a reference-free pair method (SimPO, ORPO) owes on a small model with the shipped tokenizer:
 * {@link checkSeededRuns} on 48 train and 12 held-out rows, 4 steps, evals at steps 0, 2 and 4; bad
 * batchSize / maxLength refused.
 */
export function describeSeededPairRuns<R extends MethodRun>(
  method: string, train: (model: CausalLM, tokenizer: Tokenizer, rows: PreferenceRow[], config: object, options: OnTrainer) => Promise<R>, names: readonly string[],
): void {
  describe(`${method}() with the shipped tokenizer on a small model`, () => {
    let tok: Tokenizer;
    let rows: PreferenceRow[];
    let held: PreferenceRow[];
    before(async () => {
      tok = await shippedTokenizer();
      [rows, held] = [preferenceRows('train', 48), preferenceRows('heldout', 12)];
    });

    it('flat tensor count, no leak, same seed → same losses, metrics on the step records', async () => {
      const config = { maxSteps: 4, batchSize: 4, lr: 1e-2, seed: 7, evalRows: held, evalEvery: 2 };
      const r = await checkSeededRuns((m, options) => train(m, tok, rows, config, options), names, [0, 2, 4]);
      assert.equal(r.metrics.length, 4);
    });

    it('refuses a batchSize below 1 and a maxLength below 2, naming the method and the option', async () => {
      const m = CausalLM.create(small, { seed: 3 });
      try {
        const run = (config: object) => train(m, tok, rows, { maxSteps: 1, ...config }, { onTrainer: () => {} });
        await assert.rejects(run({ batchSize: 0 }), new RegExp(`^RangeError: ${method}: batchSize must be a positive integer \\(got 0\\)`));
        await assert.rejects(run({ batchSize: 1.5 }), new RegExp(`^RangeError: ${method}: batchSize must be a positive integer`));
        await assert.rejects(run({ maxLength: 1 }), new RegExp(`^RangeError: ${method}: maxLength must be an integer ≥ 2 \\(got 1\\)`));
      } finally {
        m.dispose();
      }
    });
  });
}

/** The first `n` rows of the shipped preferences' split. */
export const preferenceRows = (split: 'train' | 'heldout', n: number): PreferenceRow[] => (dataset('preferences', split) as unknown as PreferenceRow[]).slice(0, n);

/** The shipped tokenizer (the model it comes with is freed). */
export async function shippedTokenizer(): Promise<Tokenizer> {
  const b = await base('tiny-llama');
  b.model.dispose();
  return b.tokenizer;
}

/** A short run of a method on the shipped base; prints and returns its first and last held-out metrics. */
export async function shippedRun<R extends MethodRun>(train: (model: CausalLM, tokenizer: Tokenizer) => Promise<R>): Promise<{ first: Record<string, number>; last: Record<string, number> }> {
  const { model, tokenizer } = await base('tiny-llama');
  try {
    const r = await train(model, tokenizer);
    const [first, last] = [r.evalMetrics[0], r.evalMetrics.at(-1)!];
    const f = (m: Record<string, number>) => JSON.stringify(Object.fromEntries(Object.entries(m).map(([k, v]) => [k, +v.toFixed(4)])));
    console.log(`      step 0: ${f(first)}\n      step ${last.step}: ${f(last)}\n      train loss ${r.metrics.map((m) => m.loss.toFixed(4)).join(' ')}`);
    return { first, last };
  } finally {
    model.dispose();
  }
}

/** The step and eval records a lab run logged (steps.jsonl, evals.jsonl). */
export function loggedRecords(dir: string, run: string): Record<'steps' | 'evals', Record<string, number>[]> {
  return lab.runs(dir).details(run) as unknown as Record<'steps' | 'evals', Record<string, number>[]>;
}
