/**
 * Fused kernels of the native engine: the parts of a train step around the products, each one pass over
 * memory on every core instead of a chain of single-threaded wasm ops (cross-entropy, GELU, SwiGLU,
 * RMSNorm, LayerNorm, softmax, each with its gradient, and the AdamW update). They are tfjs kernels of
 * their own (`Tunelab*`), registered for the wasm backend with their gradients, so autodiff, tidy and the
 * tensor accounting work as for any op; they compute in place on the wasm heap (native/src/fused_*.c).
 *
 * Callers use {@link fusedOps} when {@link useFused} says so and the composite tfjs ops otherwise (another
 * backend, another dtype, no addon, `TUNELAB_FUSED=0`): both paths compute the same function, and the
 * tests hold each kernel and gradient to the composite on tfjs's cpu backend.
 */
import * as tf from '@tensorflow/tfjs';
import type { KernelConfig, KernelFunc, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs';
import { fusedAddon, type FusedFunctionName } from './native';

/** What a kernel function receives from tfjs (the slice used here). */
interface KernelArgs {
  inputs: { [name: string]: TensorInfo };
  backend: unknown;
  attrs?: NamedAttrMap;
}

/** The wasm backend internals the kernels use (see wasm-kernels.ts). */
interface WasmBackend {
  wasm: { HEAPF32: Float32Array };
  dataIdMap: { get(dataId: object): { memoryOffset: number } | undefined };
  makeOutput(shape: number[], dtype: tf.DataType): TensorInfo;
  disposeData(dataId: object, force?: boolean): boolean;
}

/** A fused kernel: native function, operand order, output shapes, size and float options. */
interface FusedSpec {
  kernel: string;
  fn: FusedFunctionName;
  inputs: string[];
  /** Output shapes (float32), from the first input's shape. */
  outputs: (shape: number[]) => number[][];
  /** [rows, cols] of the call: rows of the last axis by default; elementwise ops pass [size, 1]. */
  size: (shape: number[]) => [number, number];
  options?: (attrs: NamedAttrMap) => number[];
}

const lastAxis = (shape: number[]): [number, number] => {
  const cols = shape[shape.length - 1];
  return [tf.util.sizeFromShape(shape) / cols, cols];
};
const elements = (shape: number[]): [number, number] => [tf.util.sizeFromShape(shape), 1];
const same = (n: number) => (shape: number[]) => Array.from({ length: n }, () => shape);
const eps = (attrs: NamedAttrMap) => [attrs.eps as number];
const scale = (attrs: NamedAttrMap) => [attrs.scale as number];
const ropeOptions = (attrs: NamedAttrMap) => [attrs.seqLen as number, attrs.heads as number, attrs.batchedTables ? 1 : 0];

const specs: FusedSpec[] = [
  { kernel: 'TunelabCrossEntropy', fn: 'crossEntropy', inputs: ['logits', 'targets'], outputs: (s) => [[s[0]]], size: lastAxis },
  { kernel: 'TunelabCrossEntropyGrad', fn: 'crossEntropyGrad', inputs: ['logits', 'targets', 'dy'], outputs: same(1), size: lastAxis },
  { kernel: 'TunelabGelu', fn: 'gelu', inputs: ['x'], outputs: same(1), size: elements },
  { kernel: 'TunelabGeluGrad', fn: 'geluGrad', inputs: ['x', 'dy'], outputs: same(1), size: elements },
  { kernel: 'TunelabSwiGLU', fn: 'swiglu', inputs: ['gate', 'up'], outputs: same(1), size: elements },
  { kernel: 'TunelabSwiGLUGrad', fn: 'swigluGrad', inputs: ['gate', 'up', 'dy'], outputs: same(2), size: elements },
  { kernel: 'TunelabRMSNorm', fn: 'rmsNorm', inputs: ['x', 'weight'], outputs: same(1), size: lastAxis, options: eps },
  { kernel: 'TunelabRMSNormGrad', fn: 'rmsNormGrad', inputs: ['x', 'weight', 'dy'], outputs: same(2), size: lastAxis, options: eps },
  { kernel: 'TunelabLayerNorm', fn: 'layerNorm', inputs: ['x', 'weight', 'bias'], outputs: same(1), size: lastAxis, options: eps },
  { kernel: 'TunelabLayerNormGrad', fn: 'layerNormGrad', inputs: ['x', 'weight', 'dy'], outputs: same(2), size: lastAxis, options: eps },
  { kernel: 'TunelabSoftmax', fn: 'softmax', inputs: ['x'], outputs: same(1), size: lastAxis, options: scale },
  { kernel: 'TunelabSoftmaxGrad', fn: 'softmaxGrad', inputs: ['y', 'dy'], outputs: same(1), size: lastAxis, options: scale },
  { kernel: 'TunelabRoPE', fn: 'rope', inputs: ['x', 'cos', 'sin'], outputs: same(1), size: lastAxis, options: ropeOptions },
  { kernel: 'TunelabRoPEGrad', fn: 'ropeGrad', inputs: ['dy', 'cos', 'sin'], outputs: same(1), size: lastAxis, options: ropeOptions },
  {
    kernel: 'TunelabAdamW', fn: 'adamw', inputs: ['param', 'grad', 'm', 'v'], outputs: same(3), size: elements,
    options: (a) => ['lr', 'beta1', 'beta2', 'eps', 'weightDecay', 'biasCorrection1', 'biasCorrection2', 'gradScale'].map((k) => a[k] as number),
  },
];

/** A tensor's byte offset in the wasm heap (read it after any allocation: the heap may have grown). */
function heapOffset(backend: WasmBackend, t: TensorInfo, who: string): number {
  const data = backend.dataIdMap.get(t.dataId);
  if (!data) throw new Error(`${who}: tensor [${t.shape}] is not on the wasm backend`);
  return data.memoryOffset;
}

function kernelFunc(spec: FusedSpec): (args: KernelArgs) => TensorInfo | TensorInfo[] {
  return ({ inputs, backend, attrs }) => {
    const wasm = backend as WasmBackend;
    const fn = fusedAddon()?.[spec.fn];
    if (!fn) throw new Error(`${spec.kernel}: the native engine is not active (check useFused() before calling)`);
    const operands = spec.inputs.map((name) => inputs[name]);
    const shape = operands[0].shape;
    const outs = spec.outputs(shape).map((s) => wasm.makeOutput(s, 'float32'));
    try {
      const offsets = [...operands, ...outs].map((t) => heapOffset(wasm, t, spec.kernel));
      // The heap only now: makeOutput may have grown it, which replaces the ArrayBuffer.
      fn(wasm.wasm.HEAPF32.buffer as ArrayBuffer, ...offsets, ...spec.size(shape), ...(spec.options?.(attrs ?? {}) ?? []));
    } catch (e) {
      for (const o of outs) wasm.disposeData(o.dataId);
      throw e;
    }
    return outs.length === 1 ? outs[0] : outs;
  };
}

function run(kernel: string, inputs: tf.NamedTensorMap, attrs: NamedAttrMap = {}): tf.Tensor | tf.Tensor[] {
  return tf.engine().runKernel(kernel, inputs, attrs) as tf.Tensor | tf.Tensor[];
}
const one = (kernel: string, inputs: tf.NamedTensorMap, attrs?: NamedAttrMap) => run(kernel, inputs, attrs) as tf.Tensor;
const many = (kernel: string, inputs: tf.NamedTensorMap, attrs?: NamedAttrMap) => run(kernel, inputs, attrs) as tf.Tensor[];

/** Sum over every axis but the last (a norm weight's gradient from dy·x̂). */
const sumRows = (t: tf.Tensor): tf.Tensor => tf.sum(t, Array.from({ length: t.rank - 1 }, (_, i) => i));

const gradients: tf.GradConfig[] = [
  {
    kernelName: 'TunelabCrossEntropy', inputsToSave: ['logits', 'targets'],
    gradFunc: (dy, [logits, targets]) => ({
      logits: () => one('TunelabCrossEntropyGrad', { logits, targets, dy: dy as tf.Tensor }),
      targets: () => tf.zerosLike(targets),
    }),
  },
  {
    kernelName: 'TunelabGelu', inputsToSave: ['x'],
    gradFunc: (dy, [x]) => ({ x: () => one('TunelabGeluGrad', { x, dy: dy as tf.Tensor }) }),
  },
  {
    kernelName: 'TunelabSwiGLU', inputsToSave: ['gate', 'up'],
    gradFunc: (dy, [gate, up]) => {
      const [dgate, dup] = many('TunelabSwiGLUGrad', { gate, up, dy: dy as tf.Tensor });
      return { gate: () => dgate, up: () => dup };
    },
  },
  {
    kernelName: 'TunelabRMSNorm', inputsToSave: ['x', 'weight'],
    gradFunc: (dy, [x, weight], attrs) => {
      const [dx, dyXhat] = many('TunelabRMSNormGrad', { x, weight, dy: dy as tf.Tensor }, attrs);
      return { x: () => dx, weight: () => sumRows(dyXhat) };
    },
  },
  {
    kernelName: 'TunelabLayerNorm', inputsToSave: ['x', 'weight'],
    gradFunc: (dy, [x, weight], attrs) => {
      const [dx, dyXhat] = many('TunelabLayerNormGrad', { x, weight, dy: dy as tf.Tensor }, attrs);
      return { x: () => dx, weight: () => sumRows(dyXhat), bias: () => sumRows(dy as tf.Tensor) };
    },
  },
  {
    kernelName: 'TunelabRoPE', inputsToSave: ['cos', 'sin'],
    gradFunc: (dy, [cos, sin], attrs) => ({
      x: () => one('TunelabRoPEGrad', { dy: dy as tf.Tensor, cos, sin }, attrs),
      cos: () => tf.zerosLike(cos),
      sin: () => tf.zerosLike(sin),
    }),
  },
  {
    kernelName: 'TunelabSoftmax', outputsToSave: [true],
    gradFunc: (dy, saved, attrs) => ({ x: () => one('TunelabSoftmaxGrad', { y: saved[0], dy: dy as tf.Tensor }, attrs) }),
  },
];

const BACKEND = 'wasm';

/** Registers the fused kernels for the wasm backend and their gradients (idempotent); wasm-kernels.ts calls it. */
export function registerFusedKernels(): string[] {
  for (const spec of specs) {
    if (tf.getKernel(spec.kernel, BACKEND)) continue;
    const config: KernelConfig = { kernelName: spec.kernel, backendName: BACKEND, kernelFunc: kernelFunc(spec) as unknown as KernelFunc };
    tf.registerKernel(config);
  }
  for (const g of gradients) if (!tf.getGradient(g.kernelName)) tf.registerGradient(g);
  return specs.map((s) => s.kernel);
}

/**
 * Whether the fused kernels can take these tensors now: the native engine is active with its fused
 * kernels, the backend is wasm, and every tensor is float32 (int32 where noted by the op).
 */
export function useFused(...tensors: tf.Tensor[]): boolean {
  return fusedAddon() !== undefined && tf.getBackend() === BACKEND && tensors.every((t) => t.dtype === 'float32');
}

/** Options of {@link fusedOps.adamw}: AdamW's step with the bias corrections 1 − βᵗ precomputed. */
export interface FusedAdamWOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  biasCorrection1: number;
  biasCorrection2: number;
  /** Factor on the gradient first (gradient clipping's; 1 for none). */
  gradScale: number;
}

/** The fused ops; call only when {@link useFused} is true (they throw otherwise). */
export const fusedOps = {
  /** −log softmax(logits)[target] per row: logits (N, V) float32, targets (N) int32; 0 for a target outside [0, V). */
  crossEntropy: (logits: tf.Tensor2D, targets: tf.Tensor1D): tf.Tensor1D => one('TunelabCrossEntropy', { logits, targets }) as tf.Tensor1D,
  /** GELU, tanh approximation (GPT-2's gelu_new). */
  gelu: (x: tf.Tensor): tf.Tensor => one('TunelabGelu', { x }),
  /** silu(gate)·up (SwiGLU's product). */
  swiglu: (gate: tf.Tensor, up: tf.Tensor): tf.Tensor => one('TunelabSwiGLU', { gate, up }),
  /** RMSNorm over the last axis with weight (C). */
  rmsNorm: (x: tf.Tensor, weight: tf.Tensor, epsilon: number): tf.Tensor => one('TunelabRMSNorm', { x, weight }, { eps: epsilon }),
  /** LayerNorm over the last axis with weight and bias (C). */
  layerNorm: (x: tf.Tensor, weight: tf.Tensor, bias: tf.Tensor, epsilon: number): tf.Tensor =>
    one('TunelabLayerNorm', { x, weight, bias }, { eps: epsilon }),
  /** softmax(scale·x) over the last axis; scale > 0. */
  softmax: (x: tf.Tensor, scaleBy = 1): tf.Tensor => {
    if (!(scaleBy > 0)) throw new Error(`fused softmax: scale must be positive, got ${scaleBy}`);
    return one('TunelabSoftmax', { x }, { scale: scaleBy });
  },
  /**
   * Rotary embeddings in the rotate-half layout, x·cos + rotate_half(x)·sin: x (B, H, T, hd) with tables
   * (T, hd) or (B, 1, T, hd) (positions per row); undefined when the shapes are neither (use the composite).
   */
  rope: (x: tf.Tensor4D, cos: tf.Tensor, sin: tf.Tensor): tf.Tensor4D | undefined => {
    const [b, h, t, hd] = x.shape;
    const shared = tf.util.arraysEqual(cos.shape, [t, hd]);
    const batched = tf.util.arraysEqual(cos.shape, [b, 1, t, hd]);
    if ((!shared && !batched) || !tf.util.arraysEqual(cos.shape, sin.shape) || hd % 2 !== 0) return undefined;
    return one('TunelabRoPE', { x, cos, sin }, { seqLen: t, heads: h, batchedTables: batched }) as tf.Tensor4D;
  },
  /** Σ x² over every element of float32 tensors, in double: the squared global norm in one native call. */
  sumSquares: (tensors: readonly tf.Tensor[]): number => {
    const lib = fusedAddon();
    if (!lib) throw new Error('fused sumSquares: the native engine is not active (check useFused() first)');
    const backend = tf.backend() as unknown as WasmBackend;
    const offsets = tensors.map((t) => heapOffset(backend, t, 'fused sumSquares'));
    return lib.sumSquares(backend.wasm.HEAPF32.buffer as ArrayBuffer, offsets, tensors.map((t) => t.size));
  },
  /** One AdamW update of a parameter: returns [param', m', v'] (new tensors; the inputs are unchanged). */
  adamw: (param: tf.Tensor, grad: tf.Tensor, m: tf.Tensor, v: tf.Tensor, options: FusedAdamWOptions): [tf.Tensor, tf.Tensor, tf.Tensor] =>
    many('TunelabAdamW', { param, grad, m, v }, { ...options }) as [tf.Tensor, tf.Tensor, tf.Tensor],
};
