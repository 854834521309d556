/**
 * GEMM table at the bench's real shapes (bench/bench.ts: batch 16 × 64 tokens, llama-ref d_model 128 /
 * d_ff 344 / 4 heads, llama-large d_model 384 / d_ff 1024 / 6 heads): GFLOP/s of one `tf.matMul` on the wasm
 * backend through tunelab's native GEMM on 1 thread and on every core, through the XNNPACK route of
 * wasm-kernels.ts and through the stock tfjs kernel; and of the same product in PyTorch (bench/torch_gemm.py)
 * on 1 thread and every core: `torch.matmul`, which Debian's torch sends to OpenBLAS (the OpenBLAS roof), and
 * oneDNN's inner-product primitives where torch has a route for the form (not for batched products).
 * The last line compares native on 1 thread with oneDNN on 1 thread (issue 22's goal: geometric mean ≥ 0.8).
 *
 * Run: `npx tsx bench/gemm.ts [--no-torch]` (about two minutes; BENCH_MS per measurement, BENCH_ROUNDS rounds,
 * BENCH_PER=fastest to report the fastest call instead of the mean on a loaded machine). PyTorch runs with
 * `TUNELAB_BENCH_PYTHON` (default /usr/bin/python3); without torch its columns are skipped with one line.
 * The routes are measured in alternating rounds, case by case (PyTorch in one long-lived process per thread
 * count, asked for one case at a time), and the best round of each is kept, so load from other processes
 * biases none of them. Prints one JSON object on stdout; a readable table goes to stderr.
 */
import * as os from 'os';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { configureNative, nativeInfo } from '../src/engine/native';
import { batchMatMulConfig, patchWasmKernels } from '../src/engine/wasm-kernels';
import { logger, machineRecord, round } from './common';
import { measureProduct as measure, type ProductCase as Case, useKernel } from './products';
import { startTorchProducts, type TorchProducts } from './torch-products';

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

/** Issue 22's goal for native on 1 thread against oneDNN on 1 thread (geometric mean over the shapes). */
const ONEDNN_GOAL = 0.8;

const geomean = (xs: number[]) => Math.exp(xs.reduce((a, x) => a + Math.log(x), 0) / xs.length);

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

  // PyTorch: one process on 1 thread and one on every core (OpenBLAS fixes its threads when it loads).
  const torch: TorchProducts[] = [];
  let torchNote = process.argv.includes('--no-torch') ? 'disabled with --no-torch' : undefined;
  for (const threads of torchNote ? [] : cores > 1 ? [1, cores] : [1]) {
    log(`starting PyTorch on ${threads} thread(s)…`);
    const r = await startTorchProducts(cases, threads, budgetMs, per);
    if (!r.ok) {
      torchNote = `PyTorch columns skipped${torch.length ? ` for ${threads} threads` : ''}: ${r.note}`;
      log(torchNote);
      break;
    }
    torch.push(r.torch);
  }
  const suffix = (threads: number) => (threads === 1 ? '1' : 'All');

  type Route = 'native1' | 'nativeAll' | 'xnnpack' | 'stock';
  const routes: [Route, () => void][] = [
    ['stock', () => useKernel(stock)],
    ['xnnpack', () => { useKernel(batchMatMulConfig); configureNative({ enabled: false }); }],
    ...(native.active ? [
      ['native1', () => { useKernel(batchMatMulConfig); configureNative({ enabled: true, threads: 1 }); }],
      ['nativeAll', () => { useKernel(batchMatMulConfig); configureNative({ enabled: true, threads: cores }); }],
    ] as [Route, () => void][] : []),
  ];
  const columns: string[] = [...routes.map(([r]) => r), ...torch.map((t) => `torch${suffix(t.threads)}`), ...torch.map((t) => `onednn${suffix(t.threads)}`)];
  const best = cases.map(() => ({} as Record<string, number>));
  const keep = (i: number, column: string, gflops: number) => { best[i][column] = Math.max(best[i][column] ?? 0, gflops); };
  try {
    for (let r = 0; r < rounds; r++) {
      log(`round ${r + 1}/${rounds}`);
      for (let i = 0; i < cases.length; i++) {
        for (const [route, use] of routes) {
          use();
          keep(i, route, measure(cases[i], budgetMs, per));
        }
        for (const t of torch) {
          const f = await t.measure(i);
          keep(i, `torch${suffix(t.threads)}`, f.openblas);
          if (f.onednn !== null) keep(i, `onednn${suffix(t.threads)}`, f.onednn);
        }
      }
    }
  } finally {
    for (const t of torch) t.close();
  }
  useKernel(batchMatMulConfig);
  configureNative({ enabled: true, threads: cores });

  // An empty cell (null): no oneDNN route for that form in torch (batched products; see torch.why).
  const rows = cases.map((c, i) => {
    const b = best[i];
    return {
      name: c.name,
      ...Object.fromEntries(columns.map((col) => [col, b[col] === undefined ? null : round(b[col])])),
      ...(native.active ? { nativeVsXnnpack: round(b.native1 / b.xnnpack, 2) } : {}),
      ...(native.active && b.onednn1 ? { nativeVsOnednn1: round(b.native1 / b.onednn1, 2) } : {}),
    };
  });
  /** native 1 thread / `column` per case where both were measured: geometric mean, spread and count. */
  const ratioSummary = (column: string) => {
    const ratios = cases.flatMap((_, i) => (best[i].native1 && best[i][column] ? [best[i].native1 / best[i][column]] : []));
    return ratios.length ? { geomean: round(geomean(ratios), 3), min: round(Math.min(...ratios), 2), max: round(Math.max(...ratios), 2), cases: ratios.length } : undefined;
  };
  const vsOnednn = ratioSummary('onednn1');
  const vsTorch = ratioSummary('torch1');
  const summary = {
    ...(vsOnednn ? { nativeVsOnednn1: { ...vsOnednn, goal: ONEDNN_GOAL, meetsGoal: vsOnednn.geomean >= ONEDNN_GOAL } } : {}),
    ...(vsTorch ? { nativeVsTorch1: vsTorch } : {}),
  };

  const header = torch[0]?.header;
  log(`GFLOP/s (${per} call), best of ${rounds} rounds (native: ${nativeInfo().isa}; All = ${cores} threads)`);
  if (header) {
    log(`torch = PyTorch ${String(header.torch)} torch.matmul → OpenBLAS (${String(header.blas)}): the OpenBLAS roof; ` +
      `onednn = oneDNN ${String(header.onednn)} inner-product primitives through torch's mkldnn ops; — = no oneDNN route (batched products)`);
  }
  const cell = (v: unknown) => (v === null || v === undefined ? '—' : String(v)).padStart(10);
  const ratioColumn = native.active && torch.length > 0;
  log(['case'.padEnd(44), ...columns.map((c) => c.padStart(10)), ...(ratioColumn ? ['n1/dnn1'.padStart(9)] : [])].join(''));
  for (const row of rows) {
    const values = row as unknown as Record<string, unknown>;
    log([row.name.padEnd(44), ...columns.map((c) => cell(values[c])), ...(ratioColumn ? [cell(values.nativeVsOnednn1).slice(1)] : [])].join(''));
  }
  if (vsTorch) log(`native 1 thread / PyTorch (OpenBLAS) 1 thread: geometric mean ${vsTorch.geomean} over ${vsTorch.cases} shapes (${vsTorch.min}–${vsTorch.max})`);
  if (vsOnednn) {
    log(`native 1 thread / oneDNN 1 thread: geometric mean ${vsOnednn.geomean} over ${vsOnednn.cases} shapes (${vsOnednn.min}–${vsOnednn.max}); ` +
      `goal ≥ ${ONEDNN_GOAL}: ${vsOnednn.geomean >= ONEDNN_GOAL ? 'met' : 'not met'}`);
  }
  console.log(JSON.stringify({
    unit: `GFLOP/s (${per} call, best of rounds)`, rounds, budgetMs, isa: nativeInfo().isa ?? null, threads: cores,
    machine: machineRecord(load, log),
    torch: torch.length
      ? { skipped: false, torch: header?.torch, blas: header?.blas, onednn: header?.onednn, threads: torch.map((t) => t.threads),
        routes: { torch: 'torch.matmul on transposed views (OpenBLAS)', onednn: 'A·B mkldnn_linear_backward_input, A·Bᵀ mkldnn_linear, Aᵀ·B mkldnn_linear_backward_weights' },
        why: header?.why, ...(torchNote ? { note: torchNote } : {}) }
      : { skipped: true, note: torchNote },
    cases: rows,
    summary,
  }, null, 2));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
