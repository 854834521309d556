/**
 * GEMM table at the bench's real shapes (bench/bench.ts: batch 16 × 64 tokens, llama-ref d_model 128 /
 * d_ff 344 / 4 heads, llama-large d_model 384 / d_ff 1024 / 6 heads): GFLOP/s of one `tf.matMul` on the wasm
 * backend through tunelab's native GEMM on 1 thread and on every core, through the XNNPACK route of
 * wasm-kernels.ts, and through the stock tfjs kernel.
 *
 * Run: `npx tsx bench/gemm.ts` (about a minute; BENCH_MS per measurement, BENCH_ROUNDS rounds, BENCH_PER=fastest
 * to report the fastest call instead of the mean on a loaded machine). The routes
 * are measured in alternating rounds and the best round of each is kept, so load from other processes biases
 * none of them. Prints one JSON object on stdout; a readable table goes to stderr.
 */
import * as os from 'os';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { configureNative, nativeInfo } from '../src/engine/native';
import { batchMatMulConfig, patchWasmKernels } from '../src/engine/wasm-kernels';
import { logger, machineRecord, round } from './common';
import { measureProduct as measure, type ProductCase as Case, useKernel } from './products';

/** Forward product X·W and its two gradients dY·Wᵀ, Xᵀ·dY for X [rows, k], W [k, n]. */
function linear(name: string, rows: number, k: number, n: number): Case[] {
  return [
    { name: `${name} X·W`, a: [rows, k], b: [k, n] },
    { name: `${name} dY·Wᵀ`, a: [rows, n], b: [k, n], transposeB: true },
    { name: `${name} Xᵀ·dY`, a: [rows, k], b: [rows, n], transposeA: true },
  ];
}

/** Attention products for [batch·heads, T, hd]: q·kᵀ, p·v and the backward forms. */
function attention(name: string, bh: number, t: number, hd: number): Case[] {
  return [
    { name: `${name} q·kᵀ`, a: [bh, t, hd], b: [bh, t, hd], transposeB: true },
    { name: `${name} p·v`, a: [bh, t, t], b: [bh, t, hd] },
    { name: `${name} pᵀ·dy`, a: [bh, t, t], b: [bh, t, hd], transposeA: true },
  ];
}

const ROWS = 16 * 64;
const cases: Case[] = [
  ...linear('ref attn proj [1024,128]x[128,128]', ROWS, 128, 128),
  ...linear('ref mlp up [1024,128]x[128,344]', ROWS, 128, 344),
  ...linear('ref mlp down [1024,344]x[344,128]', ROWS, 344, 128),
  { name: 'ref tied head [1024,128]x[512,128]ᵀ', a: [ROWS, 128], b: [512, 128], transposeB: true },
  ...attention('ref attention [64,64,32]', 64, 64, 32),
  ...linear('large mlp up [1024,384]x[384,1024]', ROWS, 384, 1024),
  ...attention('large attention [96,64,64]', 96, 64, 64),
];

async function main(): Promise<void> {
  const log = logger('gemm');
  const load = os.loadavg();
  if (!(await tf.setBackend('wasm'))) throw new Error('wasm backend did not start');
  const stock = tf.getKernel('BatchMatMul', 'wasm');
  if (!stock || stock.kernelFunc === batchMatMulConfig.kernelFunc) throw new Error('expected the stock kernel first');
  patchWasmKernels();
  const cores = os.availableParallelism();
  const native = configureNative({ enabled: true, threads: cores });
  if (!native.active) log(`native GEMM off: ${native.reason}`);
  const budgetMs = Number(process.env.BENCH_MS ?? 150);
  const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
  // BENCH_PER=fastest: the fastest call instead of the mean (a shared, loaded machine).
  const per = process.env.BENCH_PER === 'fastest' ? 'fastest' : 'mean';

  type Route = 'native1' | 'nativeAll' | 'xnnpack' | 'stock';
  const routes: [Route, () => void][] = [
    ['stock', () => useKernel(stock)],
    ['xnnpack', () => { useKernel(batchMatMulConfig); configureNative({ enabled: false }); }],
    ...(native.active ? [
      ['native1', () => { useKernel(batchMatMulConfig); configureNative({ enabled: true, threads: 1 }); }],
      ['nativeAll', () => { useKernel(batchMatMulConfig); configureNative({ enabled: true, threads: cores }); }],
    ] as [Route, () => void][] : []),
  ];
  const best = cases.map(() => ({} as Record<Route, number>));
  for (let r = 0; r < rounds; r++) {
    log(`round ${r + 1}/${rounds}`);
    cases.forEach((c, i) => {
      for (const [route, use] of routes) {
        use();
        best[i][route] = Math.max(best[i][route] ?? 0, measure(c, budgetMs, per));
      }
    });
  }
  useKernel(batchMatMulConfig);
  configureNative({ enabled: true, threads: cores });

  const rows = cases.map((c, i) => ({
    name: c.name,
    ...Object.fromEntries(routes.map(([route]) => [route, round(best[i][route])])),
    ...(native.active ? { nativeVsXnnpack: round(best[i].native1 / best[i].xnnpack, 2) } : {}),
  }));
  log(`GFLOP/s (${per} call), best of ${rounds} rounds (native: ${nativeInfo().isa}; all = ${cores} threads)`);
  log(['case'.padEnd(44), ...routes.map(([r]) => r.padStart(10))].join(''));
  for (const row of rows) {
    const values = row as unknown as Record<string, number>;
    log([row.name.padEnd(44), ...routes.map(([r]) => String(values[r]).padStart(10))].join(''));
  }
  console.log(JSON.stringify({
    unit: `GFLOP/s (${per} call, best of rounds)`, rounds, budgetMs, isa: nativeInfo().isa ?? null, threads: cores,
    machine: machineRecord(load, log), cases: rows,
  }, null, 2));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
