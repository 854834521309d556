import { strict as assert } from 'assert';
import * as tf from '@tensorflow/tfjs';
import { NF4_BLOCK, NF4_CODE, NF4_SCALE_BLOCK, nf4Index, quantizeMatrix } from '../../src/model/quant';
import { quantGather, quantMatMul } from '../../src/model/quant-ops';
import { Rng } from '../../src/util/rng';
import { engineReady, maxAbsDiff } from '../helpers';

/** Inverse standard normal CDF (Acklam's rational approximation, relative error < 1.2e-9). */
function normPpf(p: number): number {
  const a = [-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716, 2.506628277459239];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
  const c = [-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const tail = (q: number) => (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  if (p < 0.02425) return tail(Math.sqrt(-2 * Math.log(p)));
  if (p > 1 - 0.02425) return -tail(Math.sqrt(-2 * Math.log(1 - p)));
  const q = p - 0.5;
  const r = q * q;
  return ((((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q) / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

const linspace = (a: number, b: number, n: number) => Array.from({ length: n }, (_, i) => a + ((b - a) * i) / (n - 1));
const gaussian = (n: number, seed: number, std = 0.02) => {
  // Box–Muller on the project's seeded uniform generator.
  const rng = new Rng(seed);
  return Float32Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(1 - rng.next())) * Math.cos(2 * Math.PI * rng.next()) * std);
};

describe('model/quant', () => {
  before(engineReady);

  it('NF4 code values are QLoRA\'s construction: normal quantiles, 8 positive and 7 negative, an exact zero, scaled to [-1, 1]', () => {
    // QLoRA appendix / bitsandbytes create_normal_map(offset = 0.9677083): 8 positive quantiles of
    // linspace(offset, 0.5, 9), 7 negative of linspace(offset, 0.5, 8), both without 0.5, plus 0.
    const offset = 0.9677083;
    const pos = linspace(offset, 0.5, 9).slice(0, -1).map(normPpf);
    const neg = linspace(offset, 0.5, 8).slice(0, -1).map((p) => -normPpf(p));
    const all = [...pos, 0, ...neg].sort((x, y) => x - y);
    const max = Math.max(...all.map(Math.abs));
    assert.equal(NF4_CODE.length, 16);
    assert.ok(maxAbsDiff(NF4_CODE, all.map((v) => v / max)) < 1e-6, `NF4_CODE ≠ construction: ${all.map((v) => (v / max).toFixed(7))}`);
    assert.equal(NF4_CODE[7], 0);
  });

  it('nf4Index picks the nearest code', () => {
    for (let i = 0; i < 16; i++) assert.equal(nf4Index(NF4_CODE[i]), i);
    for (const v of linspace(-1, 1, 401)) {
      const best = [...NF4_CODE].reduce((bi, c, i) => (Math.abs(c - v) < Math.abs(NF4_CODE[bi] - v) ? i : bi), 0);
      assert.ok(Math.abs(NF4_CODE[nf4Index(v)] - v) <= Math.abs(NF4_CODE[best] - v) + 1e-7, `v ${v}`);
    }
  });

  it('int8: per-output-channel absmax on a hand-computed [in, out] matrix', () => {
    // W [2, 2] = [[1, -1], [0.25, 4]]: column 0 has absmax 1 (s = 1/127), column 1 absmax 4 (s = 4/127).
    const q = quantizeMatrix(Float32Array.from([1, -1, 0.25, 4]), [2, 2], { format: 'int8', channelAxis: 1 });
    const s0 = Math.fround(1 / 127);
    const s1 = Math.fround(4 / 127);
    assert.deepEqual([...q.blockScales()], [s0, s1]);
    // 0.25 / s0 = 31.75 → 32; −1 / s1 = −31.75 → −32; 1 → 127, 4 → 127.
    assert.ok(maxAbsDiff(q.dequantize(), [127 * s0, -32 * s1, 32 * s0, 127 * s1]) < 1e-7);
    assert.equal(q.bytes, 4 + 2 * 4);
    // The embedding table's channels are rows: row scales 1/127 and 4/127; 0.25 / s1 = 7.94 → 8.
    const r = quantizeMatrix(Float32Array.from([1, -1, 0.25, 4]), [2, 2], { format: 'int8', channelAxis: 0 });
    assert.deepEqual([...r.blockScales()], [s0, s1]);
    assert.ok(maxAbsDiff(r.dequantize(), [127 * s0, -127 * s0, 8 * s1, 127 * s1]) < 1e-7);
  });

  it('int8: every value within half a step of its channel, zero channels exact', () => {
    const [rows, cols] = [96, 40];
    const w = gaussian(rows * cols, 3);
    for (let i = 0; i < rows; i++) w[i * cols + 5] = 0;
    const q = quantizeMatrix(w, [rows, cols], { format: 'int8', channelAxis: 1 });
    const back = q.dequantize();
    const s = q.blockScales();
    for (let i = 0; i < w.length; i++) assert.ok(Math.abs(back[i] - w[i]) <= s[i % cols] / 2 + 1e-9, `element ${i}`);
    for (let i = 0; i < rows; i++) assert.equal(back[i * cols + 5], 0);
  });

  it('nf4: a block of scaled code values round-trips exactly; blocks run along each output channel', () => {
    // [in 64, out 2]: column 0 holds 0.5·code[i mod 16], column 1 holds 2·code[15 − i mod 16].
    const w = new Float32Array(128);
    for (let i = 0; i < 64; i++) {
      w[i * 2] = 0.5 * NF4_CODE[i % 16];
      w[i * 2 + 1] = 2 * NF4_CODE[15 - (i % 16)];
    }
    const q = quantizeMatrix(w, [64, 2], { format: 'nf4', channelAxis: 1 });
    assert.deepEqual([...q.blockScales()], [0.5, 2]);
    assert.ok(maxAbsDiff(q.dequantize(), w) < 1e-7);
    assert.equal(q.bytes, 64 + 2 * 4);
  });

  it('nf4: hand-computed nearest codes, a partial last block', () => {
    // 70 values: block 0 = 64 values with absmax 2, block 1 = the last 6 with absmax 0.3.
    const w = new Float32Array(70);
    w[0] = 2; w[1] = 0.3; w[2] = -0.9; w[3] = 0.01; w[64] = -0.3; w[65] = 0.1;
    const q = quantizeMatrix(w, [70, 1], { format: 'nf4', channelAxis: 1 });
    const back = q.dequantize();
    // 0.3 / 2 = 0.15 → nearest code 0.16093 → 0.32186; −0.45 → −0.39492 → −0.78983; 0.005 → 0.
    assert.ok(maxAbsDiff(back.subarray(0, 4), [2, 2 * NF4_CODE[9], 2 * NF4_CODE[3], 0]) < 1e-6, `${back.subarray(0, 4)}`);
    // 0.1 / 0.3 = 0.333 → code 0.33792 → 0.10138.
    assert.ok(maxAbsDiff(back.subarray(64, 66), [-0.3, 0.3 * NF4_CODE[11]]) < 1e-6);
    assert.equal(q.bytes, 35 + 2 * 4);
  });

  it('nf4: error within 0.152 · block absmax on gaussian weights; 0.5625 bytes a weight (0.516 with double quantization)', () => {
    const [rows, cols] = [128, 384];
    const w = gaussian(rows * cols, 7);
    const maxHalfGap = Math.max(...Array.from({ length: 15 }, (_, i) => (NF4_CODE[i + 1] - NF4_CODE[i]) / 2));
    assert.ok(maxHalfGap < 0.152);
    for (const doubleQuant of [false, true]) {
      const q = quantizeMatrix(w, [rows, cols], { format: 'nf4', channelAxis: 1, doubleQuant });
      const back = q.dequantize();
      const s = q.blockScales();
      // Canonical index of stored (i, j) is j·rows + i: column j's values in order.
      let sq = 0;
      for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) {
        const k = j * rows + i;
        const x = w[i * cols + j];
        const bound = s[Math.floor(k / NF4_BLOCK)] * maxHalfGap + Math.max(0, Math.abs(x) - s[Math.floor(k / NF4_BLOCK)]) + 1e-7;
        assert.ok(Math.abs(back[i * cols + j] - x) <= bound, `(${i}, ${j}) dq=${doubleQuant}`);
        sq += (back[i * cols + j] - x) ** 2;
      }
      // Relative RMS error of NF4 on normal weights is about 0.1 (4 bits).
      const rel = Math.sqrt(sq / w.length) / 0.02;
      assert.ok(rel > 0.05 && rel < 0.12, `relative rms error ${rel}`);
      const blocks = w.length / NF4_BLOCK;
      assert.equal(q.bytes, w.length / 2 + (doubleQuant ? blocks + 4 * Math.ceil(blocks / NF4_SCALE_BLOCK) + 4 : 4 * blocks));
    }
  });

  it('nf4 double quantization: decoded scales within half a second-level step of the block absmax', () => {
    const w = gaussian(64 * 600, 11);
    const plain = quantizeMatrix(w, [64, 600], { format: 'nf4', channelAxis: 1 }).blockScales();
    const dq = quantizeMatrix(w, [64, 600], { format: 'nf4', channelAxis: 1, doubleQuant: true }).blockScales();
    const mean = plain.reduce((a, b) => a + b, 0) / plain.length;
    for (let b0 = 0; b0 < plain.length; b0 += NF4_SCALE_BLOCK) {
      const part = plain.subarray(b0, b0 + NF4_SCALE_BLOCK);
      const step = Math.max(...part.map((s) => Math.abs(s - mean))) / 127;
      for (let i = 0; i < part.length; i++) assert.ok(Math.abs(dq[b0 + i] - part[i]) <= step / 2 + 1e-7, `scale ${b0 + i}`);
    }
  });

  it('refuses bad input by name', () => {
    assert.throws(() => quantizeMatrix(new Float32Array(3), [2, 2], { format: 'nf4', channelAxis: 1 }), /3 values do not fill shape \[2, 2\]/);
    assert.throws(() => quantizeMatrix(Float32Array.from([0, NaN, 0, 0]), [2, 2], { format: 'int8', channelAxis: 1 }), /value NaN at \[0, 1\] is not finite/);
    assert.throws(() => quantizeMatrix(new Float32Array(4), [2, 2], { format: 'int4' as never, channelAxis: 1 }), /format must be "int8" or "nf4" \(got "int4"\)/);
    assert.throws(() => quantizeMatrix(new Float32Array(4), [2, 2], { format: 'int8', channelAxis: 1, doubleQuant: true }), /doubleQuant applies to "nf4"/);
  });

  for (const format of ['int8', 'nf4'] as const) {
    it(`${format}: quantMatMul equals the float32 product with the decoded weight, value and input gradient, frees what it decodes`, () => {
      const w = gaussian(48 * 20, 5, 0.3);
      const q = quantizeMatrix(w, [48, 20], { format, channelAxis: 1 });
      const wq = tf.tensor2d(q.dequantize(), [48, 20]);
      const x = tf.randomNormal([6, 48], 0, 1, 'float32', 2) as tf.Tensor2D;
      const dy = tf.randomNormal([6, 20], 0, 1, 'float32', 4) as tf.Tensor2D;
      const before = tf.memory().numTensors;
      const [y, g] = tf.tidy(() => {
        const { value, grads } = tf.valueAndGrads((a: tf.Tensor) => tf.sum(tf.mul(quantMatMul(a as tf.Tensor2D, q), dy)))([x]);
        return [quantMatMul(x, q), grads[0], value];
      });
      assert.equal(tf.memory().numTensors, before + 3, 'only the outputs stay allocated');
      const [yr, gr] = tf.tidy(() => [tf.matMul(x, wq), tf.matMul(dy, wq, false, true)]);
      assert.ok(maxAbsDiff(y.dataSync(), yr.dataSync()) < 1e-5);
      assert.ok(maxAbsDiff(g.dataSync(), gr.dataSync()) < 1e-5);
      // The transposed product (tied head h·Eᵀ) with channels along rows.
      const e = quantizeMatrix(w, [48, 20], { format, channelAxis: 0 });
      const h = tf.randomNormal([6, 20], 0, 1, 'float32', 8) as tf.Tensor2D;
      const [yt, gt] = tf.tidy(() => [quantMatMul(h, e, true), tf.grad((a: tf.Tensor) => tf.sum(quantMatMul(a as tf.Tensor2D, e, true)))(h)]);
      const [ytr, gtr] = tf.tidy(() => {
        const et = tf.tensor2d(e.dequantize(), [48, 20]);
        return [tf.matMul(h, et, false, true), tf.matMul(tf.ones([6, 48]), et)];
      });
      assert.ok(maxAbsDiff(yt.dataSync(), ytr.dataSync()) < 1e-5);
      assert.ok(maxAbsDiff(gt.dataSync(), gtr.dataSync()) < 1e-5);
      const rowsOf = tf.tidy(() => quantGather(e, tf.tensor1d([3, 0, 47], 'int32')));
      const decoded = e.dequantize();
      assert.ok(maxAbsDiff(rowsOf.dataSync(), [...decoded.subarray(60, 80), ...decoded.subarray(0, 20), ...decoded.subarray(940, 960)]) < 1e-7);
      tf.dispose([wq, x, dy, y, g, yr, gr, h, yt, gt, ytr, gtr, rowsOf]);
      assert.throws(() => quantMatMul(tf.zeros([2, 7]) as tf.Tensor2D, q), /input has 7 columns but the .* weight \[48,20\] needs 48/);
    });
  }
});
