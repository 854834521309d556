/** A terminal progress bar for training: steps, loss, tokens/s and ETA, redrawn in place on a TTY. */
import type { StepMetrics } from '../train/trainer';

/** Formats milliseconds as `1h02m`, `3m07s` or `12s`. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return '?';
  const s = Math.max(0, Math.round(ms / 1000));
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${s}s`;
}

/** One line of progress, e.g. `[#####-----] 150/300 loss 2.314 lr 8.0e-4 1,820 tok/s ETA 42s`. */
export function progressLine(m: StepMetrics, total: number, width = 20): string {
  const done = Math.min(width, Math.round((m.step / Math.max(1, total)) * width));
  const bar = '#'.repeat(done) + '-'.repeat(width - done);
  const tps = Math.round(m.tokensPerSec).toLocaleString('en-US');
  return `[${bar}] ${m.step}/${total} loss ${m.loss.toFixed(3)} lr ${m.lr.toExponential(1)} ${tps} tok/s ETA ${formatDuration(m.etaMs)}`;
}

/**
 * Writes progress to a stream: redrawn in place when it is a TTY, else a line every `every` steps
 * (so logs in CI stay short).
 */
export class TerminalProgress {
  constructor(private readonly total: number, private readonly out: NodeJS.WriteStream = process.stderr, private readonly every = 25) {}

  update(m: StepMetrics): void {
    const line = progressLine(m, this.total);
    if (this.out.isTTY) this.out.write(`\r${line}\x1b[K`);
    else if (m.step % this.every === 0 || m.step === this.total) this.out.write(`${line}\n`);
  }

  /** Ends the in-place line. */
  done(): void {
    if (this.out.isTTY) this.out.write('\n');
  }
}
