import { strict as assert } from 'assert';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { batchMatMulConfig, patchWasmKernels, unsortedSegmentSumConfig } from '../../src/engine/wasm-kernels';
import { configureNative, resetNative } from '../../src/engine/native';

/** What the tests reach into on the wasm backend (ids, C++ registration). */
interface WasmBackendView {
  numDataIds(): number;
  dataIdMap: { get(dataId: object): { id: number } | undefined };
  wasm: { tfjs: { registerTensor(id: number, size: number, offset: number): void; disposeData(id: number): void } };
}

interface Result {
  shape: number[];
  values: Float32Array | Int32Array;
}

/** Deterministic uniform values in [-1, 1) (mulberry32), so failures reproduce. */
function randomValues(size: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    out[i] = ((t ^ (t >>> 14)) >>> 0) / 2 ** 31 - 1;
  }
  return out;
}

/** Runs `fn` on `backend` and copies its outputs out, leaving no tensors behind. */
async function runOn(backend: 'cpu' | 'wasm', fn: () => tf.Tensor[]): Promise<Result[]> {
  await tf.setBackend(backend);
  const outs = tf.tidy(fn);
  const results = outs.map((t) => ({ shape: t.shape, values: t.dataSync() as Float32Array | Int32Array }));
  tf.dispose(outs);
  return results;
}

/** Same shapes, and |w - c| <= tol·(1 + |c|) elementwise. */
function assertClose(wasm: Result[], cpu: Result[], tol: number, label: string): void {
  assert.equal(wasm.length, cpu.length, label);
  cpu.forEach((c, i) => {
    const w = wasm[i];
    assert.deepEqual(w.shape, c.shape, `${label}: output ${i} shape`);
    assert.equal(w.values.length, c.values.length, `${label}: output ${i} size`);
    for (let j = 0; j < c.values.length; j++) {
      const err = Math.abs(w.values[j] - c.values[j]);
      if (!(err <= tol * (1 + Math.abs(c.values[j])))) {
        assert.fail(`${label}: output ${i}[${j}] wasm ${w.values[j]} vs cpu ${c.values[j]} (tol ${tol})`);
      }
    }
  });
}

/** Expected output shape of tf.matMul, computed independently of tfjs. */
function matMulShape(a: number[], b: number[], tA: boolean, tB: boolean): number[] {
  const outer: number[] = [];
  const ao = a.slice(0, -2);
  const bo = b.slice(0, -2);
  for (let i = 0; i < Math.max(ao.length, bo.length); i++) {
    const x = ao[ao.length - 1 - i] ?? 1;
    const y = bo[bo.length - 1 - i] ?? 1;
    outer.unshift(x === 1 ? y : x);
  }
  const m = tA ? a[a.length - 1] : a[a.length - 2];
  const n = tB ? b[b.length - 2] : b[b.length - 1];
  return [...outer, m, n];
}

/** Shape of an operand holding [..., rows, cols], stored transposed when `t`. */
function operand(batch: number[], rows: number, cols: number, t: boolean): number[] {
  return t ? [...batch, cols, rows] : [...batch, rows, cols];
}

let seed = 1;

/**
 * tf.matMul on patched wasm vs cpu: output, and (with `grads`) the gradients of a random-weighted sum.
 * Tolerance grows with sqrt(K): float32 sums of K products in different orders.
 */
async function compareMatMul(a: number[], b: number[], tA: boolean, tB: boolean, grads: boolean): Promise<void> {
  const av = randomValues(tf.util.sizeFromShape(a), seed++);
  const bv = randomValues(tf.util.sizeFromShape(b), seed++);
  const outShape = matMulShape(a, b, tA, tB);
  const wv = randomValues(tf.util.sizeFromShape(outShape), seed++);
  const fn = (): tf.Tensor[] => {
    const at = tf.tensor(av, a);
    const bt = tf.tensor(bv, b);
    const out = tf.matMul(at, bt, tA, tB);
    if (!grads) return [out];
    const w = tf.tensor(wv, outShape);
    const g = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.matMul(x, y, tA, tB).mul(w).sum());
    return [out, ...g([at, bt])];
  };
  const cpu = await runOn('cpu', fn);
  const wasm = await runOn('wasm', fn);
  assert.deepEqual(cpu[0].shape, outShape);
  const k = tA ? a[a.length - 2] : a[a.length - 1];
  assertClose(wasm, cpu, 1e-5 * Math.sqrt(Math.max(k, 1)) * (grads ? 4 : 1), `[${a}]x[${b}] tA=${tA} tB=${tB}`);
}

const transposes: [boolean, boolean][] = [[false, false], [false, true], [true, false], [true, true]];

describe('engine/wasm-kernels', function () {
  let patched: string[] = [];
  let backend: WasmBackendView;

  before(async () => {
    assert.ok(await tf.setBackend('wasm'));
    patched = patchWasmKernels();
    backend = tf.backend() as unknown as WasmBackendView;
    // These tests are about the XNNPACK route: the native GEMM (test/engine/native.test.ts) stays off here.
    configureNative({ enabled: false });
  });

  after(async () => {
    resetNative();
    await tf.setBackend('wasm');
  });

  describe('registration', () => {
    it('registers tunelab kernels for wasm and reports their names', () => {
      assert.deepEqual(patched, ['BatchMatMul', 'UnsortedSegmentSum', 'Sum', 'Identity', 'GatherV2']);
      assert.equal(tf.getKernel('BatchMatMul', 'wasm')?.kernelFunc, batchMatMulConfig.kernelFunc);
      assert.equal(tf.getKernel('UnsortedSegmentSum', 'wasm')?.kernelFunc, unsortedSegmentSumConfig.kernelFunc);
    });

    it('is idempotent and keeps the stock kernel as fallback', async () => {
      assert.deepEqual(patchWasmKernels(), patched);
      assert.deepEqual(patchWasmKernels(), patched);
      assert.equal(tf.getKernel('BatchMatMul', 'wasm')?.kernelFunc, batchMatMulConfig.kernelFunc);
      // int32 goes to the stock kernel; were "stock" our own kernel after the re-patch this would recurse.
      await tf.setBackend('wasm');
      const a = tf.tensor2d([[1, 2]], [1, 2], 'int32');
      assert.throws(() => tf.matMul(a, a, false, true), /non-float32/);
      a.dispose();
      await compareMatMul([3, 4, 5], [3, 5, 2], false, false, false);
    });

    it('survives a backend switch (setupFunc re-runs)', async () => {
      await tf.setBackend('cpu');
      await tf.setBackend('wasm');
      await compareMatMul([2, 3, 4], [2, 5, 4], false, true, false);
    });
  });

  describe('BatchMatMul matches cpu (outputs and gradients)', () => {
    it('rank 2, all transposes, odd sizes', async () => {
      for (const [tA, tB] of transposes) {
        await compareMatMul(operand([], 7, 13, tA), operand([], 13, 5, tB), tA, tB, true);
        await compareMatMul(operand([], 33, 300, tA), operand([], 300, 17, tB), tA, tB, true);
      }
    });

    it('rank 2 with a unit dimension (transposes that need no copy)', async () => {
      for (const [tA, tB] of transposes) {
        await compareMatMul(operand([], 1, 9, tA), operand([], 9, 4, tB), tA, tB, true);
        await compareMatMul(operand([], 6, 1, tA), operand([], 1, 4, tB), tA, tB, true);
        await compareMatMul(operand([], 6, 9, tA), operand([], 9, 1, tB), tA, tB, true);
      }
    });

    it('rank 3 true batched, all transposes', async () => {
      for (const [tA, tB] of transposes) {
        await compareMatMul(operand([3], 7, 13, tA), operand([3], 13, 5, tB), tA, tB, true);
      }
    });

    it('rank 4 attention shapes [B,H,T,hd], all transposes', async () => {
      for (const [tA, tB] of transposes) {
        // scores = q·kᵀ ([2,4,32,16]x[2,4,16,32]) and out = p·v ([2,4,32,32]x[2,4,32,16]).
        await compareMatMul(operand([2, 4], 32, 16, tA), operand([2, 4], 16, 32, tB), tA, tB, true);
        await compareMatMul(operand([2, 4], 32, 32, tA), operand([2, 4], 32, 16, tB), tA, tB, true);
      }
    });

    it('shared right-hand side (batch folded into rows), all transposes', async () => {
      for (const [tA, tB] of transposes) {
        await compareMatMul(operand([4], 9, 7, tA), operand([], 7, 6, tB), tA, tB, false);
        await compareMatMul(operand([2, 3], 5, 7, tA), operand([], 7, 6, tB), tA, tB, false);
        await compareMatMul(operand([4], 9, 7, tA), operand([1], 7, 6, tB), tA, tB, false);
      }
    });

    it('broadcast batch dims both ways, all transposes', async () => {
      for (const [tA, tB] of transposes) {
        // a's batch 1: per-batch calls share a's id.
        await compareMatMul(operand([1], 5, 7, tA), operand([3], 7, 6, tB), tA, tB, false);
        await compareMatMul(operand([], 5, 7, tA), operand([3], 7, 6, tB), tA, tB, false);
        await compareMatMul(operand([1, 1], 5, 7, tA), operand([2, 3], 7, 6, tB), tA, tB, false);
        // Trailing-dim broadcast: output batch i uses a[i % 3] and b[i], and the other way round.
        await compareMatMul(operand([3], 5, 7, tA), operand([2, 3], 7, 6, tB), tA, tB, false);
        await compareMatMul(operand([2, 3], 5, 7, tA), operand([3], 7, 6, tB), tA, tB, false);
        await compareMatMul(operand([2, 3], 5, 7, tA), operand([1, 3], 7, 6, tB), tA, tB, false);
        // Not numpy's broadcast: tfjs (cpu and stock wasm) pairs output batch i with a[i % 2], b[i].
        await compareMatMul(operand([2, 1], 5, 7, tA), operand([2, 3], 7, 6, tB), tA, tB, false);
      }
    });

    it('broadcast gradients: the matmuls tfjs uses for them match cpu', async () => {
      // tfjs's BatchMatMul gradient rejects broadcast inputs on every backend (its dB keeps a's batch), so
      // a model reshapes [B,T,K]x[K,N] to 2D; the products such a gradient needs are still checked here.
      await compareMatMul([4, 9, 6], [7, 6], false, true, false); // dA = dy·bᵀ
      await compareMatMul([4, 9, 7], [4, 9, 6], true, false, false); // dB (per batch) = aᵀ·dy
      await compareMatMul([36, 7], [36, 6], true, false, true); // the 2D form, with its own gradients
    });

    it('attention at model size [16,4,64,32] (B·H = 64, T = 64, hd = 32)', async () => {
      await compareMatMul([16, 4, 64, 32], [16, 4, 64, 32], false, true, true);
      await compareMatMul([16, 4, 64, 64], [16, 4, 64, 32], false, false, true);
    });

    it('one tensor used as weights in two shapes (reshape shares its data) gives both right products', async () => {
      // The C++ side caches packed weights per data id only; a stale [4,6] operator must not serve [6,4].
      const wv = randomValues(24, 201);
      const xv = randomValues(5 * 6, 202);
      const fn = (): tf.Tensor[] => {
        const w = tf.tensor2d(wv, [4, 6]);
        const first = tf.matMul(tf.tensor2d(xv.slice(0, 20), [5, 4]), w);
        const second = tf.matMul(tf.tensor2d(xv, [5, 6]), w.reshape([6, 4]));
        const third = tf.matMul(tf.tensor2d(xv.slice(0, 20), [5, 4]), w);
        return [first, second, third];
      };
      assertClose(await runOn('wasm', fn), await runOn('cpu', fn), 1e-5, 'reshaped weights');
    });

    it('empty operands give zeros of the right shape', async () => {
      await compareMatMul([0, 4], [4, 5], false, false, false);
      await compareMatMul([3, 0], [0, 5], false, false, false);
      await compareMatMul([2, 3, 0], [2, 0, 4], false, false, false);
    });

    it('reports inner-dimension mismatches like tfjs', async () => {
      await tf.setBackend('wasm');
      const a = tf.zeros([2, 3]);
      const b = tf.zeros([4, 5]);
      assert.throws(() => tf.matMul(a, b), /inner shapes \(3\) and \(4\)/);
      tf.dispose([a, b]);
    });
  });

  describe('BatchMatMul resources', () => {
    // a, b, transposeA, transposeB, and whether tfjs has a gradient for it (none for broadcast batches).
    const shapes: [number[], number[], boolean, boolean, boolean][] = [
      [[64, 32], [32, 48], false, false, true],
      [[128, 32], [48, 32], false, true, true],
      [[2, 64, 32], [48, 32], false, true, false],
      [[4, 16, 8], [4, 16, 8], true, false, true],
      [[2, 3, 16, 8], [2, 3, 16, 8], false, true, true],
      [[16, 8], [5, 8, 16], false, false, false],
    ];

    it('leaves no tensors or data ids behind over 20 matmuls + gradients', async () => {
      await tf.setBackend('wasm');
      const inputs = shapes.map(([a, b]) => [tf.randomNormal(a), tf.randomNormal(b)] as const);
      const step = () => {
        shapes.forEach(([, , tA, tB, grads], i) => {
          const [a, b] = inputs[i];
          const out = tf.matMul(a, b, tA, tB);
          out.dispose();
          if (!grads) return;
          const g = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.matMul(x, y, tA, tB).sum())([a, b]);
          tf.dispose(g);
        });
      };
      step();
      const tensors = tf.memory().numTensors;
      const dataIds = backend.numDataIds();
      for (let r = 0; r < 20; r++) step();
      assert.equal(tf.memory().numTensors, tensors);
      assert.equal(backend.numDataIds(), dataIds);
      inputs.forEach((pair) => tf.dispose([...pair]));
    });

    /** Records the C++ ids registered / disposed while `fn` runs. */
    function spyIds<T>(fn: () => T, failOnRegistration?: number): { result?: T; error?: unknown; registered: number[]; disposed: number[] } {
      const tfjs = backend.wasm.tfjs;
      const { registerTensor, disposeData } = tfjs;
      const registered: number[] = [];
      const disposed: number[] = [];
      tfjs.registerTensor = (id, size, offset) => {
        if (registered.length + 1 === failOnRegistration) throw new Error('injected failure');
        registered.push(id);
        registerTensor(id, size, offset);
      };
      tfjs.disposeData = (id) => {
        disposed.push(id);
        disposeData(id);
      };
      try {
        return { result: fn(), registered, disposed };
      } catch (error) {
        return { error, registered, disposed };
      } finally {
        tfjs.registerTensor = registerTensor;
        tfjs.disposeData = disposeData;
      }
    }

    it('unregisters every aliased id; only the output stays registered', async () => {
      await tf.setBackend('wasm');
      for (const [a, b, tA, tB] of shapes) {
        const at = tf.randomNormal(a);
        const bt = tf.randomNormal(b);
        const { result: out, registered, disposed } = spyIds(() => tf.matMul(at, bt, tA, tB));
        assert.ok(out);
        const live = registered.filter((id) => !disposed.includes(id));
        assert.deepEqual(live, [backend.dataIdMap.get(out.dataId)?.id], `[${a}]x[${b}]`);
        tf.dispose([at, bt, out]);
      }
    });

    it('batched calls register aliases (the per-batch XNNPACK route is taken)', async () => {
      await tf.setBackend('wasm');
      const a = tf.randomNormal([6, 4, 8]);
      const b = tf.randomNormal([6, 8, 5]);
      const { result, registered } = spyIds(() => tf.matMul(a, b));
      // 1 output + per batch one alias each for a, b and the output slice.
      assert.equal(registered.length, 1 + 6 * 3);
      tf.dispose([a, b, result]);
    });

    it('cleans up aliases, temporaries and the output when a call fails midway', async () => {
      await tf.setBackend('wasm');
      const a = tf.randomNormal([6, 4, 8]);
      const b = tf.randomNormal([6, 5, 8]);
      const tensors = tf.memory().numTensors;
      const dataIds = backend.numDataIds();
      // Registration 1: output, 2: transposed b, then aliases; fail on the 5th (inside the batch loop).
      const { error, registered, disposed } = spyIds(() => tf.matMul(a, b, false, true), 5);
      assert.match(String(error), /injected failure/);
      assert.equal(registered.length, 4);
      assert.deepEqual([...disposed].sort(), [...registered].sort());
      assert.equal(tf.memory().numTensors, tensors);
      assert.equal(backend.numDataIds(), dataIds);
      tf.dispose([a, b]);
    });
  });

  describe('UnsortedSegmentSum', () => {
    it('gather gradient with repeated ids matches cpu (embedding lookup)', async () => {
      const table = randomValues(10 * 6, 101);
      const ids = [2, 2, 5, 0, 9, 2, 7, 5, 2, 1, 0, 3];
      const w = randomValues(3 * 4 * 6, 102);
      const fn = (): tf.Tensor[] => {
        const t = tf.tensor2d(table, [10, 6]);
        const idx = tf.tensor2d(ids, [3, 4], 'int32');
        const g = tf.grad((x: tf.Tensor) => tf.gather(x, idx).mul(tf.tensor3d(w, [3, 4, 6])).sum());
        return [g(t)];
      };
      const cpu = await runOn('cpu', fn);
      const wasm = await runOn('wasm', fn);
      assertClose(wasm, cpu, 1e-6, 'gather grad');
      // Row 4 is never looked up: its gradient must be exactly 0; row 2 sums 4 lookups.
      assert.deepEqual(Array.from(wasm[0].values.slice(24, 30)), [0, 0, 0, 0, 0, 0]);
    });

    it('gather gradient along axis 1 matches cpu', async () => {
      const x = randomValues(4 * 7 * 3, 103);
      const fn = (): tf.Tensor[] => {
        const g = tf.grad((t: tf.Tensor) => tf.gather(t, tf.tensor1d([6, 0, 6, 3], 'int32'), 1).square().sum());
        return [g(tf.tensor3d(x, [4, 7, 3]))];
      };
      assertClose(await runOn('wasm', fn), await runOn('cpu', fn), 1e-6, 'gather axis 1 grad');
    });

    it('drops out-of-range ids, handles int32 and rank-3 x like cpu', async () => {
      const xf = randomValues(6 * 4, 104);
      const fn = (): tf.Tensor[] => [
        tf.unsortedSegmentSum(tf.tensor2d(xf, [6, 4]), tf.tensor1d([0, -1, 2, 4, 2, 3], 'int32'), 4),
        tf.unsortedSegmentSum(tf.tensor2d([1, 2, 3, 4, 5, 6], [3, 2], 'int32'), tf.tensor1d([1, 1, 0], 'int32'), 2),
        tf.unsortedSegmentSum(tf.tensor3d(xf, [3, 2, 4]), tf.tensor1d([1, 1, 0], 'int32'), 3),
        tf.unsortedSegmentSum(tf.tensor1d([1, 2, 3]), tf.tensor1d([2, 2, 0], 'int32'), 3),
      ];
      const cpu = await runOn('cpu', fn);
      const wasm = await runOn('wasm', fn);
      assertClose(wasm, cpu, 1e-6, 'unsortedSegmentSum');
      assert.deepEqual(wasm[0].shape, [4, 4]);
      assert.deepEqual(Array.from(wasm[1].values), [5, 6, 4, 6]);
      assert.ok(wasm[1].values instanceof Int32Array);
      assert.deepEqual(Array.from(wasm[3].values), [3, 0, 3]);
    });

    it('rejects multi-dimensional segment ids with a clear message', async () => {
      await tf.setBackend('wasm');
      const x = tf.zeros([2, 3, 4]);
      const ids = tf.zeros([2, 3], 'int32');
      assert.throws(() => tf.unsortedSegmentSum(x, ids as tf.Tensor1D, 3), /segmentIds must be 1-D/);
      tf.dispose([x, ids]);
    });

    it('leaves no tensors behind', async () => {
      await tf.setBackend('wasm');
      const table = tf.randomNormal([50, 8]);
      const ids = tf.tensor1d([1, 4, 4, 49, 0], 'int32');
      const run = () => tf.dispose(tf.grad((t: tf.Tensor) => tf.gather(t, ids).sum())(table));
      run();
      const tensors = tf.memory().numTensors;
      const dataIds = backend.numDataIds();
      for (let i = 0; i < 20; i++) run();
      assert.equal(tf.memory().numTensors, tensors);
      assert.equal(backend.numDataIds(), dataIds);
      tf.dispose([table, ids]);
    });
  });

  describe('GatherV2', () => {
    it('matches cpu along axis 0 (embedding lookups, repeated ids, int32 rows, rank-3 tables) and other axes', async () => {
      const table = randomValues(7 * 3 * 2, 31);
      const run = () => {
        const ids = tf.tensor2d([[6, 0, 6], [2, 2, 1]], [2, 3], 'int32');
        const x = tf.tensor3d(table, [7, 3, 2]);
        return [tf.gather(x, ids), tf.gather(tf.tensor2d(table, [14, 3]).toInt(), ids), tf.gather(x, tf.tensor1d([2, 0], 'int32'), 1), tf.gather(tf.tensor1d(table.slice(0, 7)), tf.scalar(3, 'int32'))];
      };
      assertClose(await runOn('wasm', run), await runOn('cpu', run), 0, 'gather');
      // The embedding gradient (UnsortedSegmentSum) still flows through it.
      const grad = () => [tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.gather(t, tf.tensor1d([1, 1, 4], 'int32')), tf.tensor2d(randomValues(6, 3), [3, 2]))))(tf.ones([5, 2]))];
      assertClose(await runOn('wasm', grad), await runOn('cpu', grad), 1e-6, 'gather gradient');
    });

    it('refuses an index outside the table with the stock message, leaking nothing', async () => {
      await tf.setBackend('wasm');
      const x = tf.ones([4, 2]);
      const before = tf.memory().numTensors;
      const ids = tf.tensor1d([0, 4], 'int32');
      assert.throws(() => tf.gather(x, ids), /GatherV2: the index value 4 is not in \[0, 3\]/);
      ids.dispose();
      assert.equal(tf.memory().numTensors, before);
      x.dispose();
    });
  });

  describe('Sum and Identity', () => {
    it('Sum matches cpu over leading, trailing, middle and all axes, with and without keepDims', async () => {
      const x = randomValues(4 * 6 * 5, 21);
      const cases: [number | number[], boolean][] = [[0, false], [[0, 1], false], [[0, 1], true], [[1, 0], false], [2, false], [1, true], [[0, 2], false], [[0, 1, 2], false], [-1, false]];
      const run = () => cases.map(([axis, keepDims]) => tf.sum(tf.tensor3d(x, [4, 6, 5]), axis, keepDims));
      assertClose(await runOn('wasm', run), await runOn('cpu', run), 1e-5, 'sum');
      const grads = () => {
        const w = tf.tensor2d(randomValues(16 * 3, 5), [16, 3]);
        const g = tf.grad((b: tf.Tensor) => tf.sum(tf.mul(tf.add(tf.ones([16, 3]), b), w)))(tf.zeros([3]));
        return [g, tf.sum(tf.tensor2d(x.slice(0, 48), [16, 3]).toInt(), 0)];
      };
      assertClose(await runOn('wasm', grads), await runOn('cpu', grads), 1e-5, 'bias gradient and int32 sum');
    });

    it('Identity shares the buffer, keeps it alive after the source is freed, and leaks nothing', async () => {
      await tf.setBackend('wasm');
      const dataIds = backend.numDataIds();
      const a = tf.tensor1d([1, 2, 3]);
      const b = tf.clone(a); // runs the Identity kernel
      assert.equal(backend.numDataIds(), dataIds + 1, 'no new buffer');
      a.dispose();
      assert.deepEqual(Array.from(b.dataSync()), [1, 2, 3]);
      b.dispose();
      assert.equal(backend.numDataIds(), dataIds);
      const s = tf.tensor1d(['x'], 'string');
      const c = tf.clone(s);
      assert.deepEqual(c.dataSync(), ['x']);
      tf.dispose([s, c]);
    });
  });
});
