/**
 * BatchMatMul throughput on the wasm backend: stock kernel vs tunelab's patched one (src/engine/wasm-kernels.ts).
 *
 * Run: `npx tsx bench/matmul.ts` (about 40 s; BENCH_MS and BENCH_ROUNDS tune it). Prints one JSON object:
 * per case GFLOP/s (2·batch·M·K·N per call) for stock and patched, and the speed-up. Stock and patched are
 * measured in alternating rounds and the best round of each is kept, so load from other processes on a
 * shared machine biases neither side.
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { batchMatMulConfig, patchWasmKernels } from '../src/engine/wasm-kernels';
import { configureNative } from '../src/engine/native';
import { measureProduct as measure, type ProductCase as Case, useKernel } from './products';

const cases: Case[] = [
  { name: '2d 1024x1024x1024', a: [1024, 1024], b: [1024, 1024] },
  { name: '2d [1024,128]x[128,512]', a: [1024, 128], b: [128, 512] },
  { name: '2d [1024,128]x[512,128]^T', a: [1024, 128], b: [512, 128], transposeB: true },
  { name: '2d [128,1024]^Tx[128,512]', a: [128, 1024], b: [128, 512], transposeA: true },
  { name: '2d [128,1024]^Tx[512,128]^T', a: [128, 1024], b: [512, 128], transposeA: true, transposeB: true },
  { name: 'shared rhs [16,64,128]x[128,512]', a: [16, 64, 128], b: [128, 512] },
  { name: 'attention [64,64,32]x[64,32,64]', a: [64, 64, 32], b: [64, 32, 64] },
  { name: 'attention q.k^T [64,64,32]x[64,64,32]^T', a: [64, 64, 32], b: [64, 64, 32], transposeB: true },
  { name: 'attention p^T.dy [64,64,64]^Tx[64,64,32]', a: [64, 64, 64], b: [64, 64, 32], transposeA: true },
  { name: 'attention [64,32,64]^Tx[64,64,32]^T', a: [64, 32, 64], b: [64, 64, 32], transposeA: true, transposeB: true },
];

async function main(): Promise<void> {
  if (!(await tf.setBackend('wasm'))) throw new Error('wasm backend did not start');
  const stock = tf.getKernel('BatchMatMul', 'wasm');
  if (!stock || stock.kernelFunc === batchMatMulConfig.kernelFunc) throw new Error('expected the stock kernel first');
  const budgetMs = Number(process.env.BENCH_MS ?? 300);
  const rounds = Number(process.env.BENCH_ROUNDS ?? 4);
  const patched = patchWasmKernels();
  configureNative({ enabled: false }); // the XNNPACK route; bench/gemm.ts compares the native GEMM

  const best = cases.map(() => ({ stock: 0, patched: 0 }));
  for (let r = 0; r < rounds; r++) {
    cases.forEach((c, i) => {
      useKernel(stock);
      best[i].stock = Math.max(best[i].stock, measure(c, budgetMs));
      useKernel(batchMatMulConfig);
      best[i].patched = Math.max(best[i].patched, measure(c, budgetMs));
    });
  }

  const round = (x: number) => Math.round(x * 100) / 100;
  console.log(JSON.stringify({
    backend: 'wasm',
    threads: 1,
    patchedKernels: patched,
    unit: 'GFLOP/s (best of rounds)',
    rounds,
    cases: cases.map((c, i) => ({
      name: c.name,
      stock: round(best[i].stock),
      patched: round(best[i].patched),
      speedup: round(best[i].patched / best[i].stock),
    })),
  }, null, 2));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
