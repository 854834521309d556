import { strict as assert } from 'assert';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import fc from 'fast-check';
import { fusedOps, useFused } from '../../src/engine/fused';
import { configureNative, loadNativeAddon, nativeAddonPath, nativeInfo, resetNative, type NativeIsa } from '../../src/engine/native';
import { patchWasmKernels } from '../../src/engine/wasm-kernels';
import { applyRope, gelu, layerNorm, rmsNorm, rotateHalfMatrix, swiglu } from '../../src/model/layers';
import { AdamW, globalNorm } from '../../src/train/optimizer';
import { tokenCrossEntropy } from '../../src/train/causal-lm';

/** Deterministic values in [-scale, scale): failures reproduce from the printed case alone. */
function values(size: number, seed: number, scale = 1): Float32Array {
  const out = new Float32Array(size);
  let s = seed >>> 0;
  for (let i = 0; i < size; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 31 - 1) * scale;
  }
  return out;
}

/** |x − ref| ≤ tol·(1 + |ref|) elementwise. */
function assertClose(x: ArrayLike<number>, ref: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(x.length, ref.length, `${what}: size`);
  for (let i = 0; i < ref.length; i++) {
    if (!(Math.abs(x[i] - ref[i]) <= tol * (1 + Math.abs(ref[i])))) assert.fail(`${what}: [${i}] fused ${x[i]} vs composite ${ref[i]}`);
  }
}

/** A case: named float inputs (shape, value scale), an optional int input, and the op under test. */
interface Case {
  name: string;
  inputs: { [name: string]: { shape: number[]; scale?: number } };
  targets?: { shape: number[]; vocab: number };
  /** The op, given the inputs (and targets); the same code takes the fused path on wasm, the composite on cpu. */
  op: (x: tf.Tensor[], targets?: tf.Tensor) => tf.Tensor;
}

/** Output and gradient of Σ op(inputs)·w (w fixed, random) on one backend, copied out. */
async function outputsAndGrads(backend: 'cpu' | 'wasm', c: Case, seed: number): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  return tf.tidy(() => {
    const xs = Object.values(c.inputs).map((s, i) => tf.tensor(values(tf.util.sizeFromShape(s.shape), seed + i, s.scale ?? 1), s.shape));
    let targets: tf.Tensor | undefined;
    if (c.targets) {
      const n = tf.util.sizeFromShape(c.targets.shape);
      // Some targets outside [0, V): they must count 0 on both paths.
      const ids = Int32Array.from(values(n, seed + 9), (v, i) => (i % 7 === 3 ? (i % 2 ? -1 : c.targets!.vocab) : Math.floor((v + 1) / 2 * c.targets!.vocab)));
      targets = tf.tensor(ids, c.targets.shape, 'int32');
    }
    const y = c.op(xs, targets);
    const w = tf.tensor(values(y.size, seed + 17), y.shape);
    const grads = tf.grads((...args: tf.Tensor[]) => tf.sum(tf.mul(c.op(args, targets), w)))(xs);
    return [y, ...grads].map((t) => t.dataSync() as Float32Array);
  });
}

/** Shapes with rows of 1 and more, and a last axis across the 16-lane blocks and their tails. */
const shapes = fc.record({ rows: fc.constantFrom(1, 3, 37), cols: fc.constantFrom(1, 5, 16, 33, 128, 515) });

const cases = ({ rows, cols }: { rows: number; cols: number }): Case[] => ([
  { name: 'GELU', inputs: { x: { shape: [rows, cols], scale: 4 } }, op: ([x]) => gelu(x) },
  { name: 'SwiGLU', inputs: { gate: { shape: [rows, cols], scale: 4 }, up: { shape: [rows, cols] } }, op: ([g, u]) => swiglu(g, u) },
  { name: 'RMSNorm', inputs: { x: { shape: [2, rows, cols], scale: 3 }, w: { shape: [cols] } }, op: ([x, w]) => rmsNorm(x, w, 1e-5) },
  { name: 'LayerNorm', inputs: { x: { shape: [rows, cols], scale: 3 }, w: { shape: [cols] }, b: { shape: [cols] } }, op: ([x, w, b]) => layerNorm(x, w, b, 1e-5) },
  {
    name: 'cross-entropy', inputs: { logits: { shape: [2, rows, cols], scale: 8 } }, targets: { shape: [2, rows], vocab: cols },
    op: ([logits], targets) => tokenCrossEntropy(logits as tf.Tensor3D, targets as tf.Tensor2D),
  },
  {
    name: 'softmax(scale·x)', inputs: { x: { shape: [rows, 2, cols], scale: 6 } },
    op: ([x]) => (useFused(x) ? fusedOps.softmax(x, 0.37) : tf.softmax(tf.mul(x, 0.37))),
  },
  ...[false, true].map((batched): Case => ({
    // Tables are constants (made inside the op, the same on both backends): only x has a gradient.
    name: `RoPE (${batched ? 'per-row positions' : 'shared'} tables)`, inputs: { x: { shape: [2, 3, rows, 2 * cols] } },
    op: ([x]) => {
      const table = batched ? [2, 1, rows, 2 * cols] : [rows, 2 * cols];
      const cos = tf.tensor(values(tf.util.sizeFromShape(table), 71), table);
      const sin = tf.tensor(values(tf.util.sizeFromShape(table), 72), table);
      return applyRope(x as tf.Tensor4D, cos, sin, rotateHalfMatrix(2 * cols));
    },
  })),
] as Case[]).filter((c) => !c.targets || cols >= 2); // tf.oneHot (the composite) needs a vocabulary of 2 or more

const addon = loadNativeAddon();

describe('fused kernels (native/src/fused*.c, src/engine/fused.ts)', function () {
  before(async function () {
    if (!addon) {
      if (process.env.TUNELAB_REQUIRE_NATIVE === '1') assert.fail(`TUNELAB_REQUIRE_NATIVE=1 but the native addon does not load from ${nativeAddonPath}`);
      console.log(`      skipped: the native addon is not built at ${nativeAddonPath}`);
      this.skip();
    }
    await tf.setBackend('wasm');
    patchWasmKernels();
    configureNative({ enabled: true, fused: true });
  });
  after(async () => {
    resetNative();
    await tf.setBackend('wasm');
  });

  it('are on by default and say so; TUNELAB_FUSED=0 / { fused: false } turns them off, keeping the GEMM', async () => {
    await tf.setBackend('wasm');
    assert.ok(nativeInfo().fused && /fused kernels/.test(nativeInfo().reason), nativeInfo().reason);
    const x = tf.ones([2, 2]);
    assert.ok(useFused(x));
    assert.ok(!useFused(tf.ones([2], 'int32')), 'int32 takes the composite path');
    configureNative({ fused: false });
    assert.ok(nativeInfo().active && !nativeInfo().fused && /fused kernels off/.test(nativeInfo().reason), nativeInfo().reason);
    assert.ok(!useFused(x));
    configureNative({ fused: true });
    await tf.setBackend('cpu');
    assert.ok(!useFused(x), 'only the wasm backend has the kernels');
    await tf.setBackend('wasm');
    tf.dispose(x);
  });

  for (const isa of (addon?.isas() ?? []) as NativeIsa[]) {
    it(`${isa}: every op and its gradients match the composite ops on the cpu backend`, async function () {
      this.timeout(60_000);
      configureNative({ isa });
      try {
        await fc.assert(fc.asyncProperty(shapes, fc.integer({ min: 1, max: 1000 }), async (shape, seed) => {
          for (const c of cases(shape)) {
            const fused = await outputsAndGrads('wasm', c, seed);
            const ref = await outputsAndGrads('cpu', c, seed);
            // float32 against another summation order and tfjs's own exp: a few ulp, more for gradients.
            fused.forEach((f, i) => assertClose(f, ref[i], i === 0 ? 2e-5 : 1e-4, `${c.name} [${shape.rows},${shape.cols}] seed ${seed} ${i === 0 ? 'output' : `grad ${i - 1}`}`));
          }
        }), { numRuns: 6, seed: 42 });
      } finally {
        configureNative({ isa: 'auto' });
        await tf.setBackend('wasm');
      }
    });
  }

  it('a cross-entropy loss equals the hand computation on a tiny case', async () => {
    await tf.setBackend('wasm');
    const logits = tf.tensor3d([[[1, 2, 3], [0, 0, 0]]]);
    const targets = tf.tensor2d([[2, 5]], [1, 2], 'int32'); // 5 is outside the vocabulary: counts 0
    const loss = tokenCrossEntropy(logits, targets).dataSync();
    const lse = Math.log(Math.exp(1) + Math.exp(2) + Math.exp(3));
    assert.ok(Math.abs(loss[0] - (lse - 3)) < 1e-6, `${loss[0]} vs ${lse - 3}`);
    assert.equal(loss[1], 0);
    tf.dispose([logits, targets]);
  });

  it('the global gradient norm is one native call, equal to the composite to float precision (NaN passes through)', async () => {
    const sizes = [1, 17, 40000, 300];
    const norms = async (backend: 'cpu' | 'wasm') => {
      await tf.setBackend(backend);
      const grads = sizes.map((n, i) => tf.tensor(values(n, 40 + i, 3), [n]));
      const before = tf.memory().numTensors;
      const norm = await globalNorm(grads);
      assert.equal(tf.memory().numTensors, before, 'no tensor left behind');
      const withNaN = await globalNorm([...grads, tf.tensor([1, NaN])]);
      tf.dispose(grads);
      return { norm, withNaN };
    };
    const fused = await norms('wasm');
    const ref = await norms('cpu');
    assert.ok(Math.abs(fused.norm - ref.norm) <= 1e-5 * ref.norm, `${fused.norm} vs ${ref.norm}`);
    assert.ok(Number.isNaN(fused.withNaN) && Number.isNaN(ref.withNaN));
    assert.equal(await globalNorm([]), 0);
    await tf.setBackend('wasm');
  });

  it('AdamW steps equal the composite update (weight decay on matrices only, a clipped step), with no tensor left behind', async () => {
    const run = async (backend: 'cpu' | 'wasm') => {
      await tf.setBackend(backend);
      const params = new Map([
        ['w', tf.variable(tf.tensor(values(600, 1), [20, 30]))],
        ['norm', tf.variable(tf.tensor(values(30, 2), [30]))],
      ]);
      const opt = new AdamW(params, { weightDecay: 0.1 });
      const counts: number[] = [];
      for (let step = 0; step < 4; step++) {
        const grads = new Map([...params].map(([k, p], i) => [k, tf.tensor(values(p.size, 10 * step + i, 2), p.shape)]));
        opt.apply(grads, 1e-2, step === 2 ? 0.25 : 1); // one clipped step
        tf.dispose([...grads.values()]);
        counts.push(tf.memory().numTensors);
      }
      const out = [...params.values()].map((p) => p.dataSync() as Float32Array);
      opt.dispose();
      for (const p of params.values()) p.dispose();
      return { out, counts };
    };
    const fused = await run('wasm');
    const ref = await run('cpu');
    fused.out.forEach((p, i) => assertClose(p, ref.out[i], 1e-6, `param ${i}`));
    assert.ok(fused.counts.every((c) => c === fused.counts[0]), `tensor count ${fused.counts}`);
    await tf.setBackend('wasm');
  });

  it('gives bit-identical results on 1 and 2 threads', async () => {
    await tf.setBackend('wasm');
    const rows = 300;
    const cols = 515;
    const runAll = () => tf.tidy(() => {
      const x = tf.tensor(values(rows * cols, 3, 4), [rows, cols]);
      const w = tf.tensor(values(cols, 4), [cols]);
      const t = tf.tensor(Int32Array.from({ length: rows }, (_, i) => (i * 31) % cols), [1, rows], 'int32');
      const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(rmsNorm(swiglu(gelu(a), a), b, 1e-6), a)))([x, w]);
      const ce = tokenCrossEntropy(tf.reshape(x, [1, rows, cols]) as tf.Tensor3D, t as tf.Tensor2D);
      return [dx, dw, ce, fusedOps.softmax(x, 0.5)].map((r) => Array.from(r.dataSync()));
    });
    configureNative({ threads: 1 });
    const one = runAll();
    configureNative({ threads: 2 });
    const two = runAll();
    assert.deepEqual(two, one);
    resetNative();
  });

  it('refuses an operand outside the heap, naming it, before computing anything', () => {
    const heap = new ArrayBuffer(4 * 100);
    const view = new Float32Array(heap);
    view.fill(7);
    // gelu of 60 elements from byte 0 into byte 200: the output would run past the end.
    assert.throws(() => addon!.gelu(heap, 0, 200, 60, 1), (e: Error) => e instanceof RangeError && /gelu: y \(60 elements at byte 200\)/.test(e.message));
    assert.throws(() => addon!.rmsNorm(heap, 2, 0, 0, 2, 2, 1e-5), /rmsNorm: x .*not 4-byte aligned/);
    assert.ok(view.every((v) => v === 7), 'nothing written');
  });

  it('every fused op leaves the tensor count where it was, forward and backward', async () => {
    await tf.setBackend('wasm');
    const x = tf.tensor(values(64 * 48, 5), [64, 48]);
    const w = tf.tensor(values(48, 6), [48]);
    const t = tf.zeros([1, 64], 'int32') as tf.Tensor2D;
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      tf.tidy(() => {
        tf.grads((a: tf.Tensor, b: tf.Tensor) =>
          tf.add(tf.sum(tokenCrossEntropy(tf.reshape(swiglu(gelu(a), layerNorm(a, b, b, 1e-5)), [1, 64, 48]) as tf.Tensor3D, t)), tf.sum(rmsNorm(a, b, 1e-5))))([x, w]);
      });
      assert.equal(tf.memory().numTensors, before, `after step ${i}`);
    }
    tf.dispose([x, w, t]);
  });
});
