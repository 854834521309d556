export { initEngine, ensureEngine, requireEngine, engine, backendOrder } from './backend';
export type { BackendName, EngineInfo, EngineOptions } from './backend';
export { patchWasmKernels } from './wasm-kernels';
export { configureNative, nativeInfo, resetNative } from './native';
export type { NativeInfo, NativeIsa, NativeOptions } from './native';
