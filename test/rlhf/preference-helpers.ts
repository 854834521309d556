/** Shared fixtures of the SimPO / ORPO / KTO suites: a tiny model config, hand-made pairs, a gradient check. */
import { strict as assert } from 'assert';
import * as tf from '@tensorflow/tfjs';
import type { CausalLM, ModelConfig } from '../../src/model';

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
