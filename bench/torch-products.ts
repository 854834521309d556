/**
 * PyTorch's side of bench/gemm.ts: bench/torch_gemm.py kept running in `--serve` mode, one process per thread
 * count (OpenBLAS reads its thread count once, at load), asked for one case at a time so that its
 * measurements interleave with tunelab's and load from other processes falls on every route alike.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'child_process';
import * as path from 'path';
import { createInterface } from 'readline';
import type { ProductCase } from './products';

/** One case through PyTorch: GFLOP/s via torch.matmul (OpenBLAS) and via oneDNN (null: no oneDNN route). */
export interface TorchProductFigures {
  openblas: number;
  onednn: number | null;
}

/** A running torch_gemm.py. */
export interface TorchProducts {
  threads: number;
  /** What the script reports at start: torch and oneDNN versions, the BLAS library, why cells are empty. */
  header: Record<string, unknown>;
  measure(caseIndex: number): Promise<TorchProductFigures>;
  close(): void;
}

/**
 * Starts bench/torch_gemm.py with `threads` threads for OpenBLAS and oneDNN (`TUNELAB_BENCH_PYTHON`, default
 * /usr/bin/python3: Debian's python3-torch). Resolves to a note instead when torch cannot be imported or the
 * script fails to start.
 */
export async function startTorchProducts(cases: ProductCase[], threads: number, budgetMs: number, per: 'mean' | 'fastest'):
  Promise<{ ok: true; torch: TorchProducts } | { ok: false; note: string }> {
  const python = process.env.TUNELAB_BENCH_PYTHON ?? '/usr/bin/python3';
  const script = path.join(__dirname, 'torch_gemm.py');
  const t = String(threads);
  const child: ChildProcessWithoutNullStreams = spawn(python, [script, '--serve', '--threads', t, '--budget-ms', String(budgetMs), '--per', per,
    '--cases', JSON.stringify(cases)], { env: { ...process.env, OPENBLAS_NUM_THREADS: t, OMP_NUM_THREADS: t, MKL_NUM_THREADS: t } });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000); });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  let exited: string | undefined;
  const exit = new Promise<void>((resolve) => {
    child.on('error', (e) => { exited = `${python} could not run: ${e.message}`; resolve(); });
    // 'close', not 'exit': stdout is read to its end first, so a last line (a note) is not lost.
    child.on('close', (code, signal) => { exited ??= `torch_gemm.py exited with ${code ?? signal}`; resolve(); });
  });
  const why = () => `${exited ?? 'torch_gemm.py stopped'}${stderr.trim() ? `: ${stderr.trim().split('\n').slice(-3).join(' | ')}` : ''}`;
  /** The next JSON line, or an Error saying why none came. */
  const next = async (): Promise<Record<string, unknown>> => {
    const r = await Promise.race([lines.next(), exit.then(() => undefined)]);
    if (!r || r.done) throw new Error(why());
    return JSON.parse(r.value) as Record<string, unknown>;
  };

  let header: Record<string, unknown>;
  try {
    header = await next();
  } catch (e) {
    child.kill();
    return { ok: false, note: (e as Error).message };
  }
  if (header.available === false) return { ok: false, note: String(header.note) };
  return {
    ok: true,
    torch: {
      threads,
      header,
      async measure(caseIndex: number) {
        child.stdin.write(`${JSON.stringify({ case: caseIndex })}\n`);
        const r = await next();
        if (r.case !== caseIndex) throw new Error(`torch_gemm.py answered case ${String(r.case)} for case ${caseIndex}`);
        return { openblas: r.openblas as number, onednn: r.onednn as number | null };
      },
      close: () => child.stdin.end(),
    },
  };
}
