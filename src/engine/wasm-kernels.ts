/** Placeholder: the wasm kernel patches are written in this file (BatchMatMul, UnsortedSegmentSum). */
export function patchWasmKernels(): string[] {
  return [];
}
