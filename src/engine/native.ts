/**
 * tunelab's native engine: the N-API addon built from native/ (a packed GEMM with AVX-512, AVX2+FMA and
 * portable micro-kernels chosen at run time, on a persistent thread pool). It computes in place on the wasm
 * backend's heap, so the wasm `BatchMatMul` of wasm-kernels.ts hands it tensor offsets instead of copies.
 *
 * Loading never throws: a missing or broken addon leaves the XNNPACK path of wasm-kernels.ts in charge and
 * {@link nativeInfo} says why in one line. Environment: `TUNELAB_NATIVE=0` forces the fallback,
 * `TUNELAB_THREADS=<n>` sets the threads (default: the machine's cores), `TUNELAB_NATIVE_ISA=avx512|avx2|generic`
 * forces a micro-kernel (default: the best this CPU supports), `TUNELAB_FUSED=0` keeps the GEMM but leaves the
 * rest of the step to tfjs's ops (the fused kernels of fused.ts are off).
 */
import * as os from 'os';
import * as path from 'path';

/** The micro-kernel families of the addon, best first. */
export type NativeIsa = 'avx512' | 'avx2' | 'generic';

/**
 * C[b] = op(A[b % batchA])·op(B[b % batchB]) for b < batch, row-major, in place in `heap` at byte offsets
 * (float-aligned); transposes are 0/1. Throws a RangeError when an operand does not lie inside `heap`.
 */
export type HeapGemm = (
  heap: ArrayBuffer, aOffset: number, bOffset: number, cOffset: number,
  batch: number, batchA: number, batchB: number, m: number, n: number, k: number,
  transposeA: number, transposeB: number,
) => void;

/** The fused kernels of the addon (native/src/fused_napi.c), as fused.ts calls them. */
export type FusedFunctionName =
  | 'crossEntropy' | 'crossEntropyGrad' | 'gelu' | 'geluGrad' | 'swiglu' | 'swigluGrad' | 'rmsNorm' | 'rmsNormGrad'
  | 'layerNorm' | 'layerNormGrad' | 'softmax' | 'softmaxGrad' | 'rope' | 'ropeGrad' | 'adamw';

/**
 * A fused kernel: `(heap, ...operandByteOffsets, rows, cols, ...options)`, in place in `heap`; throws a
 * RangeError naming an operand that does not lie inside it.
 */
export type HeapFused = (heap: ArrayBuffer, ...args: number[]) => void;

/** The addon's exports (native/src/addon.c). */
export interface NativeAddon extends Record<FusedFunctionName, HeapFused> {
  /** Σ x² over each (byte offset, float count) array of `heap`, in double (fused_napi.c). */
  sumSquares(heap: ArrayBuffer, offsets: number[], counts: number[]): number;
  gemm: HeapGemm;
  setThreads(threads: number): number;
  threads(): number;
  setIsa(name: NativeIsa): NativeIsa;
  isa(): NativeIsa;
  /** The ISAs this CPU supports, best first. */
  isas(): NativeIsa[];
}

/** What {@link nativeInfo} and `engine().native` report. */
export interface NativeInfo {
  /** Whether wasm products run on the native GEMM. */
  active: boolean;
  /** One line: the kernels and threads in use, or why the native engine is off. */
  reason: string;
  /** The micro-kernel in use, when active. */
  isa?: NativeIsa;
  /** Threads of the native pool (1 when inactive: the wasm backend is single-threaded in Node). */
  threads: number;
  /** Whether the fused kernels (cross-entropy, norms, activations, softmax, AdamW) run natively too. */
  fused: boolean;
}

/** Options of {@link configureNative}; unset ones keep their environment default. */
export interface NativeOptions {
  /** false forces the XNNPACK fallback; default: true unless `TUNELAB_NATIVE=0`. */
  enabled?: boolean;
  /** Threads of the GEMM pool; default `TUNELAB_THREADS` or the machine's cores. */
  threads?: number;
  /** Micro-kernel; default `TUNELAB_NATIVE_ISA` or 'auto' (the best this CPU supports). */
  isa?: NativeIsa | 'auto';
  /** false keeps the GEMM but runs the rest of the step on tfjs's own ops; default: true unless `TUNELAB_FUSED=0`. */
  fused?: boolean;
}

/** Where scripts/build-native.js writes the addon (from src/engine or dist/engine alike). */
export const nativeAddonPath = path.join(__dirname, '..', '..', 'native', 'build', 'Release', 'tunelab_native.node');

const isaNames: readonly string[] = ['avx512', 'avx2', 'generic', 'auto'];

let addon: NativeAddon | undefined;
let loadError: string | undefined;
let settings: Required<NativeOptions> | undefined;
/** Whether {@link startNative} has run (the wasm kernels are patched): later options apply at once. */
let started = false;
/** What {@link nativeInfo} says while the native engine is off, and why. */
const inactive = (reason: string): NativeInfo => ({ active: false, reason, threads: 1, fused: false });

let info: NativeInfo = inactive('not started (the wasm engine starts it)');

function firstLine(e: unknown): string {
  return String(e instanceof Error ? e.message : e).split('\n')[0];
}

/** The addon, loaded once; undefined (with the reason kept for {@link nativeInfo}) when it cannot load. */
export function loadNativeAddon(): NativeAddon | undefined {
  if (addon || loadError) return addon;
  try {
    addon = require(nativeAddonPath) as NativeAddon;
  } catch (e) {
    const missing = (e as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND';
    loadError = missing
      ? 'addon not built (`npm run build:native` in tunelab\'s folder, or `npm rebuild tunelab`, builds it)'
      : `addon failed to load: ${firstLine(e)}`;
  }
  return addon;
}

/** `text`: the value as the user wrote it (an environment variable), named in the error instead of NaN. */
function positiveInt(value: number, source: string, text: string = String(value)): number {
  if (!Number.isInteger(value) || value < 1 || value > 256) {
    throw new Error(`${source}: threads must be an integer from 1 to 256, got ${text}`);
  }
  return value;
}

function isaName(value: string, source: string): NativeIsa | 'auto' {
  if (!isaNames.includes(value)) throw new Error(`${source}: unknown ISA "${value}"; expected one of ${isaNames.join(', ')}`);
  return value as NativeIsa | 'auto';
}

function defaults(): Required<NativeOptions> {
  const env = process.env;
  const cores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  return {
    enabled: env.TUNELAB_NATIVE !== '0',
    threads: env.TUNELAB_THREADS ? positiveInt(Number(env.TUNELAB_THREADS), 'TUNELAB_THREADS', JSON.stringify(env.TUNELAB_THREADS)) : Math.max(1, cores),
    isa: env.TUNELAB_NATIVE_ISA ? isaName(env.TUNELAB_NATIVE_ISA, 'TUNELAB_NATIVE_ISA') : 'auto',
    fused: env.TUNELAB_FUSED !== '0',
  };
}

/**
 * Sets the native engine's options (validated here: a bad value throws naming the option or variable) and
 * applies them at once once the wasm kernels are patched. `initEngine({ threads })` calls this.
 */
export function configureNative(options: NativeOptions = {}): NativeInfo {
  const base = settings ?? defaults();
  if (options.threads !== undefined) positiveInt(options.threads, 'native options');
  if (options.isa !== undefined) isaName(options.isa, 'native options');
  settings = {
    enabled: options.enabled ?? base.enabled,
    threads: options.threads ?? base.threads,
    isa: options.isa ?? base.isa,
    fused: options.fused ?? base.fused,
  };
  return started ? startNative() : info;
}

/** Back to the environment's defaults (`TUNELAB_NATIVE`, `TUNELAB_THREADS`, `TUNELAB_NATIVE_ISA`), applied at once. */
export function resetNative(): NativeInfo {
  settings = undefined;
  return started ? startNative() : info;
}

/**
 * Turns the native GEMM on for the wasm `BatchMatMul` with the current options, or records why it stays
 * off. Never throws; called by `patchWasmKernels()`.
 */
export function startNative(): NativeInfo {
  started = true;
  let opts: Required<NativeOptions>;
  try {
    opts = settings ?? (settings = defaults());
  } catch (e) {
    return (info = inactive(firstLine(e)));
  }
  if (!opts.enabled) {
    const why = process.env.TUNELAB_NATIVE === '0' ? 'TUNELAB_NATIVE=0' : 'configureNative({ enabled: false })';
    return (info = inactive(`native engine off (${why}); products run on XNNPACK`));
  }
  const lib = loadNativeAddon();
  if (!lib) return (info = inactive(`${loadError}; products run on XNNPACK`));
  try {
    const supported = lib.isas();
    const isa = lib.setIsa(opts.isa === 'auto' ? supported[0] : opts.isa);
    const threads = lib.setThreads(opts.threads);
    // An addon built before the fused kernels existed has only the GEMM.
    const fused = opts.fused && typeof lib.crossEntropy === 'function';
    const what = fused ? 'native GEMM and fused kernels' : 'native GEMM';
    const why = fused || !opts.fused ? '' : ' (fused kernels missing from this build: npm run build:native)';
    const off = opts.fused ? '' : process.env.TUNELAB_FUSED === '0' ? ' (fused kernels off: TUNELAB_FUSED=0)' : ' (fused kernels off)';
    return (info = { active: true, reason: `${what}: ${isa} kernels, ${threads} thread${threads > 1 ? 's' : ''}${why}${off}`, isa, threads, fused });
  } catch (e) {
    return (info = inactive(`${firstLine(e)}; products run on XNNPACK`));
  }
}

/** What the native engine does now. */
export function nativeInfo(): NativeInfo {
  return { ...info };
}

/** The addon when its fused kernels are in use (fused.ts), else undefined. */
export function fusedAddon(): NativeAddon | undefined {
  return info.active && info.fused ? addon : undefined;
}

/** The GEMM the wasm BatchMatMul should call, or undefined when the native engine is off. */
export function nativeGemm(): HeapGemm | undefined {
  return info.active ? addon?.gemm : undefined;
}
