/** What the product benchmarks (bench/matmul.ts, bench/gemm.ts) share: a case, its FLOPs, one timing. */
import * as tf from '@tensorflow/tfjs';
import type { KernelConfig } from '@tensorflow/tfjs';

/** One `tf.matMul(a, b, transposeA, transposeB)` with random operands of these shapes. */
export interface ProductCase {
  name: string;
  a: number[];
  b: number[];
  transposeA?: boolean;
  transposeB?: boolean;
}

/** 2·batch·M·K·N. */
export function productFlops(c: ProductCase): number {
  const r = c.a.length;
  const m = c.transposeA ? c.a[r - 1] : c.a[r - 2];
  const k = c.transposeA ? c.a[r - 2] : c.a[r - 1];
  const n = c.transposeB ? c.b[c.b.length - 2] : c.b[c.b.length - 1];
  const batch = Math.max(tf.util.sizeFromShape(c.a.slice(0, -2)), tf.util.sizeFromShape(c.b.slice(0, -2)));
  return 2 * batch * m * k * n;
}

/**
 * GFLOP/s of one case on the current backend: one warm-up call, then calls until `budgetMs` is spent (at
 * least 2). `per: 'mean'` divides the total time by the calls; `per: 'fastest'` takes the fastest call, the
 * better estimate of the uncontended speed when other processes share the cores.
 */
export function measureProduct(c: ProductCase, budgetMs: number, per: 'mean' | 'fastest' = 'mean'): number {
  const a = tf.randomNormal(c.a);
  const b = tf.randomNormal(c.b);
  const run = () => tf.matMul(a, b, c.transposeA, c.transposeB).dispose();
  run();
  let calls = 0;
  let fastest = Infinity;
  const start = performance.now();
  let elapsed = 0;
  // The wasm backend computes synchronously inside the op call, so wall time around it is kernel time.
  while (calls < 2 || elapsed < budgetMs) {
    const t = performance.now();
    run();
    calls++;
    const now = performance.now();
    fastest = Math.min(fastest, now - t);
    elapsed = now - start;
  }
  tf.dispose([a, b]);
  return productFlops(c) / ((per === 'mean' ? elapsed / calls : fastest) / 1000) / 1e9;
}

/** Makes `config` the registered kernel for its name and backend. */
export function useKernel(config: KernelConfig): void {
  tf.unregisterKernel(config.kernelName, config.backendName);
  tf.registerKernel(config);
}
