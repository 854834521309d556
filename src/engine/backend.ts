/**
 * Backend selection: tfjs-node-gpu → tfjs-node → wasm → cpu, chosen once per process.
 *
 * tfjs-node(-gpu) are optional peers: they are `require`d inside try/catch so a missing package or a
 * broken native binding (its install script downloads libtensorflow, which fails offline) never breaks
 * import. The choice can be forced with `initEngine({ backend })` or `TUNELAB_BACKEND=<name>`.
 */
import * as os from 'os';
import * as tf from '@tensorflow/tfjs';
import { patchWasmKernels } from './wasm-kernels';
import { configureNative, nativeInfo, type NativeInfo } from './native';

/** A backend tunelab knows how to start, fastest first. */
export type BackendName = 'tensorflow-gpu' | 'tensorflow' | 'wasm' | 'cpu';

/** The preference order used by auto-detection. */
export const backendOrder: readonly BackendName[] = ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'];

/** What `engine()` reports. */
export interface EngineInfo {
  /** The active backend: `tensorflow` covers both tfjs-node packages (tfjs registers both as "tensorflow"). */
  backend: BackendName;
  /** Version of @tensorflow/tfjs-core in use. */
  tfjsVersion: string;
  /** Threads the backend computes with (wasm: the native GEMM's pool, else 1; tfjs-node: TensorFlow's pool). */
  threads: number;
  /** On wasm: whether products run on tunelab's native GEMM (native.ts), with which kernels, or why not. */
  native?: NativeInfo;
  /** Backends tried before this one, with the reason each was skipped. */
  skipped: { backend: BackendName; reason: string }[];
  /** Kernels tunelab re-registered for this backend (see wasm-kernels.ts). */
  patchedKernels: string[];
}

/** Options of {@link initEngine}. */
export interface EngineOptions {
  /** Force one backend; default: `TUNELAB_BACKEND` or auto-detection in {@link backendOrder}. */
  backend?: BackendName | 'auto';
  /** Threads of the native GEMM on wasm; default `TUNELAB_THREADS` or the machine's cores. */
  threads?: number;
}

let current: EngineInfo | undefined;
let starting: Promise<EngineInfo> | undefined;

const nodePackages: Partial<Record<BackendName, string>> = {
  'tensorflow-gpu': '@tensorflow/tfjs-node-gpu',
  tensorflow: '@tensorflow/tfjs-node',
};

function parseBackend(value: string, source: string): BackendName | 'auto' {
  if (value === 'auto' || (backendOrder as readonly string[]).includes(value)) return value as BackendName | 'auto';
  throw new Error(`${source}: unknown backend "${value}"; expected one of auto, ${backendOrder.join(', ')}`);
}

/** Loads one backend; throws with a readable reason when it cannot start. */
async function tryStart(name: BackendName): Promise<{ threads: number; patched: string[] }> {
  const pkg = nodePackages[name];
  if (pkg) {
    // Loading registers the "tensorflow" backend; a missing binding throws here, inside the try of the caller.
    require(pkg);
    if (!(await tf.setBackend('tensorflow'))) throw new Error(`${pkg} loaded but its backend did not initialise`);
    return { threads: os.cpus().length, patched: [] };
  }
  if (name === 'wasm') {
    require('@tensorflow/tfjs-backend-wasm');
    if (!(await tf.setBackend('wasm'))) throw new Error('wasm backend did not initialise');
    return { threads: 1, patched: patchWasmKernels() };
  }
  if (!(await tf.setBackend('cpu'))) throw new Error('cpu backend did not initialise');
  return { threads: 1, patched: [] };
}

/**
 * tfjs's cpu backend prints a "install tfjs-node" banner on first use, also when it only serves as a
 * helper of wasm; `engine()` already reports which backend runs and why the others were skipped.
 */
function quietCpuBanner(): void {
  const cpu = tf.findBackend('cpu') as { firstUse?: boolean } | null;
  if (cpu && 'firstUse' in cpu) cpu.firstUse = false;
}

function firstLine(e: unknown): string {
  return String(e instanceof Error ? e.message : e).split('\n')[0];
}

/**
 * Starts the tensor engine once; later calls return the same result unless a different backend is forced.
 *
 * @example
 * const info = await initEngine();            // auto: tfjs-node-gpu → tfjs-node → wasm → cpu
 * const cpu = await initEngine({ backend: 'cpu' });
 */
export async function initEngine(options: EngineOptions = {}): Promise<EngineInfo> {
  const requested = options.backend ?? (process.env.TUNELAB_BACKEND
    ? parseBackend(process.env.TUNELAB_BACKEND, 'TUNELAB_BACKEND')
    : 'auto');
  if (requested !== 'auto') parseBackend(requested, 'initEngine({backend})');
  configureNative({ threads: options.threads });
  if (current && (requested === 'auto' || requested === current.backend)) return withNative(current);
  if (starting) await starting.catch(() => undefined);
  starting = start(requested);
  try {
    return await starting;
  } finally {
    starting = undefined;
  }
}

async function start(requested: BackendName | 'auto'): Promise<EngineInfo> {
  const candidates = requested === 'auto' ? backendOrder : [requested];
  const skipped: EngineInfo['skipped'] = [];
  for (const name of candidates) {
    try {
      const { threads, patched } = await tryStart(name);
      quietCpuBanner();
      current = withNative({ backend: name, tfjsVersion: tf.version_core, threads, skipped, patchedKernels: patched });
      return current;
    } catch (e) {
      skipped.push({ backend: name, reason: firstLine(e) });
    }
  }
  const why = skipped.map((s) => `${s.backend}: ${s.reason}`).join('; ');
  throw new Error(`no tensor backend could start (${why})`);
}

/** The running engine, or undefined before {@link initEngine} resolved. */
export function engine(): EngineInfo | undefined {
  return current && withNative(current);
}

/** Refreshes what a wasm engine reports of the native GEMM (its threads can change after start). */
function withNative(info: EngineInfo): EngineInfo {
  if (info.backend === 'wasm') {
    info.native = nativeInfo();
    info.threads = info.native.threads;
  }
  return info;
}

/**
 * Starts the best engine unless one runs already: what every asynchronous entry point (loading a model,
 * training, the CLI) calls first, so that tfjs never falls back to its pure-JS `cpu` backend (~80× slower)
 * just because nobody called {@link initEngine}. An engine chosen earlier, explicitly or not, is kept.
 */
export async function ensureEngine(): Promise<EngineInfo> {
  return current ?? initEngine();
}

/**
 * The engine for synchronous entry points (`CausalLM.create`, `generate`), which cannot wait for the wasm
 * backend to start. A backend the user started through tfjs itself (`await tf.setBackend('wasm')`) is
 * adopted; otherwise this throws instead of letting tfjs silently compute on its pure-JS `cpu` backend.
 *
 * @param where - the entry point, named in the error
 */
export function requireEngine(where: string): EngineInfo {
  if (current) return current;
  const active = (tf.engine() as unknown as { backendName: string | null }).backendName;
  if (active === 'wasm') {
    // patchWasmKernels starts the native GEMM too: report its threads as a started wasm engine does.
    current = withNative({ backend: 'wasm', tfjsVersion: tf.version_core, threads: 1, skipped: [], patchedKernels: patchWasmKernels() });
    return current;
  }
  if (active === 'tensorflow') {
    current = { backend: 'tensorflow', tfjsVersion: tf.version_core, threads: os.cpus().length, skipped: [], patchedKernels: [] };
    return current;
  }
  throw new Error(
    `${where}: no tensor engine started yet, and tfjs would run on its pure-JS cpu backend (~80× slower). ` +
    'Call `await initEngine()` first (or load a model with `await base(...)` / `await loadModel(...)`, which start it); ' +
    "to use the cpu backend on purpose: `await initEngine({ backend: 'cpu' })`.",
  );
}
