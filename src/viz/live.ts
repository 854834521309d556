/**
 * Live training views that follow a trainer's events and redraw one notebook output in place
 * (one display id, then `update_display_data`), throttled so long loops do not flood the kernel's socket.
 */
import { inspect } from 'util';
import type { EvalMetrics, StepMetrics, TrainResult, TrainerEvents } from '../train/trainer';
import { Chart } from './chart';
import { LossChartOptions, lossChart, metricsChart, type MetricRows } from './charts';
import { DisplaySink, LiveDisplay, displaySink } from './display';
import { TerminalProgress, progressHtml } from './progress';

/** What the live views need of a trainer; `Trainer` fits, and tests can pass a small emitter. */
export interface TrainerEventSource {
  on<E extends keyof TrainerEvents>(event: E, listener: (event: TrainerEvents[E]) => void): () => void;
  /** `maxSteps` sizes the progress bar. */
  readonly config?: { readonly maxSteps: number };
  /** Steps already taken (a resumed run) are drawn from the start. */
  readonly history?: readonly StepMetrics[];
  readonly evals?: readonly EvalMetrics[];
}

/** How often a live view redraws. A redraw needs both conditions; 'eval' and 'end' always redraw. */
export interface ThrottleOptions {
  /** Consider a redraw only every n steps (default 1). */
  every?: number;
  /** At least this many ms between redraws (default 250: at most 4 per second). */
  throttleMs?: number;
  /** Clock in ms (tests pass a fake one). */
  now?: () => number;
}

/**
 * Draws at most once per `ms`; a request inside the window is kept and drawn when the window ends
 * (a timer), so a pause in training (a long eval) still shows the latest step.
 */
class Redraw {
  private last = -Infinity;
  private timer: NodeJS.Timeout | undefined;
  count = 0;

  constructor(private readonly draw: () => void, private readonly ms: number, private readonly now: () => number) {}

  request(force = false): void {
    const t = this.now();
    if (force || t - this.last >= this.ms) return this.flush();
    if (this.timer) return;
    this.timer = setTimeout(() => this.flush(), Math.max(0, this.ms - (t - this.last)));
    this.timer.unref(); // never keep a finished script alive
  }

  flush(): void {
    this.cancel();
    this.last = this.now();
    this.count++;
    this.draw();
  }

  cancel(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/**
 * Trainer listeners that may be removed from inside one of the trainer's own events. The trainer walks
 * its live listener array while emitting, so removing one mid-emit would skip the next listener (another
 * view's 'end'); removal waits for a microtask, and `active` turns false at once.
 */
class Subscriptions {
  private list: (() => void)[] = [];
  active = true;

  add(...unsubscribe: (() => void)[]): void {
    this.list.push(...unsubscribe);
  }

  clear(): void {
    this.active = false;
    const list = this.list.splice(0); // each unsubscribe runs once
    if (list.length > 0) queueMicrotask(() => list.forEach((u) => u()));
  }
}

/** Options of {@link liveLossChart}. */
export interface LiveLossChartOptions extends ThrottleOptions, Omit<LossChartOptions, 'maxPoints'> {
  /** Where to draw (default: the auto-detected sink). */
  sink?: DisplaySink;
  /** Also write the final chart to this HTML file at 'end' (handy in scripts). */
  saveTo?: string;
  /** Points kept per redraw (default 5,000; thinned evenly, the last step always kept). */
  maxPoints?: number;
  /** Draws something other than the loss chart from the steps so far (see {@link liveMetricsChart}). */
  draw?: (steps: readonly StepMetrics[], evals: readonly EvalMetrics[]) => Chart;
}

/**
 * A loss chart that follows a trainer: train loss, eval loss when present, lr on a right-hand axis.
 * Returned by {@link liveLossChart}.
 */
export class LiveLossChart {
  /** The notebook output being updated (absent in a terminal, where nothing is drawn live). */
  readonly display?: LiveDisplay;
  private readonly steps: StepMetrics[];
  private readonly evals: EvalMetrics[];
  private readonly redraw: Redraw;
  private readonly subs = new Subscriptions();
  private ended = false;

  constructor(trainer: TrainerEventSource, private readonly opts: LiveLossChartOptions = {}) {
    this.steps = [...(trainer.history ?? [])];
    this.evals = [...(trainer.evals ?? [])];
    const sink = opts.sink ?? displaySink();
    if (sink.kind === 'notebook') this.display = sink.live();
    // The static picture only in the last render: updates come several times a second.
    this.redraw = new Redraw(() => this.display?.render(this.chart().mimeBundle({ picture: this.ended })), opts.throttleMs ?? 250, opts.now ?? Date.now);
    const every = Math.max(1, opts.every ?? 1);
    this.subs.add(
      trainer.on('step', (m) => {
        if (!this.subs.active) return;
        this.steps.push(m);
        if (this.display && m.step % every === 0) this.redraw.request();
      }),
      trainer.on('eval', (e) => {
        if (!this.subs.active) return;
        this.evals.push(e);
        if (this.display) this.redraw.request();
      }),
      trainer.on('end', (r) => this.end(r)),
    );
    if (this.display) this.redraw.flush(); // the output appears in the cell that made the chart, before step 1
  }

  /** Renders sent to the notebook so far (the first display included). */
  get updates(): number {
    return this.redraw.count;
  }

  /** The chart of everything received so far (e.g. `live.chart().save('loss.html')`). */
  chart(): Chart {
    const last = this.steps.at(-1);
    const title = this.opts.title ?? (last ? `Training loss · step ${last.step}` : 'Training loss · waiting for the first step');
    if (this.opts.draw) return this.opts.draw(this.steps, this.evals);
    return lossChart({ history: this.steps, evals: this.evals }, { ...this.opts, title, maxPoints: this.opts.maxPoints ?? 5000 });
  }

  /** Stops following the trainer (the output keeps its last drawing). */
  stop(): void {
    this.redraw.cancel();
    this.subs.clear();
  }

  /** Final state comes from the result, which also holds steps from before a resume. */
  private end(r: TrainResult): void {
    if (!this.subs.active) return;
    this.steps.splice(0, this.steps.length, ...r.history);
    this.evals.splice(0, this.evals.length, ...r.evals);
    this.stop();
    this.ended = true;
    if (this.display) this.redraw.flush();
    if (this.opts.saveTo) this.chart().save(this.opts.saveTo);
  }

  /** Keeps tslab's printing of a trailing `liveLossChart(...)` expression short. */
  [inspect.custom](): string {
    return `LiveLossChart (${this.steps.length} steps, ${this.updates} renders)`;
  }
}

/**
 * Follows a trainer with a loss chart updated in place: one notebook output, redrawn at most 4 times a
 * second by default and always at 'end', where it stops following (one chart per `train()` run). In a
 * script nothing is drawn live; pass `saveTo` to get the final chart as an HTML file.
 *
 * @example
 * const live = liveLossChart(trainer, { smoothing: 0.9 });   // shows an empty chart now
 * await trainer.train();                                      // redraws as steps arrive
 * live.chart().save('runs/x/loss.html');
 */
export function liveLossChart(trainer: TrainerEventSource, opts: LiveLossChartOptions = {}): LiveLossChart {
  return new LiveLossChart(trainer, opts);
}

/**
 * Follows a trainer with {@link metricsChart} panels of the named step metrics, updated in place (e.g.
 * PPO's `objective/scores`, `objective/kl`, `policy/clipfrac_avg`).
 *
 * @example
 * liveMetricsChart(ppoTrainer, ['objective/scores', 'objective/kl', 'policy/clipfrac_avg']);
 */
export function liveMetricsChart(trainer: TrainerEventSource, metrics: readonly string[], opts: Omit<LiveLossChartOptions, 'draw'> = {}): LiveLossChart {
  return new LiveLossChart(trainer, { ...opts, draw: (steps) => metricsChart(steps as unknown as MetricRows, metrics, { title: opts.title, height: opts.height }) });
}

/** Options of {@link progress}. */
export interface ProgressOptions extends ThrottleOptions {
  /** Where to draw in notebooks (default: the auto-detected sink). */
  sink?: DisplaySink;
  /** Steps of the whole run (default `trainer.config.maxSteps`). */
  total?: number;
  /** Terminal stream (default stderr). */
  out?: NodeJS.WriteStream;
}

/** A running progress view. */
export interface ProgressHandle {
  /** The notebook output being updated, if in a notebook. */
  readonly display?: LiveDisplay;
  /** Stops following the trainer. */
  stop(): void;
}

/**
 * A progress bar that follows a trainer: an HTML bar updated in place in notebooks (steps, loss, eval
 * loss, lr, tokens/s, ETA), the terminal bar in scripts.
 *
 * @example
 * progress(trainer);
 * liveLossChart(trainer);
 * await trainer.train();
 */
export function progress(trainer: TrainerEventSource, opts: ProgressOptions = {}): ProgressHandle {
  const sink = opts.sink ?? displaySink();
  let last: StepMetrics | undefined = trainer.history?.at(-1);
  let evalLoss = trainer.evals?.at(-1)?.evalLoss;
  const total = () => opts.total ?? trainer.config?.maxSteps ?? last?.step ?? 0;
  const subs = new Subscriptions();

  if (sink.kind === 'terminal') {
    const bar = new TerminalProgress(total(), opts.out ?? process.stderr);
    subs.add(
      trainer.on('step', (m) => subs.active && bar.update(m)),
      trainer.on('end', () => {
        if (!subs.active) return;
        subs.clear();
        bar.done();
      }),
    );
    return { stop: () => subs.clear() };
  }

  const display = sink.live();
  let done: TrainResult | undefined;
  const redraw = new Redraw(
    () => display.render({ 'text/html': progressHtml(last, total(), { evalLoss, done: !!done, stoppedEarly: done?.stoppedEarly }) }),
    opts.throttleMs ?? 250,
    opts.now ?? Date.now,
  );
  const stop = () => {
    redraw.cancel();
    subs.clear();
  };
  const every = Math.max(1, opts.every ?? 1);
  subs.add(
    trainer.on('step', (m) => {
      if (!subs.active) return;
      last = m;
      if (m.step % every === 0) redraw.request();
    }),
    trainer.on('eval', (e) => {
      if (!subs.active) return;
      evalLoss = e.evalLoss;
      redraw.request();
    }),
    trainer.on('end', (r) => {
      if (!subs.active) return;
      last = r.history.at(-1) ?? last;
      done = r;
      stop();
      redraw.flush();
    }),
  );
  redraw.flush();
  return { display, stop };
}
