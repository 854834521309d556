/**
 * The "TypeScript (tunelab)" Jupyter kernel, one concern per file:
 * - `kernel.ts`: the kernel itself (execution over tslab's executor, replies, streams, interrupts) and its entry point;
 * - `wire.ts`: Jupyter's signed multipart messages and a sender that never drops one;
 * - `content.ts`: request fields, cursor positions, history globs, Jupyter errors;
 * - `resolve.ts`: `tunelab` and its data packages importable from a notebook in any folder;
 * - `sigint.ts`: clearing a second interrupt that Node would keep for a later cell;
 * - `hooks.ts`: what cells reach of the kernel (`clearOutput`, whole mime bundles);
 * - `spec.ts`: the kernelspec (`tunelab kernel install | uninstall | list`).
 */
export { clearOutput, hooksKey, type KernelHooks } from './hooks';
export { enablePackageFallback, enablePackageFallbacks, type TsSystem } from './resolve';
export { startKernel, main, type KernelOptions, type RunningKernel } from './kernel';
export type { ConnectionInfo } from './wire';
export {
  installKernelSpec, uninstallKernelSpec, listKernelSpecs, kernelSpecDir, kernelArgv, jupyterDataDir, registerKernelCommand,
  type KernelSpec, type KernelSpecLocation, type KernelSpecOptions,
} from './spec';
