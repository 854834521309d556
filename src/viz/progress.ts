/**
 * Training progress: a terminal bar redrawn in place on a TTY, and the same facts as an HTML bar for
 * notebooks (`progress(trainer)` in ./live picks one).
 */
import type { StepMetrics } from '../train/trainer';
import { escapeHtml } from './html';
import { engine } from '../engine/backend';

/** Formats milliseconds as `1h02m`, `3m07s` or `12s`. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return '?';
  const s = Math.max(0, Math.round(ms / 1000));
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${s}s`;
}

/** ` on wasm`: every progress line names the engine, so a slow fallback is never silent. */
function onEngine(): string {
  const e = engine();
  return e ? ` on ${e.backend}` : '';
}

/** One line of progress, e.g. `[#####-----] 150/300 loss 2.314 lr 8.0e-4 1,820 tok/s on wasm ETA 42s`. */
export function progressLine(m: StepMetrics, total: number, width = 20): string {
  const done = Math.min(width, Math.round((m.step / Math.max(1, total)) * width));
  const bar = '#'.repeat(done) + '-'.repeat(width - done);
  const tps = Math.round(m.tokensPerSec).toLocaleString('en-US');
  return `[${bar}] ${m.step}/${total} loss ${m.loss.toFixed(3)} lr ${m.lr.toExponential(1)} ${tps} tok/s${onEngine()} ETA ${formatDuration(m.etaMs)}`;
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

/** What the notebook progress bar shows besides the step metrics. */
export interface ProgressExtras {
  /** Latest eval loss, if any evaluation ran. */
  evalLoss?: number;
  /** Training finished: the bar turns green and the ETA becomes the total time. */
  done?: boolean;
  /** Training stopped before `total` (early stop). */
  stoppedEarly?: boolean;
}

/**
 * The notebook progress bar as HTML (inline styles only, no script, so it also shows in untrusted
 * notebooks and exported HTML): bar, steps, loss, lr, tokens/s, elapsed and ETA.
 *
 * @example
 * progressHtml({ step: 150, loss: 2.3, lr: 8e-4, gradNorm: 1, tokens: 1e5, tokensPerSec: 1820, elapsedMs: 42_000, etaMs: 42_000 }, 300)
 */
export function progressHtml(m: StepMetrics | undefined, total: number, extras: ProgressExtras = {}): string {
  const step = m?.step ?? 0;
  const frac = Math.min(1, step / Math.max(1, total));
  const color = extras.done ? '#16a34a' : '#4f46e5';
  const facts: string[] = [`${step.toLocaleString('en-US')}/${total.toLocaleString('en-US')} steps`];
  if (m) {
    facts.push(`loss ${m.loss.toFixed(4)}`);
    if (extras.evalLoss !== undefined) facts.push(`eval loss ${extras.evalLoss.toFixed(4)}`);
    facts.push(`lr ${m.lr.toExponential(2)}`, `${Math.round(m.tokensPerSec).toLocaleString('en-US')} tok/s${onEngine()}`);
    facts.push(extras.done ? `done in ${formatDuration(m.elapsedMs)}` : `${formatDuration(m.elapsedMs)} elapsed, ETA ${formatDuration(m.etaMs)}`);
  } else {
    facts.push('waiting for the first step');
  }
  if (extras.stoppedEarly) facts.push('stopped early');
  return (
    '<div class="tunelab-progress" style="font:12px/1.6 monospace">' +
    '<div style="display:flex;align-items:center;gap:8px">' +
    `<div style="flex:0 0 320px;height:12px;background:#e5e7eb;border-radius:3px;overflow:hidden">` +
    `<div style="width:${(frac * 100).toFixed(1)}%;height:100%;background:${color}"></div></div>` +
    `<span>${(frac * 100).toFixed(0)}%</span></div>` +
    `<div>${escapeHtml(facts.join(' · '))}</div></div>`
  );
}
