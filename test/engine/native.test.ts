import { strict as assert } from 'assert';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import fc from 'fast-check';
import { configureNative, loadNativeAddon, nativeAddonPath, nativeInfo, resetNative, type NativeIsa } from '../../src/engine/native';
import { patchWasmKernels } from '../../src/engine/wasm-kernels';
import { CausalLM, modelConfig } from '../../src/model';
import { Trainer } from '../../src/train/trainer';
import { TokenWindows, causalLmObjective } from '../../src/train/causal-lm';

/** One product: batch shapes of a and b (tfjs modulo broadcasting), sizes, transposes. */
interface Form {
  batchA: number[];
  batchB: number[];
  m: number;
  n: number;
  k: number;
  tA: boolean;
  tB: boolean;
}

const shapeA = (f: Form) => [...f.batchA, ...(f.tA ? [f.k, f.m] : [f.m, f.k])];
const shapeB = (f: Form) => [...f.batchB, ...(f.tB ? [f.n, f.k] : [f.k, f.n])];
const label = (f: Form) => `[${shapeA(f)}]${f.tA ? 'ᵀ' : ''}·[${shapeB(f)}]${f.tB ? 'ᵀ' : ''}`;

/** Deterministic values in [-1, 1): failures reproduce from the printed form alone. */
function values(size: number, seed: number): Float32Array {
  const out = new Float32Array(size);
  let s = seed >>> 0;
  for (let i = 0; i < size; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

/** matMul of a form on one backend, with the output copied out. */
async function product(backend: 'cpu' | 'wasm', f: Form): Promise<{ shape: number[]; data: Float32Array }> {
  await tf.setBackend(backend);
  const a = tf.tensor(values(tf.util.sizeFromShape(shapeA(f)), 1), shapeA(f));
  const b = tf.tensor(values(tf.util.sizeFromShape(shapeB(f)), 2), shapeB(f));
  const c = tf.matMul(a, b, f.tA, f.tB);
  const out = { shape: c.shape, data: c.dataSync() as Float32Array };
  tf.dispose([a, b, c]);
  return out;
}

/** |x - ref| <= tol·(1 + |ref|)·√k elementwise: float32 sums of k products against another order. */
function assertClose(x: ArrayLike<number>, ref: ArrayLike<number>, k: number, what: string): void {
  assert.equal(x.length, ref.length, `${what}: size`);
  const tol = 1e-6 * Math.sqrt(k + 1);
  for (let i = 0; i < ref.length; i++) {
    if (!(Math.abs(x[i] - ref[i]) <= tol * (1 + Math.abs(ref[i])))) {
      assert.fail(`${what}: [${i}] native ${x[i]} vs cpu ${ref[i]}`);
    }
  }
}

/** Forms tfjs supports: batches equal, or one side 1 or absent; sizes across MR/NR tails and K not a multiple of 8/16. */
const forms = fc.record({
  batch: fc.constantFrom<[number[], number[]]>([[], []], [[3], [3]], [[2], []], [[], [4]], [[2, 2], [1]], [[1], [3]], [[2, 3], [2, 3]]),
  m: fc.integer({ min: 1, max: 40 }),
  n: fc.integer({ min: 1, max: 70 }),
  // Mostly small; sometimes past one KC block (256), so blocks are summed into C.
  k: fc.oneof({ arbitrary: fc.integer({ min: 1, max: 45 }), weight: 5 }, { arbitrary: fc.integer({ min: 250, max: 530 }), weight: 1 }),
  tA: fc.boolean(),
  tB: fc.boolean(),
}).map(({ batch: [batchA, batchB], ...rest }): Form => ({ batchA, batchB, ...rest }));

const addon = loadNativeAddon();

describe('native GEMM (native/, src/engine/native.ts)', function () {
  before(async function () {
    if (!addon) {
      // CI builds the addon at `npm ci`: there, TUNELAB_REQUIRE_NATIVE=1 turns a failed build into a failure.
      if (process.env.TUNELAB_REQUIRE_NATIVE === '1') assert.fail(`TUNELAB_REQUIRE_NATIVE=1 but the native addon does not load from ${nativeAddonPath}`);
      console.log(`      skipped: the native addon is not built at ${nativeAddonPath} (npm run build:native builds it)`);
      this.skip();
    }
    await tf.setBackend('wasm');
    patchWasmKernels();
    // The cpu backend is the reference here; its "install tfjs-node" banner is noise.
    const cpu = tf.findBackend('cpu') as { firstUse?: boolean } | null;
    if (cpu) cpu.firstUse = false;
  });
  // The next test files get what the environment asks for (TUNELAB_NATIVE=0 included).
  after(resetNative);

  it('runs the best kernels this CPU supports and reports them', () => {
    const info = configureNative({ enabled: true, isa: 'auto', threads: 2 });
    assert.equal(info.active, true, info.reason);
    assert.equal(info.isa, addon!.isas()[0]);
    assert.equal(info.threads, 2);
    assert.match(info.reason, new RegExp(`${info.isa} kernels, 2 threads`));
    assert.ok(addon!.isas().includes('generic'));
    assert.throws(() => configureNative({ threads: 0 }), /threads must be an integer from 1 to 256, got 0/);
    assert.throws(() => configureNative({ isa: 'sse9' as NativeIsa }), /unknown ISA "sse9"/);
  });

  it('follows TUNELAB_NATIVE, TUNELAB_THREADS, TUNELAB_NATIVE_ISA and TUNELAB_FUSED, and says why it is off', () => {
    const saved = { ...process.env };
    try {
      Object.assign(process.env, { TUNELAB_NATIVE: '0' });
      assert.deepEqual(resetNative(), { active: false, reason: 'native engine off (TUNELAB_NATIVE=0); products run on XNNPACK', threads: 1, fused: false });
      Object.assign(process.env, { TUNELAB_NATIVE: '1', TUNELAB_THREADS: '3', TUNELAB_NATIVE_ISA: 'generic' });
      assert.deepEqual(resetNative(), { active: true, reason: 'native GEMM and fused kernels: generic kernels, 3 threads', isa: 'generic', threads: 3, fused: true });
      Object.assign(process.env, { TUNELAB_FUSED: '0' });
      assert.deepEqual(resetNative(), {
        active: true, reason: 'native GEMM: generic kernels, 3 threads (fused kernels off: TUNELAB_FUSED=0)', isa: 'generic', threads: 3, fused: false,
      });
      delete process.env.TUNELAB_FUSED;
      Object.assign(process.env, { TUNELAB_THREADS: 'many' });
      const bad = resetNative();
      assert.equal(bad.active, false);
      assert.equal(bad.reason, 'TUNELAB_THREADS: threads must be an integer from 1 to 256, got "many"');
    } finally {
      for (const key of ['TUNELAB_NATIVE', 'TUNELAB_THREADS', 'TUNELAB_NATIVE_ISA']) {
        if (saved[key] === undefined) delete process.env[key];
        else process.env[key] = saved[key];
      }
      resetNative();
    }
  });

  for (const isa of ['avx512', 'avx2', 'generic'] as NativeIsa[]) {
    it(`${isa}: every transpose form, broadcast batch and tail matches the cpu backend`, async function () {
      if (!addon!.isas().includes(isa)) this.skip();
      for (const threads of [1, 2]) {
        assert.equal(configureNative({ enabled: true, isa, threads }).isa, isa);
        await fc.assert(fc.asyncProperty(forms, async (f) => {
          const [got, ref] = [await product('wasm', f), await product('cpu', f)];
          assert.deepEqual(got.shape, ref.shape, label(f));
          assertClose(got.data, ref.data, f.k, `${isa}, ${threads} threads, ${label(f)}`);
        }), { numRuns: threads === 1 ? 60 : 15, seed: 22 });
      }
    });
  }

  it('computes at float offsets that are not 64-byte aligned, inside the given bounds only', async () => {
    configureNative({ enabled: true, isa: 'auto', threads: 2 });
    await fc.assert(fc.asyncProperty(forms, fc.integer({ min: 1, max: 15 }), async (f, offset) => {
      const batch = Math.max(tf.util.sizeFromShape(f.batchA), tf.util.sizeFromShape(f.batchB));
      const sizes = [shapeA(f), shapeB(f)].map((s) => tf.util.sizeFromShape(s));
      // a, b and c one after another, each starting `offset` floats after the previous one's end.
      const aAt = offset;
      const bAt = aAt + sizes[0] + offset;
      const cAt = bAt + sizes[1] + offset;
      const heap = new Float32Array(cAt + batch * f.m * f.n + 16).fill(7);
      heap.set(values(sizes[0], 1), aAt);
      heap.set(values(sizes[1], 2), bAt);
      addon!.gemm(heap.buffer, aAt * 4, bAt * 4, cAt * 4, batch, tf.util.sizeFromShape(f.batchA), tf.util.sizeFromShape(f.batchB),
        f.m, f.n, f.k, Number(f.tA), Number(f.tB));
      const ref = await product('cpu', f);
      assertClose(heap.subarray(cAt, cAt + ref.data.length), ref.data, f.k, `offset ${offset}, ${label(f)}`);
      assert.ok(heap.subarray(cAt + ref.data.length).every((v) => v === 7), 'wrote past c');
      assert.ok(heap.subarray(bAt + sizes[1], cAt).every((v) => v === 7), 'wrote before c');
    }), { numRuns: 40, seed: 7 });
    const heap = new Float32Array(64);
    assert.throws(() => addon!.gemm(heap.buffer, 0, 0, 200, 1, 1, 1, 4, 4, 4, 0, 0), /c \(16 floats at byte 200\) is not 4-byte aligned inside the 256-byte buffer/);
    assert.throws(() => addon!.gemm(heap.buffer, 2, 0, 0, 1, 1, 1, 2, 2, 2, 0, 0), /a \(4 floats at byte 2\)/);
  });

  it('gives bit-identical results on 1 and 2 threads (fixed accumulation order)', async () => {
    const big: Form[] = [
      { batchA: [], batchB: [], m: 300, n: 333, k: 520, tA: false, tB: false },
      { batchA: [], batchB: [], m: 257, n: 190, k: 300, tA: true, tB: true },
      { batchA: [3], batchB: [], m: 130, n: 70, k: 129, tA: false, tB: true },
      { batchA: [5], batchB: [5], m: 64, n: 64, k: 64, tA: true, tB: false },
      // Split along N on 2 threads: narrow blocks read A in place, the whole width packs it; same sums.
      { batchA: [], batchB: [], m: 21, n: 200, k: 300, tA: false, tB: false },
      { batchA: [], batchB: [], m: 21, n: 200, k: 300, tA: true, tB: true },
      // At most 4 rows with B row-major: the unpacked rows path, split along N on 2 threads.
      { batchA: [], batchB: [], m: 3, n: 2100, k: 300, tA: true, tB: false },
      { batchA: [2], batchB: [], m: 1, n: 700, k: 400, tA: false, tB: false },
      // Many batches: runs of 3 whole batches per task on 2 threads, the last one short; B broadcast.
      { batchA: [20], batchB: [20], m: 40, n: 24, k: 33, tA: false, tB: true },
      { batchA: [20], batchB: [], m: 40, n: 24, k: 33, tA: true, tB: false },
      // A weight gradient Xᵀ·dY of the bench (M < N, K large): split along N, A read in place.
      { batchA: [], batchB: [], m: 128, n: 344, k: 1024, tA: true, tB: false },
    ];
    for (const f of big) {
      configureNative({ enabled: true, isa: 'auto', threads: 1 });
      const one = await product('wasm', f);
      configureNative({ threads: 2 });
      const two = await product('wasm', f);
      assert.ok(one.data.every((v, i) => Object.is(v, two.data[i])), `${label(f)} differs between 1 and 2 threads`);
      const ref = await product('cpu', f);
      assertClose(two.data, ref.data, f.k, label(f));
    }
  });

  it('stays exact when jobs follow each other faster and slower than the workers wake', async () => {
    // Workers that slept (the pauses) or still spin (back to back) claim tasks of the job they see; a late one
    // must neither run a finished job's task nor miss one (pool.c's generation in every claim).
    const f: Form = { batchA: [], batchB: [], m: 200, n: 96, k: 200, tA: false, tB: false };
    configureNative({ enabled: true, isa: 'auto', threads: 1 });
    const one = await product('wasm', f);
    configureNative({ threads: 2 });
    for (let i = 0; i < 60; i++) {
      if (i % 10 === 0) await new Promise((r) => setTimeout(r, 2));
      const two = await product('wasm', f);
      assert.ok(one.data.every((v, j) => Object.is(v, two.data[j])), `product ${i} differs from the 1-thread result`);
    }
  });

  it('gradients through the kernel match the cpu backend', async () => {
    configureNative({ enabled: true, isa: 'auto', threads: 2 });
    const cases: [number[], number[], boolean, boolean][] = [
      [[33, 17], [17, 41], false, false],
      [[3, 9, 20], [3, 11, 20], false, true],
      [[2, 19, 7], [2, 19, 13], true, false],
      [[4, 10, 6], [4, 12, 10], true, true],
    ];
    for (const [sa, sb, tA, tB] of cases) {
      const run = async (backend: 'cpu' | 'wasm') => {
        await tf.setBackend(backend);
        const a = tf.tensor(values(tf.util.sizeFromShape(sa), 3), sa);
        const b = tf.tensor(values(tf.util.sizeFromShape(sb), 4), sb);
        // A weighted sum, so every output element's gradient differs.
        const f = (x: tf.Tensor, y: tf.Tensor) => {
          const c = tf.matMul(x, y, tA, tB);
          return c.mul(tf.tensor(values(c.size, 5), c.shape)).sum();
        };
        const [ga, gb] = tf.grads(f)([a, b]);
        const out = [ga.dataSync(), gb.dataSync()] as Float32Array[];
        tf.dispose([a, b, ga, gb]);
        return out;
      };
      const [native, cpu] = [await run('wasm'), await run('cpu')];
      assertClose(native[0], cpu[0], 40, `d[${sa}]`);
      assertClose(native[1], cpu[1], 40, `d[${sb}]`);
    }
  });

  for (const family of ['llama', 'gpt2'] as const) it(`${family}: a 20-step train run with the GEMM and fused kernels: losses equal the XNNPACK + tfjs-ops path to 1e-4, tensor count flat, same seed same losses`, async () => {
    await tf.setBackend('wasm');
    const cfg = modelConfig({ family, vocabSize: 64, contextLength: 32, dModel: 64, nLayers: 2, nHeads: 4, dFf: 128 });
    const stream = Array.from({ length: 4000 }, (_, i) => (i % 7 === 6 ? (i * 31) % 64 : (i * 3) % 13));
    const run = async () => {
      const model = new CausalLM(cfg, { seed: 1 });
      const t = new Trainer(model, causalLmObjective, new TokenWindows(stream, 32, 8, 3), { lr: 3e-3, maxSteps: 20, warmupSteps: 2, weightDecay: 0.01 });
      const counts: number[] = [];
      t.on('step', () => counts.push(tf.memory().numTensors));
      const r = await t.train();
      t.dispose();
      model.dispose();
      return { losses: r.history.map((h) => h.loss), counts };
    };
    configureNative({ enabled: true, isa: 'auto', threads: 2 });
    const native = await run();
    const again = await run();
    configureNative({ enabled: false });
    assert.equal(nativeInfo().active, false);
    const xnnpack = await run();
    configureNative({ enabled: true });
    assert.equal(native.losses.length, 20);
    assert.deepEqual(again.losses, native.losses, 'same seed, same threads: same losses');
    native.losses.forEach((l, i) => assert.ok(Math.abs(l - xnnpack.losses[i]) <= 1e-4, `step ${i}: native ${l} vs XNNPACK ${xnnpack.losses[i]}`));
    assert.ok(native.losses[19] < native.losses[0] - 0.5, `loss ${native.losses[0]} → ${native.losses[19]}`);
    assert.equal(new Set(native.counts.slice(1)).size, 1, `tensor counts ${native.counts}`);
  });
});
