/** Shared helpers of the viz tests: a fake trainer, synthetic metrics and spec extraction. */
import type { EvalMetrics, StepMetrics, TrainResult, TrainerEvents } from '../../src/train/trainer';
import type { PlotSpec } from '../../src/viz';
import type { TrainerEventSource } from '../../src/viz';

/**
 * A trainer stand-in: just the event emitter, so tests stream synthetic metrics without a model. Emits and
 * unsubscribes exactly like `Trainer` (walks the live listener array; unsubscribe splices by index).
 */
export class FakeTrainer implements TrainerEventSource {
  readonly history: StepMetrics[] = [];
  readonly evals: EvalMetrics[] = [];
  private readonly listeners = new Map<keyof TrainerEvents, ((e: never) => void)[]>();

  constructor(readonly config: { maxSteps: number }) {}

  on<E extends keyof TrainerEvents>(event: E, listener: (e: TrainerEvents[E]) => void): () => void {
    const list = this.listeners.get(event) ?? [];
    list.push(listener as (e: never) => void);
    this.listeners.set(event, list);
    return () => list.splice(list.indexOf(listener as (e: never) => void), 1);
  }

  emit<E extends keyof TrainerEvents>(event: E, payload: TrainerEvents[E]): void {
    for (const l of this.listeners.get(event) ?? []) (l as (e: TrainerEvents[E]) => void)(payload);
  }

  /** Emits one step (recorded in history like the real trainer). */
  step(m: StepMetrics): void {
    this.history.push(m);
    this.emit('step', m);
  }

  eval(m: EvalMetrics): void {
    this.evals.push(m);
    this.emit('eval', m);
  }

  end(): TrainResult {
    const r: TrainResult = { steps: this.history.at(-1)?.step ?? 0, history: this.history, evals: this.evals, stoppedEarly: false };
    this.emit('end', r);
    return r;
  }

  listenerCount(): number {
    return [...this.listeners.values()].reduce((n, l) => n + l.length, 0);
  }
}

/** Deterministic metrics of step `s` (1-based) of a `total`-step run. */
export function metrics(s: number, total: number): StepMetrics {
  return {
    step: s, loss: 4 / Math.sqrt(s) + 0.01 * Math.sin(s), lr: 1e-3 * (1 - (s - 1) / total), gradNorm: 1,
    tokens: s * 1024, tokensPerSec: 2000, elapsedMs: s * 500, etaMs: (total - s) * 500,
  };
}

/** A text output of a mime bundle (`text/html`, `text/plain`, …); fails when it is missing or not text. */
export function textOf(value: string | object | undefined): string {
  if (typeof value !== 'string') throw new Error(`expected a text output, got ${typeof value}`);
  return value;
}

/** The Plotly spec inside a chart fragment (the chart script keeps it on one `var spec = …;` line). */
export function specOf(html: string | object | undefined): PlotSpec {
  html = textOf(html);
  const line = html.split('\n').find((l) => l.startsWith('var spec = '));
  if (!line) throw new Error('no chart spec in this HTML');
  return JSON.parse(line.slice('var spec = '.length, -1)) as PlotSpec;
}

/** The part of a bundle message that tunelab wrote (everything but plotly.js's own source). */
export function wrapperOf(html: string, bundleSource: string): string {
  return html.replace(bundleSource, '');
}

/** A script for a page of chart outputs: marks each static picture with its decoded width once loaded (0: broken). */
export const MARK_PICTURES = `<script>window.addEventListener('load', function () {
  document.querySelectorAll('img.tunelab-static').forEach(function (img) { img.setAttribute('data-width', String(img.naturalWidth)); });
});</script>`;

/**
 * For each chart in a DOM dumped by Chromium (a page with {@link MARK_PICTURES}): `plotly` when Plotly drew it,
 * `static` when its picture decoded, else `none`.
 */
export function chartStates(dom: string): ('plotly' | 'static' | 'none')[] {
  // Plotly adds its own classes to the div; the div's content ends where the chart's script begins.
  return dom.split(/class="tunelab-chart[ "]/).slice(1).map((part) => {
    const div = part.split('<script')[0];
    if (div.includes('class="main-svg"')) return 'plotly';
    return /class="tunelab-static"[^>]*data-width="[1-9]/.test(div) ? 'static' : 'none';
  });
}
