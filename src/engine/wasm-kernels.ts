/**
 * Kernels tunelab re-registers on the tfjs wasm backend to close two gaps of tfjs-backend-wasm 4.22.
 *
 * - `BatchMatMul`: float32 products run on tunelab's native GEMM in place on the heap when the addon is
 *   active (native.ts); otherwise on XNNPACK as follows. The stock kernel reaches XNNPACK only when neither side is transposed and both batch
 *   sizes are 1; every other case (all matMul gradients, all attention products) runs a scalar C++ loop
 *   at 0.3-2 GFLOP/s against ~30 for XNNPACK. Ours turns every float32 case into XNNPACK calls:
 *   transposes are materialised with the wasm Transpose kernel; a right-hand side shared by the whole
 *   batch folds the batch into rows (one [B·M,K]x[K,N] call); true batched products run one XNNPACK
 *   call per batch on tensor ids aliased into the existing buffers (no copies).
 * - `UnsortedSegmentSum`: missing on wasm, which breaks `tf.gather`'s gradient (embedding lookups).
 * - `Sum` over leading axes (every bias and norm gradient): the stock kernel transposes then runs a scalar
 *   loop; ours is one ones[1,R]·x[R,C] product on the BatchMatMul above (~15x faster at [1024,512]).
 * - `GatherV2` along axis 0 (every embedding lookup): the stock kernel took ~4.5 ms for 1,024 rows of 128
 *   floats; ours copies each row with one `copyWithin` on the heap.
 * - `Identity`: the stock kernel copies; ours shares the buffer and bumps its refCount, as the cpu backend
 *   does (tfjs records an Identity for every tensor kept for the backward pass).
 */
import * as tf from '@tensorflow/tfjs';
import type { DataId, DataType, KernelConfig, KernelFunc, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs';
import { registerFusedKernels } from './fused';
import { nativeGemm, startNative } from './native';

const BACKEND = 'wasm';
const BATCH_MAT_MUL = 'BatchMatMul';
const UNSORTED_SEGMENT_SUM = 'UnsortedSegmentSum';
const SUM = 'Sum';
const IDENTITY = 'Identity';
const GATHER_V2 = 'GatherV2';

/**
 * The stock C++ `BatchMatMul` export (see kernels/BatchMatMul.js); shapes are int32 arrays in the wasm heap.
 * With both transposes off and both batch dims 1 it runs one XNNPACK fully-connected operator, cached per b id.
 */
type WasmMatMul = (
  aId: number, aShapePtr: number, aRank: number,
  bId: number, bShapePtr: number, bRank: number,
  transposeA: number, transposeB: number, outId: number,
) => void;

/** The slice of the emscripten module and BackendWasm internals these kernels use. */
interface WasmModule {
  cwrap(name: string, returnType: null, argTypes: string[]): WasmMatMul;
  _malloc(bytes: number): number;
  HEAP32: Int32Array;
  HEAPF32: Float32Array;
  tfjs: {
    /** Registers a C++ tensor id over `size` elements at `memoryOffset`; allocates nothing. */
    registerTensor(id: number, size: number, memoryOffset: number): void;
    /** Forgets a C++ tensor id and the XNNPACK operators cached for it; frees nothing. */
    disposeData(id: number): void;
  };
}

interface WasmTensorData {
  id: number;
  refCount: number;
  memoryOffset: number;
  shape: number[];
  dtype: DataType;
}

interface WasmBackend {
  wasm: WasmModule;
  dataIdMap: { get(dataId: DataId): WasmTensorData | undefined };
  /** Next free id; shared by tensors and our aliases so an alias never collides with a tensor. */
  dataIdNextNumber: number;
  makeOutput(shape: number[], dtype: DataType): TensorInfo;
  disposeData(dataId: DataId, force?: boolean): boolean;
  typedArrayFromHeap(t: TensorInfo): Float32Array | Int32Array | Uint8Array;
}

interface KernelArgs {
  inputs: { [name: string]: TensorInfo };
  backend: unknown;
  attrs?: NamedAttrMap;
}

/** The kernels registered before ours (the stock ones), used for dtypes and shapes we do not take. */
const stock = new Map<string, KernelConfig>();

function callStockKernel(name: string, args: KernelArgs): TensorInfo {
  const config = stock.get(name);
  if (!config) throw new Error(`wasm-kernels: stock ${name} kernel is not available`);
  return config.kernelFunc(args as Parameters<KernelFunc>[0]) as TensorInfo;
}

/** The C++ matmul of one wasm module instance, and a 6-int32 heap buffer for its two rank-3 shapes. */
interface BoundMatMul {
  wasm: WasmModule;
  matMul: WasmMatMul;
  shapes: number;
}
let bound: BoundMatMul | undefined;

/**
 * Binds the raw export: cwrap with only numeric arguments returns the export itself, so shapes are passed as
 * pointers to a buffer we own instead of being marshalled onto the stack per call (~2 µs per call saved,
 * which matters for per-batch calls). The 24-byte buffer lives as long as the module.
 */
function bindMatMul(backend: WasmBackend): BoundMatMul {
  if (bound?.wasm !== backend.wasm) {
    const wasm = backend.wasm;
    bound = { wasm, matMul: wasm.cwrap(BATCH_MAT_MUL, null, new Array<string>(9).fill('number')), shapes: wasm._malloc(24) >>> 0 };
  }
  return bound;
}

function tensorData(backend: WasmBackend, t: TensorInfo): WasmTensorData {
  const data = backend.dataIdMap.get(t.dataId);
  if (!data) throw new Error(`wasm-kernels: tensor ${t.shape} is not on the wasm backend`);
  return data;
}

function callStock(args: KernelArgs): TensorInfo {
  return callStockKernel(BATCH_MAT_MUL, args);
}

/**
 * Swaps the last two axes of `x` into a new tensor with the wasm Transpose kernel, or returns `x` itself
 * when one of them has size 1 (the memory layout is then the same).
 */
function swapLastTwo(x: TensorInfo, backend: WasmBackend, temps: TensorInfo[]): TensorInfo {
  const rank = x.shape.length;
  if (x.shape[rank - 1] === 1 || x.shape[rank - 2] === 1) return x;
  const transpose = tf.getKernel('Transpose', BACKEND);
  if (!transpose) throw new Error('wasm-kernels: Transpose kernel is not registered for wasm');
  // Viewed as rank 3 (same dataId): the wasm Transpose is fastest at low rank and we only need the memory.
  const batch = tf.util.sizeFromShape(x.shape.slice(0, -2));
  const x3: TensorInfo = { dataId: x.dataId, dtype: x.dtype, shape: [batch, x.shape[rank - 2], x.shape[rank - 1]] };
  const attrs = { perm: [0, 2, 1] };
  const out = transpose.kernelFunc({ inputs: { x: x3 }, backend: backend as object, attrs }) as TensorInfo;
  temps.push(out);
  return out;
}

/** The [K, N] each tensor's data has been used as XNNPACK weights with; keyed by dataId, so GC'd with it. */
const weightsShapes = new WeakMap<DataId, string>();

/**
 * Whether b's own C++ id may be handed to XNNPACK as [K, N] weights. The C++ side caches the packed
 * weights per id alone, so a second use of the same data with another [K, N] (a reshape shares the data
 * id; an un-copied transpose of a [1, K] tensor reads it as [K, 1]) would silently reuse the wrong
 * operator. Reusing the id when it is safe keeps what the stock kernel gives a weight matrix: packed once.
 */
function reusableWeights(b: TensorInfo, transposeB: boolean, k: number, n: number): boolean {
  if (transposeB) return false;
  const key = `${k},${n}`;
  const used = weightsShapes.get(b.dataId);
  if (used !== undefined) return used === key;
  weightsShapes.set(b.dataId, key);
  return true;
}

/**
 * BatchMatMul on XNNPACK for every float32 case; keeps tfjs's semantics: output shape is the broadcast of
 * the batch dims + [M, N], and output batch `i` multiplies a's batch `i % batchA` with b's `i % batchB`
 * (what the cpu and stock wasm kernels do; it equals numpy broadcasting when the smaller batch shape is a
 * suffix of the larger). Other dtypes, and batch shapes tfjs itself mishandles, go to the stock kernel.
 */
function batchMatMul(args: KernelArgs): TensorInfo {
  const { a, b } = args.inputs;
  const transposeA = Boolean(args.attrs?.transposeA);
  const transposeB = Boolean(args.attrs?.transposeB);
  const backend = args.backend as WasmBackend;
  const aRank = a.shape.length;
  const bRank = b.shape.length;
  if (a.dtype !== 'float32' || b.dtype !== 'float32' || aRank < 2 || bRank < 2) return callStock(args);

  const m = transposeA ? a.shape[aRank - 1] : a.shape[aRank - 2];
  const k = transposeA ? a.shape[aRank - 2] : a.shape[aRank - 1];
  const kB = transposeB ? b.shape[bRank - 1] : b.shape[bRank - 2];
  const n = transposeB ? b.shape[bRank - 2] : b.shape[bRank - 1];
  // A mismatch is reported by the stock kernel, with tfjs's own message.
  if (k !== kB) return callStock(args);
  const outOuter = tf.broadcast_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
  const batchA = tf.util.sizeFromShape(a.shape.slice(0, -2));
  const batchB = tf.util.sizeFromShape(b.shape.slice(0, -2));
  const batch = Math.max(batchA, batchB);
  const outShape = [...outOuter, m, n];
  if (tf.util.sizeFromShape(outShape) === 0 || k === 0) {
    // XNNPACK rejects empty operands; an empty output is empty and an empty sum is 0.
    const out = backend.makeOutput(outShape, 'float32');
    backend.typedArrayFromHeap(out).fill(0);
    return out;
  }
  // tfjs's modulo batch indexing cannot express e.g. [2,1]x[1,3] (cpu and stock wasm return fewer values
  // than the shape holds); keep the stock behaviour there rather than invent another.
  if (tf.util.sizeFromShape(outOuter) !== batch) return callStock(args);

  const gemm = nativeGemm();
  // A threaded wasm build's heap is a SharedArrayBuffer, which the addon does not take: XNNPACK there.
  if (gemm && backend.wasm.HEAPF32.buffer instanceof ArrayBuffer) {
    const out = backend.makeOutput(outShape, 'float32');
    try {
      // The heap only now: makeOutput may have grown it, which replaces the ArrayBuffer.
      gemm(backend.wasm.HEAPF32.buffer as ArrayBuffer, tensorData(backend, a).memoryOffset, tensorData(backend, b).memoryOffset,
        tensorData(backend, out).memoryOffset, batch, batchA, batchB, m, n, k, Number(transposeA), Number(transposeB));
    } catch (e) {
      backend.disposeData(out.dataId);
      throw e;
    }
    return out;
  }

  const { matMul, shapes } = bindMatMul(backend);
  const temps: TensorInfo[] = [];
  const aliases: number[] = [];
  const out = backend.makeOutput(outShape, 'float32');
  try {
    // After this, a is [batchA, M, K] and b is [batchB, K, N] in memory: XNNPACK's only layout here.
    const aData = tensorData(backend, transposeA ? swapLastTwo(a, backend, temps) : a);
    const bInfo = transposeB ? swapLastTwo(b, backend, temps) : b;
    const bData = tensorData(backend, bInfo);
    const outData = tensorData(backend, out);
    // Read HEAP32 only now: the allocations above may have grown the heap and replaced the view.
    const aShape = shapes;
    const bShape = shapes + 12;
    backend.wasm.HEAP32.set([1, batchB === 1 ? batchA * m : m, k, 1, k, n], shapes >>> 2);

    // An id aliased into existing memory: C++ only needs (id → offset, size).
    const alias = (data: WasmTensorData, index: number, size: number): number => {
      const id = backend.dataIdNextNumber++;
      backend.wasm.tfjs.registerTensor(id, size, data.memoryOffset + index * size * 4);
      aliases.push(id);
      return id;
    };

    if (batchB === 1) {
      // Shared right-hand side: a's batch folds into rows, one call.
      let bId = bData.id;
      if (bInfo === b && !reusableWeights(b, transposeB, k, n)) bId = alias(bData, 0, k * n);
      matMul(aData.id, aShape, 3, bId, bShape, 3, 0, 0, outData.id);
      return out;
    }

    // True batched: one call per output batch on ids aliased per batch (fresh ids, so no stale operator).
    // One alias per distinct b batch: its XNNPACK operator is reused when a's batch is larger than b's.
    const bIds = new Map<number, number>();
    const aIds = new Map<number, number>();
    for (let i = 0; i < batch; i++) {
      const ia = i % batchA;
      const ib = i % batchB;
      let aId = batchA === 1 ? aData.id : aIds.get(ia);
      if (aId === undefined) aIds.set(ia, (aId = alias(aData, ia, m * k)));
      let bId = bIds.get(ib);
      if (bId === undefined) bIds.set(ib, (bId = alias(bData, ib, k * n)));
      matMul(aId, aShape, 3, bId, bShape, 3, 0, 0, alias(outData, i, m * n));
    }
    return out;
  } catch (e) {
    backend.disposeData(out.dataId);
    throw e;
  } finally {
    // dispose_data also drops the XNNPACK operators cached for the alias ids; memory stays with its owner.
    for (const id of aliases) backend.wasm.tfjs.disposeData(id);
    for (const t of temps) backend.disposeData(t.dataId);
  }
}

/**
 * UnsortedSegmentSum with tfjs's documented contract: `segmentIds` is a 1-D int32 tensor with one id per
 * row of `x` (axis 0); output is `[numSegments, ...x.shape.slice(1)]` with row `s` the sum of the rows of
 * `x` whose id is `s`; ids outside `[0, numSegments)` are dropped. A JS loop over heap views: O(x.size),
 * no temporaries. (tfjs's cpu kernel mis-broadcasts multi-dimensional ids, so there is no reference to
 * follow for them: they are rejected.)
 */
function unsortedSegmentSum(args: KernelArgs): TensorInfo {
  const { x, segmentIds } = args.inputs;
  const numSegments = Number(args.attrs?.numSegments);
  const backend = args.backend as WasmBackend;
  if (x.dtype !== 'float32' && x.dtype !== 'int32') {
    throw new Error(`UnsortedSegmentSum on wasm supports float32 and int32 x, got ${x.dtype}`);
  }
  if (segmentIds.dtype !== 'int32') throw new Error(`UnsortedSegmentSum: segmentIds must be int32, got ${segmentIds.dtype}`);
  if (segmentIds.shape.length !== 1 || x.shape.length < 1 || segmentIds.shape[0] !== x.shape[0]) {
    throw new Error(
      `UnsortedSegmentSum on wasm: segmentIds must be 1-D with one id per row of x; got ids [${segmentIds.shape}] for x [${x.shape}]`,
    );
  }
  if (!Number.isInteger(numSegments) || numSegments < 0) {
    throw new Error(`UnsortedSegmentSum: numSegments must be a non-negative integer, got ${numSegments}`);
  }
  const rows = x.shape[0];
  const rowSize = tf.util.sizeFromShape(x.shape.slice(1));

  const out = backend.makeOutput([numSegments, ...x.shape.slice(1)], x.dtype);
  // Views only after makeOutput: an allocation can grow the heap and detach views taken before it.
  const xs = backend.typedArrayFromHeap(x);
  const ids = backend.typedArrayFromHeap(segmentIds);
  const acc = backend.typedArrayFromHeap(out);
  acc.fill(0);
  for (let i = 0; i < rows; i++) {
    const s = ids[i];
    if (s < 0 || s >= numSegments) continue;
    const src = i * rowSize;
    const dst = s * rowSize;
    for (let j = 0; j < rowSize; j++) acc[dst + j] += xs[src + j];
  }
  return out;
}

/**
 * Sum of float32 x over its leading axes as ones[1, R]·x[R, C] on the BatchMatMul kernel (x viewed as
 * [R, C] without a copy). Other axes and dtypes go to the stock kernel.
 */
function sum(args: KernelArgs): TensorInfo {
  const { x } = args.inputs;
  const rank = x.shape.length;
  const axes = tf.util.parseAxisParam(args.attrs?.axis as number | number[], x.shape).sort((a, b) => a - b);
  const leading = axes.length > 0 && axes.length < rank && axes.every((a, i) => a === i);
  if (x.dtype !== 'float32' || !leading) return callStockKernel(SUM, args);
  const backend = args.backend as WasmBackend;
  const rows = tf.util.sizeFromShape(x.shape.slice(0, axes.length));
  const cols = tf.util.sizeFromShape(x.shape.slice(axes.length));
  if (rows === 0 || cols === 0) return callStockKernel(SUM, args);
  const ones = backend.makeOutput([1, rows], 'float32');
  (backend.typedArrayFromHeap(ones) as Float32Array).fill(1);
  try {
    const out = batchMatMul({
      inputs: { a: ones, b: { dataId: x.dataId, dtype: x.dtype, shape: [rows, cols] } },
      backend, attrs: { transposeA: false, transposeB: false },
    });
    out.shape = args.attrs?.keepDims ? x.shape.map((d, i) => (i < axes.length ? 1 : d)) : x.shape.slice(axes.length);
    return out;
  } finally {
    backend.disposeData(ones.dataId);
  }
}

/**
 * GatherV2 along axis 0 with no batch dims (embedding lookups) for float32/int32 x and int32 indices: one
 * row copy per index, after checking every index with the stock kernel's message. Other cases: stock.
 */
function gatherV2(args: KernelArgs): TensorInfo {
  const { x, indices } = args.inputs;
  const axis = tf.util.parseAxisParam(args.attrs?.axis as number, x.shape)[0];
  const batchDims = Number(args.attrs?.batchDims ?? 0);
  if (axis !== 0 || batchDims !== 0 || (x.dtype !== 'float32' && x.dtype !== 'int32') || indices.dtype !== 'int32') {
    return callStockKernel(GATHER_V2, args);
  }
  const backend = args.backend as WasmBackend;
  const rows = x.shape[0];
  const ids = Int32Array.from(backend.typedArrayFromHeap(indices));
  for (const id of ids) if (!(id >= 0 && id < rows)) throw new Error(`GatherV2: the index value ${id} is not in [0, ${rows - 1}]`);
  const slice = tf.util.sizeFromShape(x.shape.slice(1));
  const out = backend.makeOutput([...indices.shape, ...x.shape.slice(1)], x.dtype);
  // Offsets and the heap view only now: makeOutput may have grown the heap. copyWithin moves bytes, so one
  // float view serves int32 rows too.
  const heap = backend.wasm.HEAPF32;
  const from = tensorData(backend, x).memoryOffset >>> 2;
  const to = tensorData(backend, out).memoryOffset >>> 2;
  for (let i = 0; i < ids.length; i++) heap.copyWithin(to + i * slice, from + ids[i] * slice, from + (ids[i] + 1) * slice);
  return out;
}

/** Identity without a copy: the output shares x's buffer, whose refCount keeps it alive. */
function identity(args: KernelArgs): TensorInfo {
  const { x } = args.inputs;
  const data = (args.backend as WasmBackend).dataIdMap.get(x.dataId);
  if (x.dtype === 'string' || !data) return callStockKernel(IDENTITY, args);
  data.refCount++;
  return { dataId: x.dataId, shape: [...x.shape], dtype: x.dtype };
}

/**
 * One of our kernels; its setupFunc runs the stock kernel's setup (on every tf.setBackend('wasm')), since
 * the stock kernel stays our fallback.
 */
function wasmKernel(kernelName: string, kernelFunc: (args: KernelArgs) => TensorInfo): KernelConfig {
  return {
    kernelName, backendName: BACKEND,
    setupFunc: (backend: object) => stock.get(kernelName)?.setupFunc?.(backend),
    kernelFunc: kernelFunc as unknown as KernelFunc,
  };
}

/** tunelab's `BatchMatMul` for the wasm backend (native GEMM or XNNPACK for every float32 case). */
export const batchMatMulConfig = wasmKernel(BATCH_MAT_MUL, batchMatMul);
/** tunelab's `UnsortedSegmentSum` for the wasm backend (stock wasm has none). */
export const unsortedSegmentSumConfig = wasmKernel(UNSORTED_SEGMENT_SUM, unsortedSegmentSum);
/** tunelab's `Sum` for the wasm backend (leading-axes float32 sums as one product). */
export const sumConfig = wasmKernel(SUM, sum);
/** tunelab's zero-copy `Identity` for the wasm backend. */
export const identityConfig = wasmKernel(IDENTITY, identity);
/** tunelab's `GatherV2` for the wasm backend (row copies along axis 0). */
export const gatherV2Config = wasmKernel(GATHER_V2, gatherV2);

const ours = [batchMatMulConfig, unsortedSegmentSumConfig, sumConfig, identityConfig, gatherV2Config];

function register(config: KernelConfig): void {
  if (tf.getKernel(config.kernelName, BACKEND)) tf.unregisterKernel(config.kernelName, BACKEND);
  tf.registerKernel(config);
}

/**
 * Re-registers tunelab's wasm kernels ({@link batchMatMulConfig}, {@link unsortedSegmentSumConfig},
 * {@link sumConfig}, {@link identityConfig}, {@link gatherV2Config}).
 *
 * Call after `@tensorflow/tfjs-backend-wasm` is loaded (its stock BatchMatMul is kept as the fallback for
 * non-float32 inputs). Idempotent: a second call re-registers the same kernels and keeps the original
 * stock fallback. Also registers the fused kernels of fused.ts (`Tunelab*`, new kernels rather than patches:
 * not in the returned list) and starts the native GEMM when its addon loads ({@link startNative}; `nativeInfo()`
 * says whether it runs and why not).
 *
 * @returns the kernel names registered for backend 'wasm'; empty when the wasm backend is not loaded.
 */
export function patchWasmKernels(): string[] {
  if (!tf.getKernel(BATCH_MAT_MUL, BACKEND)) return [];
  startNative();
  registerFusedKernels();
  for (const config of ours) {
    // Keep the first (stock) kernel as the fallback; a second call finds ours and keeps the stock one.
    const current = tf.getKernel(config.kernelName, BACKEND);
    if (current && current.kernelFunc !== config.kernelFunc) stock.set(config.kernelName, current);
    register(config);
  }
  return ours.map((c) => c.kernelName);
}
