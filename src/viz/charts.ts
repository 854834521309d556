/**
 * Ready-made charts for fine-tuning runs. Inputs are plain arrays and objects (a `TrainResult` fits
 * {@link lossChart} as is), so evaluation and RLHF code can feed them without depending on viz.
 */
import { Chart, JsonObject } from './chart';
import { nums, plotlyText, tokenLabel } from './html';
import { integerTicks } from './svg';

const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
const BASE_LAYOUT: JsonObject = {
  margin: { l: 60, r: 60, t: 50, b: 50 },
  legend: { orientation: 'h', y: -0.18 },
  hovermode: 'closest',
  font: { family: 'sans-serif', size: 12 },
};

function layout(title: string | undefined, extra: JsonObject): JsonObject {
  return { ...BASE_LAYOUT, ...(title ? { title: { text: title } } : {}), ...extra };
}

/** Common chart options. */
export interface ChartOptions {
  /** Chart title (each chart has a default). */
  title?: string;
  /** Height in pixels. */
  height?: number;
}

// ---------------------------------------------------------------------------------------------------
// Loss and learning rate
// ---------------------------------------------------------------------------------------------------

/** One training step as the trainer reports it (`StepMetrics` fits). */
export interface StepPoint {
  step: number;
  loss: number;
  lr?: number;
}

/** One evaluation (`EvalMetrics` fits). */
export interface EvalPoint {
  step: number;
  evalLoss: number;
}

/** Loss curves as the trainer returns them: a `TrainResult` or `{ history, evals }`. */
export interface LossHistory {
  history: readonly StepPoint[];
  evals?: readonly EvalPoint[];
}

/** Loss curves as parallel arrays. */
export interface LossArrays {
  step: ArrayLike<number>;
  loss: ArrayLike<number>;
  lr?: ArrayLike<number>;
  evalStep?: ArrayLike<number>;
  evalLoss?: ArrayLike<number>;
}

/** Options of {@link lossChart}. */
export interface LossChartOptions extends ChartOptions {
  /** Adds an exponentially smoothed train curve, TensorBoard-style (0 = off, e.g. 0.9). */
  smoothing?: number;
  /** Log-scale loss axis. */
  logY?: boolean;
  /** Draw the learning rate on a secondary axis when present (default true). */
  showLr?: boolean;
  /** Keep at most this many train points (evenly thinned, the last point always kept). */
  maxPoints?: number;
}

/** Indices 0..n-1 thinned to at most `max`, always including the last. */
export function thinIndices(n: number, max = Infinity): number[] {
  if (n <= max) return Array.from({ length: n }, (_, i) => i);
  const stride = Math.ceil(n / Math.max(1, max - 1));
  const out: number[] = [];
  for (let i = 0; i < n - 1; i += stride) out.push(i);
  out.push(n - 1);
  return out;
}

/** TensorBoard's debiased exponential moving average. */
export function smooth(values: ArrayLike<number>, weight: number): number[] {
  const out: number[] = [];
  let last = 0;
  let debias = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isFinite(v)) {
      out.push(NaN);
      continue;
    }
    last = last * weight + (1 - weight) * v;
    debias = debias * weight + (1 - weight);
    out.push(last / debias);
  }
  return out;
}

function toArrays(input: LossHistory | LossArrays): LossArrays {
  if (!('history' in input)) return input;
  const h = input.history;
  const hasLr = h.some((p) => p.lr !== undefined);
  return {
    step: h.map((p) => p.step),
    loss: h.map((p) => p.loss),
    lr: hasLr ? h.map((p) => p.lr ?? NaN) : undefined,
    evalStep: input.evals?.map((e) => e.step),
    evalLoss: input.evals?.map((e) => e.evalLoss),
  };
}

/**
 * Train loss (and eval loss when present) against step, with the learning rate on a right-hand axis.
 *
 * @example
 * const result = await trainer.train();
 * lossChart(result, { smoothing: 0.9 }).show();
 * lossChart({ step: [1, 2, 3], loss: [2.1, 1.8, 1.7], evalStep: [3], evalLoss: [1.9] }).save('loss.html');
 */
export function lossChart(input: LossHistory | LossArrays, opts: LossChartOptions = {}): Chart {
  const a = toArrays(input);
  const idx = thinIndices(a.step.length, opts.maxPoints);
  const pick = (v: ArrayLike<number>) => nums(idx.map((i) => v[i]));
  const x = pick(a.step);
  const data: JsonObject[] = [{ type: 'scatter', mode: 'lines', name: 'train loss', x, y: pick(a.loss), line: { color: COLORS[0], width: opts.smoothing ? 1 : 2 }, opacity: opts.smoothing ? 0.4 : 1 }];
  if (opts.smoothing) {
    const s = smooth(a.loss, opts.smoothing);
    data.push({ type: 'scatter', mode: 'lines', name: `train loss (EMA ${opts.smoothing})`, x, y: pick(s), line: { color: COLORS[0], width: 2 } });
  }
  if (a.evalStep && a.evalLoss && a.evalStep.length > 0) {
    data.push({ type: 'scatter', mode: 'lines+markers', name: 'eval loss', x: nums(a.evalStep), y: nums(a.evalLoss), line: { color: COLORS[1], width: 2 }, marker: { size: 6 } });
  }
  const showLr = (opts.showLr ?? true) && a.lr !== undefined && a.lr.length > 0;
  if (showLr) {
    data.push({ type: 'scatter', mode: 'lines', name: 'learning rate', x, y: pick(a.lr!), yaxis: 'y2', line: { color: COLORS[7], width: 1, dash: 'dot' } });
  }
  return new Chart({
    data,
    layout: layout(opts.title ?? 'Training loss', {
      height: opts.height ?? 420,
      margin: { l: 60, r: showLr ? 90 : 30, t: 50, b: 50 },
      xaxis: { title: { text: 'step' }, ...integerTicks([...x, ...nums(a.evalStep ?? [])]) },
      yaxis: { title: { text: 'loss' }, type: opts.logY ? 'log' : 'linear' },
      ...(showLr ? { yaxis2: { title: { text: 'learning rate' }, overlaying: 'y', side: 'right', showgrid: false, exponentformat: 'e', tickformat: '.1e', rangemode: 'tozero' } } : {}),
    }),
  });
}

// ---------------------------------------------------------------------------------------------------
// Forgetting and the learn-vs-forget trade-off
// ---------------------------------------------------------------------------------------------------

/** One run's general-domain metric as training proceeds. */
export interface ForgettingSeries {
  /** Legend name, e.g. `LoRA r=8`. */
  name: string;
  /** Training tokens seen at each measurement. */
  tokens: ArrayLike<number>;
  /** The metric at each measurement (e.g. general held-out loss). */
  metric: ArrayLike<number>;
  /** Lower and upper interval bounds at each measurement (e.g. a task score's 95 % interval), drawn as a band. */
  low?: ArrayLike<number>;
  high?: ArrayLike<number>;
}

/** A shaded band between `low` and `high` over `x`: one closed polygon (Plotly `fill: 'toself'`). */
function band(x: ArrayLike<number>, low: ArrayLike<number>, high: ArrayLike<number>, color: string, name: string): JsonObject {
  const xs = nums(x);
  return {
    type: 'scatter', mode: 'lines', name: `${name} interval`, x: [...xs, ...[...xs].reverse()], y: [...nums(high), ...nums(low).reverse()],
    fill: 'toself', fillcolor: color, opacity: 0.2, line: { color, width: 0 }, hoverinfo: 'skip', showlegend: false,
  };
}

/** Options of {@link forgettingChart}. */
export interface ForgettingChartOptions extends ChartOptions {
  /** Y axis title (default `general eval loss`). */
  metricName?: string;
  /** The base model's value, drawn as a dashed line. */
  baseline?: number;
  /** Log-scale token axis. */
  logX?: boolean;
}

/**
 * Forgetting curves: a general-domain metric against tokens seen, one line per run (with a shaded
 * interval band where a series has `low` and `high`).
 *
 * @example
 * forgettingChart([
 *   { name: 'full fine-tune', tokens: [0, 1e5, 2e5], metric: [3.1, 3.4, 3.6] },
 *   { name: 'LoRA r=8', tokens: [0, 1e5, 2e5], metric: [3.1, 3.15, 3.2] },
 * ], { baseline: 3.1 }).show();
 */
export function forgettingChart(series: readonly ForgettingSeries[], opts: ForgettingChartOptions = {}): Chart {
  const data: JsonObject[] = series.flatMap((s, i) => [
    ...(s.low && s.high ? [band(s.tokens, s.low, s.high, COLORS[i % COLORS.length], plotlyText(s.name))] : []),
    { type: 'scatter', mode: 'lines+markers', name: plotlyText(s.name), x: nums(s.tokens), y: nums(s.metric), line: { color: COLORS[i % COLORS.length] }, marker: { size: 5 } },
  ]);
  const shapes: JsonObject[] = opts.baseline === undefined ? [] : [
    { type: 'line', xref: 'paper', x0: 0, x1: 1, y0: opts.baseline, y1: opts.baseline, line: { color: '#555', dash: 'dash', width: 1 } },
  ];
  const annotations: JsonObject[] = opts.baseline === undefined ? [] : [
    { xref: 'paper', x: 1, y: opts.baseline, text: 'base model', showarrow: false, xanchor: 'right', yanchor: 'bottom', font: { color: '#555', size: 11 } },
  ];
  return new Chart({
    data,
    layout: layout(opts.title ?? 'Forgetting', {
      height: opts.height ?? 420,
      xaxis: { title: { text: 'tokens seen' }, type: opts.logX ? 'log' : 'linear' },
      yaxis: { title: { text: opts.metricName ?? 'general eval loss' } },
      shapes, annotations,
    }),
  });
}

/** One checkpoint or run on the learn-vs-forget plane. */
export interface ParetoPoint {
  /** Hover/label text, e.g. `lora-r8 step 300`. */
  label: string;
  /** Metric on the target task (x axis), e.g. domain eval loss. */
  target: number;
  /** Metric on general data (y axis), e.g. general eval loss. */
  general: number;
  /** Points with the same group share a color and legend entry (e.g. the method). */
  group?: string;
}

/** Which direction of each metric is better. */
export interface ParetoDirections {
  target: 'lower' | 'higher';
  general: 'lower' | 'higher';
}

/**
 * The points no other point beats on both metrics (ties on both are kept), sorted by target metric.
 *
 * @example
 * paretoFront([{ label: 'a', target: 1, general: 2 }, { label: 'b', target: 2, general: 3 }]) // [a]
 */
export function paretoFront<P extends ParetoPoint>(points: readonly P[], better: ParetoDirections = { target: 'lower', general: 'lower' }): P[] {
  // Flip signs so both are minimised, then sweep by target keeping strictly better general values.
  const st = better.target === 'lower' ? 1 : -1;
  const sg = better.general === 'lower' ? 1 : -1;
  const finite = points.filter((p) => Number.isFinite(p.target) && Number.isFinite(p.general));
  const sorted = [...finite].sort((a, b) => st * a.target - st * b.target || sg * a.general - sg * b.general);
  const front: P[] = [];
  let best = Infinity;
  let last: P | undefined;
  for (const p of sorted) {
    const g = sg * p.general;
    if (g < best || (last && last.target === p.target && last.general === p.general)) {
      front.push(p);
      best = Math.min(best, g);
      last = p;
    }
  }
  return front;
}

/** Options of {@link paretoChart}. */
export interface ParetoChartOptions extends ChartOptions {
  /** X axis title (default `target eval loss`). */
  targetName?: string;
  /** Y axis title (default `general eval loss`). */
  generalName?: string;
  /** Default: lower is better for both (losses). */
  better?: ParetoDirections;
  /** Write each point's label next to it (default when ≤ 20 points). */
  labels?: boolean;
}

/**
 * Learn vs forget: target metric against general metric, one point per checkpoint or run, with the
 * Pareto front highlighted.
 *
 * @example
 * paretoChart([
 *   { label: 'full step 300', target: 1.9, general: 3.6, group: 'full' },
 *   { label: 'lora r8 step 300', target: 2.1, general: 3.2, group: 'lora' },
 * ]).show();
 */
export function paretoChart(points: readonly ParetoPoint[], opts: ParetoChartOptions = {}): Chart {
  const better = opts.better ?? { target: 'lower', general: 'lower' };
  const showLabels = opts.labels ?? points.length <= 20;
  const groups = [...new Set(points.map((p) => p.group ?? 'runs'))];
  const data: JsonObject[] = groups.map((g, i) => {
    const ps = points.filter((p) => (p.group ?? 'runs') === g);
    return {
      type: 'scatter', mode: showLabels ? 'markers+text' : 'markers', name: plotlyText(g),
      x: nums(ps.map((p) => p.target)), y: nums(ps.map((p) => p.general)), text: ps.map((p) => plotlyText(p.label)),
      textposition: 'top center', textfont: { size: 10 }, marker: { size: 9, color: COLORS[i % COLORS.length] },
      hovertemplate: '%{text}<br>target %{x:.4g}<br>general %{y:.4g}<extra></extra>',
    };
  });
  const front = paretoFront(points, better);
  data.push({
    type: 'scatter', mode: 'lines+markers', name: 'Pareto front',
    x: nums(front.map((p) => p.target)), y: nums(front.map((p) => p.general)), text: front.map((p) => plotlyText(p.label)),
    line: { color: '#111', width: 2, dash: 'dash', shape: 'hv' },
    marker: { size: 16, color: 'rgba(0,0,0,0)', line: { color: '#111', width: 2 } },
    hovertemplate: 'front: %{text}<extra></extra>',
  });
  const dir = (b: 'lower' | 'higher') => (b === 'lower' ? 'lower is better' : 'higher is better');
  return new Chart({
    data,
    layout: layout(opts.title ?? 'Learn vs forget', {
      height: opts.height ?? 460,
      xaxis: { title: { text: `${opts.targetName ?? 'target eval loss'} (${dir(better.target)})` } },
      yaxis: { title: { text: `${opts.generalName ?? 'general eval loss'} (${dir(better.general)})` } },
    }),
  });
}

// ---------------------------------------------------------------------------------------------------
// Task scores
// ---------------------------------------------------------------------------------------------------

/** One score of one run on one task (`eval/tasks` `taskScoreRows` fits). */
export interface ScorePoint {
  run: string;
  task: string;
  metric: string;
  value: number;
  /** Interval bounds (e.g. 95 % Wilson or bootstrap). */
  low: number;
  high: number;
}

/** Options of {@link taskScoreChart}. */
export interface TaskScoreChartOptions extends ChartOptions {
  /** A dashed line at this value (e.g. chance accuracy 0.25 for four choices). */
  chance?: number;
  /** Score axis title (default `score`). */
  metricName?: string;
}

/**
 * Task scores with their intervals as a forest plot: one row per task and metric (first at the top), one
 * colour per run (a point and a whisker from low to high), so overlapping intervals are visible at a glance.
 *
 * @example
 * taskScoreChart([...taskScoreRows(base, 'base'), ...taskScoreRows(tuned, 'tuned')].filter((r) => r.metric === 'acc'), { chance: 0.25 }).show();
 */
export function taskScoreChart(points: readonly ScorePoint[], opts: TaskScoreChartOptions = {}): Chart {
  const rows = [...new Set(points.map((p) => `${p.task} ${p.metric}`))];
  const runs = [...new Set(points.map((p) => p.run))];
  const width = 0.6 / Math.max(1, runs.length);
  const data: JsonObject[] = runs.flatMap((run, i) => {
    const mine = points.filter((p) => p.run === run);
    const y = mine.map((p) => rows.indexOf(`${p.task} ${p.metric}`) + (i - (runs.length - 1) / 2) * width);
    const color = COLORS[i % COLORS.length];
    return [
      { type: 'scatter', mode: 'lines', name: `${plotlyText(run)} interval`, x: mine.flatMap((p) => [...nums([p.low, p.high]), null]), y: y.flatMap((v) => [v, v, null]),
        line: { color, width: 2 }, hoverinfo: 'skip', showlegend: false },
      { type: 'scatter', mode: 'markers', name: plotlyText(run || 'score'), x: nums(mine.map((p) => p.value)), y, marker: { size: 9, color },
        text: mine.map((p) => `${plotlyText(p.task)} ${p.metric}: ${p.value.toFixed(3)} [${p.low.toFixed(3)}, ${p.high.toFixed(3)}]`), hovertemplate: '%{text}<extra></extra>' },
    ];
  });
  const shapes: JsonObject[] = opts.chance === undefined ? [] : [
    { type: 'line', yref: 'paper', y0: 0, y1: 1, x0: opts.chance, x1: opts.chance, line: { color: '#555', dash: 'dash', width: 1 } },
  ];
  const longest = Math.max(0, ...rows.map((r) => r.length));
  return new Chart({
    data,
    layout: layout(opts.title ?? 'Task scores', {
      height: opts.height ?? Math.max(260, 120 + 48 * rows.length),
      margin: { l: Math.min(320, 20 + 7 * longest), r: 30, t: 50, b: 50 },
      yaxis: { tickmode: 'array', tickvals: rows.map((_, i) => i), ticktext: rows.map(plotlyText), range: [rows.length - 0.5, -0.5] },
      xaxis: { title: { text: opts.metricName ?? 'score' } },
      shapes,
    }),
  });
}

// ---------------------------------------------------------------------------------------------------
// PEFT comparison
// ---------------------------------------------------------------------------------------------------

/** One PEFT method's outcome. */
export interface PeftResult {
  /** e.g. `LoRA r=8`, `IA3`, `prompt tuning`, `full`. */
  method: string;
  trainableParams: number;
  /** Target-task eval loss. */
  loss: number;
  /** Increase of the general metric over the base model (optional). */
  forgetting?: number;
}

/** Grid cell domains in paper coordinates: 2 columns × rows, row 0 on top. */
function cell(col: number, row: number, rows: number): { x: [number, number]; y: [number, number] } {
  const gapX = 0.1;
  const gapY = rows > 1 ? 0.16 : 0;
  const w = (1 - gapX) / 2;
  const h = (1 - gapY * (rows - 1)) / rows;
  const top = 1 - row * (h + gapY);
  return { x: [col * (w + gapX), col * (w + gapX) + w], y: [top - h, top] };
}

function panelTitle(text: string, domain: { x: [number, number]; y: [number, number] }): JsonObject {
  return { text: `<b>${text}</b>`, xref: 'paper', yref: 'paper', x: (domain.x[0] + domain.x[1]) / 2, y: domain.y[1], xanchor: 'center', yanchor: 'bottom', showarrow: false, font: { size: 13 } };
}

/**
 * PEFT methods side by side: bars of trainable parameters, eval loss and forgetting (when given), and a
 * scatter of parameters against loss.
 *
 * @example
 * peftChart([
 *   { method: 'full', trainableParams: 870_000, loss: 1.92, forgetting: 0.41 },
 *   { method: 'LoRA r=8', trainableParams: 16_384, loss: 2.05, forgetting: 0.08 },
 *   { method: 'IA3', trainableParams: 1_536, loss: 2.31, forgetting: 0.02 },
 * ]).show();
 */
export function peftChart(results: readonly PeftResult[], opts: ChartOptions = {}): Chart {
  const methods = results.map((r) => plotlyText(r.method));
  const colors = results.map((_, i) => COLORS[i % COLORS.length]);
  const hasForgetting = results.some((r) => r.forgetting !== undefined);
  const panels: { title: string; trace: JsonObject; xaxis: JsonObject; yaxis: JsonObject }[] = [
    { title: 'trainable parameters', trace: { type: 'bar', x: methods, y: nums(results.map((r) => r.trainableParams)), marker: { color: colors } }, xaxis: {}, yaxis: { type: 'log' } },
    { title: 'eval loss', trace: { type: 'bar', x: methods, y: nums(results.map((r) => r.loss)), marker: { color: colors } }, xaxis: {}, yaxis: {} },
  ];
  if (hasForgetting) {
    panels.push({ title: 'forgetting', trace: { type: 'bar', x: methods, y: nums(results.map((r) => r.forgetting ?? NaN)), marker: { color: colors } }, xaxis: {}, yaxis: {} });
  }
  panels.push({
    title: 'parameters vs loss',
    trace: { type: 'scatter', mode: 'markers+text', x: nums(results.map((r) => r.trainableParams)), y: nums(results.map((r) => r.loss)), text: methods, textposition: 'top center', marker: { size: 10, color: colors }, hovertemplate: '%{text}<br>%{x:,} params<br>loss %{y:.4g}<extra></extra>' },
    xaxis: { type: 'log', title: { text: 'trainable parameters' } }, yaxis: { title: { text: 'eval loss' } },
  });
  const rows = Math.ceil(panels.length / 2);
  const data: JsonObject[] = [];
  const lay: JsonObject = layout(opts.title ?? 'PEFT comparison', { height: opts.height ?? 300 * rows + 80, showlegend: false, margin: { l: 60, r: 30, t: 70, b: 50 } });
  const annotations: JsonObject[] = [];
  panels.forEach((p, i) => {
    const n = i === 0 ? '' : String(i + 1);
    const d = cell(i % 2, Math.floor(i / 2), rows);
    data.push({ ...p.trace, name: p.title, xaxis: `x${n}`, yaxis: `y${n}` });
    lay[`xaxis${n}`] = { ...p.xaxis, domain: d.x, anchor: `y${n}` };
    lay[`yaxis${n}`] = { ...p.yaxis, domain: d.y, anchor: `x${n}` };
    annotations.push(panelTitle(p.title, d));
  });
  lay.annotations = annotations;
  return new Chart({ data, layout: lay });
}

/** Rows with a step and numeric metrics, e.g. a trainer's `history` (PPO's carries TRL's names). */
export type MetricRows = readonly ({ step: number } & Record<string, unknown>)[];

/**
 * One panel per named metric against step (two columns), e.g. PPO's reward, KL and clip fraction.
 * Rows missing a metric are skipped for it.
 *
 * @example
 * metricsChart(result.history, ['objective/scores', 'objective/kl', 'policy/clipfrac_avg']).show();
 */
export function metricsChart(rows: MetricRows, metrics: readonly string[], opts: ChartOptions = {}): Chart {
  if (metrics.length === 0) throw new Error('metricsChart: name at least one metric');
  const panels = Math.min(2, metrics.length);
  const gridRows = Math.ceil(metrics.length / panels);
  const data: JsonObject[] = [];
  const lay: JsonObject = layout(opts.title ?? 'Training metrics', { height: opts.height ?? 260 * gridRows + 80, showlegend: false, margin: { l: 60, r: 30, t: 70, b: 50 } });
  const annotations: JsonObject[] = [];
  metrics.forEach((name, i) => {
    const n = i === 0 ? '' : String(i + 1);
    const d = cell(i % panels, Math.floor(i / panels), gridRows);
    const kept = rows.filter((r) => typeof r[name] === 'number');
    const steps = nums(kept.map((r) => r.step));
    data.push({ type: 'scatter', mode: 'lines+markers', name, x: steps, y: nums(kept.map((r) => r[name] as number)), line: { color: COLORS[i % COLORS.length] }, xaxis: `x${n}`, yaxis: `y${n}` });
    lay[`xaxis${n}`] = { domain: panels === 1 ? [0, 1] : d.x, anchor: `y${n}`, title: { text: 'step' }, ...integerTicks(steps, 5) };
    lay[`yaxis${n}`] = { domain: d.y, anchor: `x${n}` };
    annotations.push(panelTitle(name, panels === 1 ? { ...d, x: [0, 1] } : d));
  });
  lay.annotations = annotations;
  return new Chart({ data, layout: lay });
}

// ---------------------------------------------------------------------------------------------------
// Preference training: reward model, DPO, PPO
// ---------------------------------------------------------------------------------------------------

/** Reward-model pairwise accuracy (chosen scored above rejected) over training. */
export interface RewardAccuracy {
  step: ArrayLike<number>;
  /** Train accuracy in [0, 1] at each step. */
  accuracy: ArrayLike<number>;
  evalStep?: ArrayLike<number>;
  evalAccuracy?: ArrayLike<number>;
}

/**
 * Reward-model accuracy against step, with the 50 % chance line.
 *
 * @example
 * rewardAccuracyChart({ step: [10, 20, 30], accuracy: [0.55, 0.7, 0.78], evalStep: [30], evalAccuracy: [0.74] }).show();
 */
export function rewardAccuracyChart(input: RewardAccuracy, opts: ChartOptions = {}): Chart {
  const data: JsonObject[] = [{ type: 'scatter', mode: 'lines', name: 'train accuracy', x: nums(input.step), y: nums(input.accuracy), line: { color: COLORS[0] } }];
  if (input.evalStep && input.evalAccuracy) {
    data.push({ type: 'scatter', mode: 'lines+markers', name: 'eval accuracy', x: nums(input.evalStep), y: nums(input.evalAccuracy), line: { color: COLORS[1] } });
  }
  return new Chart({
    data,
    layout: layout(opts.title ?? 'Reward model accuracy', {
      height: opts.height ?? 380,
      xaxis: { title: { text: 'step' }, ...integerTicks([...nums(input.step), ...nums(input.evalStep ?? [])]) },
      yaxis: { title: { text: 'pairwise accuracy' }, range: [0, 1.02], tickformat: '.0%' },
      shapes: [{ type: 'line', xref: 'paper', x0: 0, x1: 1, y0: 0.5, y1: 0.5, line: { color: '#999', dash: 'dash', width: 1 } }],
    }),
  });
}

/** Reward-model scores of the chosen and the rejected responses of a set of pairs. */
export interface ScoreDistributions {
  chosenScores: ArrayLike<number>;
  rejectedScores: ArrayLike<number>;
}

/**
 * Overlaid histograms of chosen vs rejected scores: a good reward model separates them.
 *
 * @example
 * scoreDistributionChart(rewardAccuracy(rm, heldOutRows)).show();
 */
export function scoreDistributionChart(input: ScoreDistributions, opts: ChartOptions = {}): Chart {
  const trace = (name: string, x: ArrayLike<number>, color: string): JsonObject => ({ type: 'histogram', name, x: nums(x), opacity: 0.6, marker: { color }, nbinsx: 30 });
  return new Chart({
    data: [trace('chosen', input.chosenScores, COLORS[2]), trace('rejected', input.rejectedScores, COLORS[3])],
    layout: layout(opts.title ?? 'Reward scores: chosen vs rejected', {
      height: opts.height ?? 380, barmode: 'overlay', xaxis: { title: { text: 'reward score' } }, yaxis: { title: { text: 'pairs' } },
    }),
  });
}

/** DPO implicit rewards (β·log-ratio of policy to reference) over training. */
export interface DpoRewards {
  step: ArrayLike<number>;
  /** Mean reward of chosen completions. */
  chosen: ArrayLike<number>;
  /** Mean reward of rejected completions. */
  rejected: ArrayLike<number>;
  /** Mean margin (default chosen − rejected). */
  margin?: ArrayLike<number>;
}

/**
 * DPO rewards: chosen and rejected rewards (top) and their margin (bottom) against step.
 *
 * @example
 * dpoChart({ step: [1, 2, 3], chosen: [0, 0.1, 0.3], rejected: [0, -0.1, -0.2] }).show();
 */
export function dpoChart(input: DpoRewards, opts: ChartOptions = {}): Chart {
  const margin = input.margin ?? Array.from(input.chosen, (c, i) => c - input.rejected[i]);
  const x = nums(input.step);
  const data: JsonObject[] = [
    { type: 'scatter', mode: 'lines', name: 'chosen reward', x, y: nums(input.chosen), line: { color: COLORS[2] } },
    { type: 'scatter', mode: 'lines', name: 'rejected reward', x, y: nums(input.rejected), line: { color: COLORS[3] } },
    { type: 'scatter', mode: 'lines', name: 'margin', x, y: nums(margin), yaxis: 'y2', line: { color: COLORS[4] }, fill: 'tozeroy' },
  ];
  const top = { x: [0, 1] as [number, number], y: [0.55, 1] as [number, number] };
  const bottom = { x: [0, 1] as [number, number], y: [0, 0.4] as [number, number] };
  return new Chart({
    data,
    layout: layout(opts.title ?? 'DPO rewards', {
      height: opts.height ?? 520,
      margin: { l: 60, r: 30, t: 70, b: 50 },
      xaxis: { title: { text: 'step' }, anchor: 'y2', ...integerTicks(x) },
      yaxis: { title: { text: 'reward' }, domain: top.y, zeroline: true },
      yaxis2: { title: { text: 'margin' }, domain: bottom.y, zeroline: true, zerolinecolor: '#999' },
      annotations: [panelTitle('chosen vs rejected', top), panelTitle('margin (chosen − rejected)', bottom)],
    }),
  });
}

/** One PPO run: mean reward and KL to the reference policy at each step. */
export interface PpoRun {
  /** Legend name when comparing runs, e.g. `klCoef 0.05`. */
  name?: string;
  step?: ArrayLike<number>;
  reward: ArrayLike<number>;
  kl: ArrayLike<number>;
}

/**
 * PPO reward against KL from the reference model. One run is colored by step; several runs get one
 * color each (compare KL coefficients).
 *
 * @example
 * ppoChart({ reward: [0.1, 0.4, 0.6], kl: [0, 0.8, 2.1] }).show();
 * ppoChart([{ name: 'klCoef 0.02', reward: r1, kl: k1 }, { name: 'klCoef 0.2', reward: r2, kl: k2 }]).show();
 */
export function ppoChart(runs: PpoRun | readonly PpoRun[], opts: ChartOptions = {}): Chart {
  const list: readonly PpoRun[] = Array.isArray(runs) ? runs : [runs as PpoRun];
  const single = list.length === 1;
  const data: JsonObject[] = list.map((r, i) => {
    const step = r.step ? nums(r.step) : Array.from({ length: r.reward.length }, (_, j) => j + 1);
    const marker: JsonObject = single
      ? { size: 7, color: step, colorscale: 'Viridis', showscale: true, colorbar: { title: { text: 'step' } } }
      : { size: 6, color: COLORS[i % COLORS.length] };
    return {
      type: 'scatter', mode: 'lines+markers', name: plotlyText(r.name ?? `run ${i + 1}`),
      x: nums(r.kl), y: nums(r.reward), customdata: step, marker,
      line: { color: single ? '#bbb' : COLORS[i % COLORS.length], width: 1 },
      hovertemplate: 'step %{customdata}<br>KL %{x:.4g}<br>reward %{y:.4g}<extra></extra>',
    };
  });
  return new Chart({
    data,
    layout: layout(opts.title ?? 'PPO reward vs KL', {
      height: opts.height ?? 420, showlegend: !single,
      xaxis: { title: { text: 'KL(policy ‖ reference)' }, rangemode: 'tozero' },
      yaxis: { title: { text: 'mean reward' } },
    }),
  });
}

// ---------------------------------------------------------------------------------------------------
// Looking inside the model for one prompt
// ---------------------------------------------------------------------------------------------------

/** Attention weights of one head (or a head average) for a prompt. */
export interface AttentionInput {
  /** Key tokens (columns), as text. */
  tokens: readonly string[];
  /** Query tokens (rows); default `tokens` (self-attention). */
  queryTokens?: readonly string[];
  /** Rows of weights `[query][key]`, or one row-major array of queries × keys. */
  weights: readonly ArrayLike<number>[] | ArrayLike<number>;
}

function matrix(weights: AttentionInput['weights'], rows: number, cols: number): (number | null)[][] {
  const w = weights as ArrayLike<ArrayLike<number> | number>;
  const nested = w.length > 0 && typeof w[0] !== 'number';
  if (nested) {
    const m = Array.from(weights as readonly ArrayLike<number>[], (r) => nums(r));
    if (m.length !== rows || m.some((r) => r.length !== cols)) throw new Error(`attention weights must be ${rows}×${cols} (queries × keys)`);
    return m;
  }
  const flat = weights as ArrayLike<number>;
  if (flat.length !== rows * cols) throw new Error(`attention weights have ${flat.length} values, expected ${rows}×${cols} = ${rows * cols}`);
  return Array.from({ length: rows }, (_, r) => nums(Array.prototype.slice.call(flat, r * cols, (r + 1) * cols) as number[]));
}

/**
 * Attention heatmap: query tokens down, key tokens across. Axes are positions labelled with tokens, so
 * repeated tokens stay separate columns; whitespace is made visible (`␣`, `↵`).
 *
 * @example
 * attentionHeatmap({ tokens: ['The', ' cat', ' sat'], weights: [[1, 0, 0], [0.4, 0.6, 0], [0.2, 0.5, 0.3]] }, { title: 'layer 2 head 0' }).show();
 */
export function attentionHeatmap(input: AttentionInput, opts: ChartOptions = {}): Chart {
  const keys = input.tokens;
  const queries = input.queryTokens ?? keys;
  const z = matrix(input.weights, queries.length, keys.length);
  const keyLabels = keys.map(tokenLabel);
  const queryLabels = queries.map(tokenLabel);
  // Per-cell hover text only for small prompts: it grows with queries × keys.
  const small = queries.length * keys.length <= 40_000;
  const trace: JsonObject = {
    type: 'heatmap', z, x: keys.map((_, i) => i), y: queries.map((_, i) => i), colorscale: 'Blues', reversescale: true, zmin: 0,
    colorbar: { title: { text: 'weight' } },
    ...(small
      ? { customdata: queryLabels.map((q) => keyLabels.map((k) => `${q} → ${k}`)), hovertemplate: '%{customdata}<br>%{z:.3f}<extra></extra>' }
      : { hovertemplate: 'query %{y} → key %{x}<br>%{z:.3f}<extra></extra>' }),
  };
  const side = Math.min(900, Math.max(320, 22 * Math.max(keys.length, queries.length) + 160));
  return new Chart({
    data: [trace],
    layout: layout(opts.title ?? 'Attention', {
      height: opts.height ?? side,
      margin: { l: 100, r: 30, t: 50, b: 100 },
      xaxis: { tickmode: 'array', tickvals: keys.map((_, i) => i), ticktext: keyLabels, tickangle: -60, title: { text: 'key' }, side: 'bottom' },
      yaxis: { tickmode: 'array', tickvals: queries.map((_, i) => i), ticktext: queryLabels, autorange: 'reversed', title: { text: 'query' } },
    }),
  });
}

/** A candidate next token and its probability. */
export interface TokenProb {
  token: string;
  prob: number;
}

/** The model's top-k next-token predictions along a prompt. */
export interface TokenProbInput {
  /** The prompt's tokens; position i is the context the prediction `topK[i]` continues. */
  tokens: readonly string[];
  /** For each position, candidates sorted by probability (most likely first). */
  topK: readonly (readonly TokenProb[])[];
  /** The token that actually follows each position (bolded among the candidates when present). */
  next?: readonly (string | undefined)[];
}

/**
 * Token-probability view: one column per position, rows are ranks 1..k, each cell shows the candidate
 * token colored by its probability; the true next token is bold.
 *
 * @example
 * tokenProbChart({
 *   tokens: ['To', ' loop'],
 *   topK: [[{ token: ' be', prob: 0.3 }, { token: ' loop', prob: 0.1 }], [{ token: ' over', prob: 0.6 }, { token: ' through', prob: 0.2 }]],
 *   next: [' loop', ' over'],
 * }).show();
 */
export function tokenProbChart(input: TokenProbInput, opts: ChartOptions = {}): Chart {
  const n = input.tokens.length;
  if (input.topK.length !== n) throw new Error(`topK has ${input.topK.length} positions, tokens has ${n}`);
  const k = Math.max(0, ...input.topK.map((c) => c.length));
  const z: (number | null)[][] = [];
  const text: string[][] = [];
  for (let r = 0; r < k; r++) {
    z.push(input.topK.map((c) => (c[r] && Number.isFinite(c[r].prob) ? c[r].prob : null)));
    text.push(input.topK.map((c, i) => {
      if (!c[r]) return '';
      const label = tokenLabel(c[r].token);
      return input.next?.[i] !== undefined && input.next[i] === c[r].token ? `<b>${label}</b>` : label;
    }));
  }
  const trace: JsonObject = {
    type: 'heatmap', z, text, texttemplate: '%{text}', textfont: { size: 11 },
    x: input.tokens.map((_, i) => i), y: Array.from({ length: k }, (_, r) => r + 1),
    colorscale: 'YlGnBu', reversescale: true, zmin: 0, zmax: 1, colorbar: { title: { text: 'p' } },
    hovertemplate: 'rank %{y}: %{text}<br>p = %{z:.3f}<extra></extra>',
  };
  const width = Math.max(1, n);
  return new Chart({
    data: [trace],
    layout: layout(opts.title ?? 'Next-token probabilities', {
      height: opts.height ?? Math.max(260, 40 * k + 160),
      margin: { l: 60, r: 30, t: 50, b: 90 },
      xaxis: { tickmode: 'array', tickvals: input.tokens.map((_, i) => i), ticktext: input.tokens.map(tokenLabel), tickangle: -45, title: { text: 'context ends with' }, range: [-0.5, width - 0.5] },
      yaxis: { autorange: 'reversed', title: { text: 'rank' }, dtick: 1 },
    }),
  });
}

