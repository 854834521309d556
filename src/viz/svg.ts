/**
 * A static SVG picture of a chart, made in Node without a browser: what exported HTML, untrusted notebooks
 * and notebook viewers show when Plotly cannot run. It draws the trace types tunelab's charts use (scatter
 * lines/markers/text, bars, histograms, heatmaps) with Plotly's layout semantics for the parts they use:
 * axis domains, anchors and overlays, log and category axes, fixed tick arrays, `dtick`, titles, legend,
 * paper/data annotations and line shapes. Anything else in a spec is ignored, not guessed.
 */
import type { JsonObject, JsonValue, PlotSpec } from './plot-spec';
import { escapeHtml, plotlyPlain } from './html';

/** Size of the picture (Plotly's default width; height from the layout). */
export interface SvgOptions {
  /** Width in px (default 800). */
  width?: number;
  /** Height in px of the plot, legend excluded (default `layout.height`, else 420). */
  height?: number;
}

const obj = (v: JsonValue | undefined): JsonObject => (v && typeof v === 'object' && !Array.isArray(v) ? (v as JsonObject) : {});
const arr = (v: JsonValue | undefined): readonly JsonValue[] => (Array.isArray(v) ? v : []);
const num = (v: JsonValue | undefined, d: number): number => (typeof v === 'number' && Number.isFinite(v) ? v : d);
const isNum = (v: JsonValue | undefined): v is number => typeof v === 'number' && Number.isFinite(v);
const fmt = (v: number) => String(Math.round(v * 100) / 100);
const esc = (s: string) => escapeHtml(plotlyPlain(s));

function textOf(title: JsonValue | undefined): string {
  if (typeof title === 'string') return title;
  const t = obj(title).text;
  return typeof t === 'string' ? t : '';
}

// ---------------------------------------------------------------------------------------------------
// Ticks
// ---------------------------------------------------------------------------------------------------

/** Steps 1, 2, 5 × 10^k: the smallest one giving at most `target` intervals over `span`. */
function niceStep(span: number, target: number): number {
  const raw = span / Math.max(1, target);
  const pow = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * pow >= raw) return m * pow;
  return 10 * pow;
}

/**
 * Tick positions for the range [lo, hi]: multiples of a 1-2-5 step, or of `dtick` from `tick0` when given.
 * `integer` keeps steps whole (axes of training steps).
 */
export function ticks(lo: number, hi: number, opts: { target?: number; integer?: boolean; dtick?: number; tick0?: number } = {}): number[] {
  if (!(hi > lo)) return Number.isFinite(lo) ? [lo] : [];
  let step = opts.dtick && opts.dtick > 0 ? opts.dtick : niceStep(hi - lo, opts.target ?? 6);
  if (opts.integer) step = Math.max(1, Math.round(step));
  const t0 = opts.tick0 ?? 0;
  const out: number[] = [];
  for (let k = Math.ceil((lo - t0) / step - 1e-9); out.length < 1000; k++) {
    const v = t0 + k * step;
    if (v > hi + step * 1e-9) break;
    out.push(Math.abs(v) < step * 1e-9 ? 0 : +v.toPrecision(12));
  }
  return out;
}

// [min, max] of the values ([Infinity, -Infinity] when empty, as Math.min()/Math.max()); a loop, not
// Math.min(...values), which overflows the call stack beyond about 120k values (long training curves).
function extent(values: readonly number[]): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return [lo, hi];
}

/**
 * Plotly axis settings for whole-number ticks (training steps). Over a short span Plotly's automatic ticks
 * fall between steps (1, 1.5, 2), so a whole `dtick` (1, 2, 5, 10…) is fixed; over a long one its automatic
 * ticks are whole already and stay automatic, so zooming in still finds ticks. `{}` when nothing is to fix.
 */
export function integerTicks(values: readonly (number | null)[], target = 8): JsonObject {
  const finite = values.filter((v): v is number => v !== null && Number.isFinite(v));
  if (finite.length === 0) return {};
  const [lo, hi] = extent(finite);
  const span = hi - lo;
  if (span > 5 * target) return {};
  return { tickmode: 'linear', tick0: 0, dtick: Math.max(1, Math.round(niceStep(Math.max(span, 1), target))) };
}

function tickLabel(v: number, step: number, axis: JsonObject): string {
  const f = typeof axis.tickformat === 'string' ? axis.tickformat : '';
  const pct = /^\.(\d+)%$/.exec(f);
  if (pct) return `${(v * 100).toFixed(Number(pct[1]))}%`;
  const exp = /^\.(\d+)e$/.exec(f);
  if (exp || axis.exponentformat === 'e') return v === 0 ? '0' : v.toExponential(exp ? Number(exp[1]) : 1);
  if (Math.abs(v) >= 1e5 || (v !== 0 && Math.abs(v) < 1e-4)) return v.toExponential(1);
  const decimals = Math.max(0, Math.min(10, -Math.floor(Math.log10(step) + 1e-9)));
  return v.toFixed(decimals);
}

// ---------------------------------------------------------------------------------------------------
// Axes
// ---------------------------------------------------------------------------------------------------

interface Axis {
  id: string;
  layout: JsonObject;
  /** Pixel extent: [start, end] along the axis (y runs bottom to top, so start > end). */
  px: [number, number];
  log: boolean;
  categories?: string[];
  lo: number;
  hi: number;
  reversed: boolean;
}

/** `x2` → `xaxis2` (Plotly's naming). */
const layoutKey = (id: string) => `${id[0]}axis${id.slice(1)}`;

function position(axis: Axis, v: JsonValue | undefined): number | undefined {
  let d: number | undefined;
  if (axis.categories && typeof v === 'string') d = axis.categories.indexOf(v);
  else if (isNum(v)) d = axis.log ? (v > 0 ? Math.log10(v) : undefined) : v;
  if (d === undefined || (axis.categories && d < 0)) return undefined;
  const f = (d - axis.lo) / (axis.hi - axis.lo || 1);
  const [a, b] = axis.px;
  return axis.reversed ? b + f * (a - b) : a + f * (b - a);
}

// ---------------------------------------------------------------------------------------------------
// Colors
// ---------------------------------------------------------------------------------------------------

const SCALES: Record<string, string[]> = {
  Viridis: ['#440154', '#482878', '#3e4989', '#31688e', '#26828e', '#1f9e89', '#35b779', '#6ece58', '#b5de2b', '#fde725'],
  Blues: ['#050aac', '#2846be', '#4664f5', '#5a78f5', '#6a89f7', '#dcdcdc'],
  YlGnBu: ['#081d58', '#253494', '#225ea8', '#1d91c0', '#41b6c4', '#7fcdbb', '#c7e9b4', '#edf8d9', '#ffffd9'],
};

function scaleColor(name: JsonValue | undefined, reverse: boolean, f: number): string {
  const stops = SCALES[typeof name === 'string' ? name : 'Viridis'] ?? SCALES.Viridis;
  const t = Math.min(1, Math.max(0, reverse ? 1 - f : f)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(t));
  const [a, b] = [stops[i], stops[i + 1]].map((c) => [1, 3, 5].map((k) => parseInt(c.slice(k, k + 2), 16)));
  return `rgb(${a.map((x, k) => Math.round(x + (b[k] - x) * (t - i))).join(',')})`;
}

const DEFAULT_COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
const DASH: Record<string, string> = { dash: '6,4', dot: '2,3', dashdot: '6,3,2,3' };

// ---------------------------------------------------------------------------------------------------
// The picture
// ---------------------------------------------------------------------------------------------------

/** Histogram counts per trace over shared bins: Plotly's overlaid histograms share one binning. */
function histogramBins(traces: JsonObject[]): Map<JsonObject, { x: number[]; y: number[]; width: number }> {
  const out = new Map<JsonObject, { x: number[]; y: number[]; width: number }>();
  const all = traces.flatMap((t) => arr(t.x).filter(isNum));
  if (all.length === 0) return out;
  const [lo, hi] = extent(all);
  const n = Math.max(1, Math.min(...traces.map((t) => num(t.nbinsx, 30))));
  const width = hi > lo ? (hi - lo) / n : 1;
  for (const t of traces) {
    const y = new Array<number>(n).fill(0);
    for (const v of arr(t.x).filter(isNum)) y[Math.min(n - 1, Math.floor((v - lo) / width))]++;
    out.set(t, { x: y.map((_, i) => lo + (i + 0.5) * width), y, width });
  }
  return out;
}

/**
 * The chart as a standalone SVG document (UTF-8, `xmlns` set), so it works inline, in an `<img>` data URL
 * and as a notebook's `image/svg+xml` output. Each trace is one `<g class="trace">` with its name.
 *
 * @example
 * fs.writeFileSync('loss.svg', chartSvg(lossChart(result).spec));
 */
export function chartSvg(spec: PlotSpec, opts: SvgOptions = {}): string {
  const layout = spec.layout;
  const W = opts.width ?? 800;
  const H = opts.height ?? num(layout.height, 420);
  const m = obj(layout.margin);
  const [ml, mr, mt, mb] = [num(m.l, 80), num(m.r, 80), num(m.t, 100), num(m.b, 80)];
  const plotW = W - ml - mr;
  const plotH = H - mt - mb;
  const traces = spec.data;
  const hist = histogramBins(traces.filter((t) => t.type === 'histogram'));

  // Axes: every axis a trace uses, plus the axes they overlay.
  const ids = new Set<string>();
  for (const t of traces) {
    ids.add(typeof t.xaxis === 'string' ? t.xaxis : 'x');
    ids.add(typeof t.yaxis === 'string' ? t.yaxis : 'y');
  }
  const axes = new Map<string, Axis>();
  const domainOf = (id: string): [number, number] => {
    const a = obj(layout[layoutKey(id)]);
    if (typeof a.overlaying === 'string') return domainOf(a.overlaying);
    const d = arr(a.domain);
    return [num(d[0], 0), num(d[1], 1)];
  };
  for (const id of ids) {
    const a = obj(layout[layoutKey(id)]);
    const [d0, d1] = domainOf(id);
    const px: [number, number] = id[0] === 'x' ? [ml + d0 * plotW, ml + d1 * plotW] : [mt + (1 - d0) * plotH, mt + (1 - d1) * plotH];
    axes.set(id, { id, layout: a, px, log: a.type === 'log', lo: 0, hi: 1, reversed: a.autorange === 'reversed' });
  }

  // Data ranges.
  const values = new Map<string, JsonValue[]>();
  const add = (id: string, vs: readonly JsonValue[]) => values.set(id, [...(values.get(id) ?? []), ...vs]);
  for (const t of traces) {
    const [xid, yid] = [typeof t.xaxis === 'string' ? t.xaxis : 'x', typeof t.yaxis === 'string' ? t.yaxis : 'y'];
    const h = hist.get(t);
    if (h) {
      add(xid, [h.x[0] - h.width / 2, h.x[h.x.length - 1] + h.width / 2]);
      add(yid, [0, ...h.y]);
    } else if (t.type === 'heatmap') {
      const z = arr(t.z);
      add(xid, arr(t.x).length ? arr(t.x) : arr(z[0]).map((_, i) => i));
      add(yid, arr(t.y).length ? arr(t.y) : z.map((_, i) => i));
    } else {
      add(xid, arr(t.x));
      add(yid, t.type === 'bar' || t.fill === 'tozeroy' ? [0, ...arr(t.y)] : arr(t.y));
    }
  }
  for (const s of arr(layout.shapes).map(obj)) {
    if (typeof s.yref === 'string' && s.yref !== 'paper' && axes.has(s.yref)) add(s.yref, [s.y0 ?? null, s.y1 ?? null]);
    if (s.yref === undefined && axes.has('y')) add('y', [s.y0 ?? null, s.y1 ?? null]);
  }
  for (const axis of axes.values()) {
    const vs = values.get(axis.id) ?? [];
    const heat = traces.some((t) => t.type === 'heatmap' && (t[axis.id[0] + 'axis'] ?? axis.id[0]) === axis.id);
    const bars = traces.some((t) => (t.type === 'bar' || t.type === 'histogram') && (t[axis.id[0] + 'axis'] ?? axis.id[0]) === axis.id);
    const range = arr(axis.layout.range);
    if (vs.some((v) => typeof v === 'string')) {
      axis.categories = [...new Set(vs.filter((v): v is string => typeof v === 'string'))];
      [axis.lo, axis.hi] = [-0.5, axis.categories.length - 0.5];
    } else if (isNum(range[0]) && isNum(range[1])) {
      [axis.lo, axis.hi] = [range[0], range[1]]; // Plotly gives log ranges as exponents too
    } else {
      const finite = vs.filter(isNum).filter((v) => !axis.log || v > 0).map((v) => (axis.log ? Math.log10(v) : v));
      let [lo, hi] = finite.length ? extent(finite) : [0, 1];
      if (heat) [lo, hi] = [lo - 0.5, hi + 0.5];
      else {
        if (hi === lo) [lo, hi] = [lo - 1, hi + 1];
        const pad = bars && axis.id[0] === 'x' ? 0 : (hi - lo) * 0.05;
        lo = axis.layout.rangemode === 'tozero' || (bars && axis.id[0] === 'y' && lo >= 0) ? Math.min(0, lo) : lo - pad;
        hi += pad;
      }
      [axis.lo, axis.hi] = [lo, hi];
    }
  }

  const out: string[] = [];
  const put = (s: string) => out.push(s);
  const fontFamily = typeof obj(layout.font).family === 'string' ? (obj(layout.font).family as string) : 'sans-serif';

  // Axes: grid, ticks, labels, title.
  for (const axis of axes.values()) {
    const isX = axis.id[0] === 'x';
    const a = axis.layout;
    const anchor = axes.get(typeof a.anchor === 'string' ? a.anchor : isX ? 'y' : 'x') ?? [...axes.values()].find((o) => o.id[0] !== axis.id[0]);
    const right = a.side === 'right';
    const at = isX ? (anchor ? Math.max(...anchor.px) : mt + plotH) : anchor ? (right ? Math.max(...anchor.px) : Math.min(...anchor.px)) : right ? ml + plotW : ml;
    let tv: number[];
    let labels: string[];
    if (a.tickmode === 'array') {
      tv = arr(a.tickvals).filter(isNum);
      labels = arr(a.ticktext).map((t) => String(t));
    } else if (axis.categories) {
      tv = axis.categories.map((_, i) => i);
      labels = axis.categories;
    } else if (axis.log) {
      tv = ticks(Math.ceil(axis.lo), Math.floor(axis.hi), { dtick: 1 }).map((e) => 10 ** e);
      labels = tv.map((v) => (v >= 1e4 || v < 1e-3 ? v.toExponential(0) : String(+v.toPrecision(3))));
    } else {
      const dtick = isNum(a.dtick) ? a.dtick : undefined;
      tv = ticks(axis.lo, axis.hi, { dtick, tick0: num(a.tick0, 0), target: isX ? 7 : 5 });
      const step = tv.length > 1 ? tv[1] - tv[0] : Math.abs(tv[0] ?? 1) || 1;
      labels = tv.map((v) => tickLabel(v, step, a));
    }
    const pos = (v: number) => position({ ...axis, categories: undefined }, v);
    const showGrid = a.showgrid !== false && typeof a.overlaying !== 'string';
    const angle = num(a.tickangle, 0);
    put(`<g class="axis" data-axis="${axis.id}">`);
    tv.forEach((v, i) => {
      const p = pos(v);
      if (p === undefined || p < Math.min(...axis.px) - 0.5 || p > Math.max(...axis.px) + 0.5) return;
      const label = esc(labels[i] ?? '');
      if (isX) {
        if (showGrid && anchor) put(`<line x1="${fmt(p)}" x2="${fmt(p)}" y1="${fmt(Math.min(...anchor.px))}" y2="${fmt(Math.max(...anchor.px))}" stroke="#eee"/>`);
        const rot = angle ? ` transform="rotate(${angle} ${fmt(p)} ${fmt(at + 16)})" text-anchor="end"` : ' text-anchor="middle"';
        put(`<text class="tick" x="${fmt(p)}" y="${fmt(at + 16)}"${rot}>${label}</text>`);
      } else {
        if (showGrid && anchor) put(`<line y1="${fmt(p)}" y2="${fmt(p)}" x1="${fmt(Math.min(...anchor.px))}" x2="${fmt(Math.max(...anchor.px))}" stroke="#eee"/>`);
        put(`<text class="tick" x="${fmt(right ? at + 6 : at - 6)}" y="${fmt(p + 4)}" text-anchor="${right ? 'start' : 'end'}">${label}</text>`);
      }
    });
    if (isX) put(`<line x1="${fmt(axis.px[0])}" x2="${fmt(axis.px[1])}" y1="${fmt(at)}" y2="${fmt(at)}" stroke="#444"/>`);
    else put(`<line y1="${fmt(axis.px[0])}" y2="${fmt(axis.px[1])}" x1="${fmt(at)}" x2="${fmt(at)}" stroke="#444"/>`);
    const title = textOf(a.title);
    if (title) {
      const mid = (axis.px[0] + axis.px[1]) / 2;
      if (isX) put(`<text class="axis-title" x="${fmt(mid)}" y="${fmt(at + (angle ? 60 : 36))}" text-anchor="middle">${esc(title)}</text>`);
      else {
        const x = right ? at + 62 : at - 46;
        put(`<text class="axis-title" x="${fmt(x)}" y="${fmt(mid)}" text-anchor="middle" transform="rotate(-90 ${fmt(x)} ${fmt(mid)})">${esc(title)}</text>`);
      }
    }
    put('</g>');
  }

  // Shapes (lines) under the traces.
  const paperX = (v: number) => ml + v * plotW;
  const paperY = (v: number) => mt + (1 - v) * plotH;
  const coord = (ref: JsonValue | undefined, v: JsonValue | undefined, isX: boolean): number | undefined => {
    if (ref === 'paper') return isNum(v) ? (isX ? paperX(v) : paperY(v)) : undefined;
    const axis = axes.get(typeof ref === 'string' ? ref : isX ? 'x' : 'y');
    return axis ? position(axis, v) : undefined;
  };
  for (const s of arr(layout.shapes).map(obj)) {
    if (s.type !== 'line') continue;
    const [x0, x1, y0, y1] = [coord(s.xref, s.x0, true), coord(s.xref, s.x1, true), coord(s.yref, s.y0, false), coord(s.yref, s.y1, false)];
    if ([x0, x1, y0, y1].some((v) => v === undefined)) continue;
    const line = obj(s.line);
    const dash = DASH[String(line.dash)] ? ` stroke-dasharray="${DASH[String(line.dash)]}"` : '';
    put(`<line class="shape" x1="${fmt(x0!)}" x2="${fmt(x1!)}" y1="${fmt(y0!)}" y2="${fmt(y1!)}" stroke="${esc(String(line.color ?? '#555'))}" stroke-width="${num(line.width, 1)}"${dash}/>`);
  }

  // Traces.
  const barTraces = traces.filter((t) => t.type === 'bar');
  const legend: { name: string; color: string; kind: 'line' | 'box'; shown: boolean }[] = [];
  traces.forEach((t, i) => {
    const x = axes.get(typeof t.xaxis === 'string' ? t.xaxis : 'x')!;
    const y = axes.get(typeof t.yaxis === 'string' ? t.yaxis : 'y')!;
    const line = obj(t.line);
    const marker = obj(t.marker);
    const color = String(typeof marker.color === 'string' ? marker.color : line.color ?? DEFAULT_COLORS[i % DEFAULT_COLORS.length]);
    const lineColor = String(line.color ?? color);
    const opacity = num(t.opacity, 1);
    const name = typeof t.name === 'string' ? t.name : `trace ${i}`;
    put(`<g class="trace" data-type="${esc(String(t.type ?? 'scatter'))}" data-name="${esc(name)}"${opacity < 1 ? ` opacity="${opacity}"` : ''}>`);
    if (t.type === 'heatmap') {
      const z = arr(t.z).map(arr);
      const zs = z.flat().filter(isNum);
      const [zlo, zhi] = extent(zs);
      const zmin = num(t.zmin, zlo);
      const zmax = num(t.zmax, zhi);
      const xs = arr(t.x).length ? arr(t.x) : arr(z[0]).map((_, j) => j);
      const ys = arr(t.y).length ? arr(t.y) : z.map((_, j) => j);
      const text = arr(t.text).map(arr);
      z.forEach((row, r) => row.forEach((v, c) => {
        const cx = position(x, xs[c]);
        const cy = position(y, ys[r]);
        if (cx === undefined || cy === undefined) return;
        const w = Math.abs(plotExtent(x)) / (x.hi - x.lo);
        const h = Math.abs(plotExtent(y)) / (y.hi - y.lo);
        const fill = isNum(v) ? scaleColor(t.colorscale, t.reversescale === true, (v - zmin) / (zmax - zmin || 1)) : '#fff';
        put(`<rect x="${fmt(cx - w / 2)}" y="${fmt(cy - h / 2)}" width="${fmt(w)}" height="${fmt(h)}" fill="${fill}"/>`);
        const label = typeof text[r]?.[c] === 'string' ? (text[r][c] as string) : '';
        if (label && t.texttemplate) {
          const dark = isNum(v) && (t.reversescale === true ? (v - zmin) / (zmax - zmin || 1) > 0.5 : (v - zmin) / (zmax - zmin || 1) < 0.5);
          put(`<text x="${fmt(cx)}" y="${fmt(cy + 4)}" text-anchor="middle" font-size="11" fill="${dark ? '#fff' : '#000'}">${esc(label)}</text>`);
        }
      }));
    } else if (t.type === 'bar' || t.type === 'histogram') {
      const h = hist.get(t);
      const xs: JsonValue[] = h ? h.x : [...arr(t.x)];
      const ys: JsonValue[] = h ? h.y : [...arr(t.y)];
      const slots = h ? 1 : barTraces.filter((b) => (b.xaxis ?? 'x') === (t.xaxis ?? 'x')).length;
      const slot = h ? 0 : barTraces.filter((b) => (b.xaxis ?? 'x') === (t.xaxis ?? 'x')).indexOf(t);
      const unit = Math.abs(plotExtent(x)) / (x.hi - x.lo);
      const width = (h ? h.width : 0.8 / slots) * unit;
      const colors = arr(marker.color);
      xs.forEach((xv, j) => {
        const cx = position(x, xv);
        const top = position(y, ys[j]);
        const base = position(y, y.log ? 10 ** y.lo : 0);
        if (cx === undefined || top === undefined || base === undefined) return;
        const left = cx - (h ? width / 2 : 0.4 * unit) + slot * width;
        const fill = typeof colors[j] === 'string' ? (colors[j] as string) : color;
        put(`<rect x="${fmt(left)}" y="${fmt(Math.min(top, base))}" width="${fmt(Math.max(0.5, width - (h ? 1 : 0)))}" height="${fmt(Math.abs(base - top))}" fill="${esc(fill)}"/>`);
      });
      legend.push({ name, color, kind: 'box', shown: t.showlegend !== false });
    } else {
      const mode = typeof t.mode === 'string' ? t.mode : 'lines+markers';
      const xs = arr(t.x);
      const ys = arr(t.y);
      const pts = ys.map((yv, j) => {
        const px = position(x, xs.length ? xs[j] : j);
        const py = position(y, yv);
        return px === undefined || py === undefined ? undefined : ([px, py] as [number, number]);
      });
      if (mode.includes('lines')) {
        const segments: [number, number][][] = [[]];
        for (const p of pts) if (p) segments[segments.length - 1].push(p); else if (segments[segments.length - 1].length) segments.push([]);
        segments.forEach((seg, j) => (segments[j] = decimate(seg)));
        const hv = line.shape === 'hv';
        const d = segments.filter((s) => s.length).map((s) => s.map(([px, py], j) => (j === 0 ? `M${fmt(px)},${fmt(py)}` : hv ? `H${fmt(px)}V${fmt(py)}` : `L${fmt(px)},${fmt(py)}`)).join('')).join('');
        if (t.fill === 'tozeroy') {
          const zero = position(y, 0);
          for (const s of segments.filter((seg) => seg.length > 1)) {
            if (zero === undefined) break;
            const area = `M${fmt(s[0][0])},${fmt(zero)}${s.map(([px, py]) => `L${fmt(px)},${fmt(py)}`).join('')}L${fmt(s[s.length - 1][0])},${fmt(zero)}Z`;
            put(`<path d="${area}" fill="${esc(lineColor)}" fill-opacity="0.3" stroke="none"/>`);
          }
        }
        if (t.fill === 'toself') {
          // A closed band (e.g. an interval): the trace's points are its outline.
          const ring = pts.filter((p): p is [number, number] => p !== undefined);
          if (ring.length > 2) put(`<path d="M${ring.map(([px, py]) => `${fmt(px)},${fmt(py)}`).join('L')}Z" fill="${esc(String(t.fillcolor ?? lineColor))}" stroke="none"/>`);
        }
        const dash = DASH[String(line.dash)] ? ` stroke-dasharray="${DASH[String(line.dash)]}"` : '';
        if (d) put(`<path d="${d}" fill="none" stroke="${esc(lineColor)}" stroke-width="${num(line.width, 2)}"${dash}/>`);
      }
      if (mode.includes('markers')) {
        const colors = arr(marker.color);
        const cnum = colors.filter(isNum);
        const [cmin, cmax] = extent(cnum);
        const ring = obj(marker.line);
        pts.forEach((p, j) => {
          if (!p) return;
          const c = colors[j];
          const fill = isNum(c) ? scaleColor(marker.colorscale, marker.reversescale === true, (c - cmin) / (cmax - cmin || 1)) : typeof c === 'string' ? c : color;
          const stroke = ring.color ? ` stroke="${esc(String(ring.color))}" stroke-width="${num(ring.width, 1)}"` : '';
          put(`<circle cx="${fmt(p[0])}" cy="${fmt(p[1])}" r="${fmt(num(marker.size, 6) / 2)}" fill="${esc(fill)}"${stroke}/>`);
        });
      }
      if (mode.includes('text')) {
        const text = arr(t.text);
        pts.forEach((p, j) => {
          if (p && typeof text[j] === 'string') put(`<text x="${fmt(p[0])}" y="${fmt(p[1] - 8)}" text-anchor="middle" font-size="10">${esc(text[j] as string)}</text>`);
        });
      }
      legend.push({ name, color: lineColor, kind: mode.includes('lines') ? 'line' : 'box', shown: t.showlegend !== false });
    }
    put('</g>');
  });

  // Annotations (panel titles, labels) and the title.
  for (const a of arr(layout.annotations).map(obj)) {
    const ax = coord(a.xref ?? 'x', a.x, true);
    const ay = coord(a.yref ?? 'y', a.y, false);
    if (ax === undefined || ay === undefined || typeof a.text !== 'string') continue;
    const anchor = a.xanchor === 'right' ? 'end' : a.xanchor === 'left' ? 'start' : 'middle';
    const dy = a.yanchor === 'bottom' ? -4 : a.yanchor === 'top' ? 12 : 4;
    const bold = /<b>/.test(a.text) ? ' font-weight="bold"' : '';
    put(`<text class="annotation" x="${fmt(ax)}" y="${fmt(ay + dy)}" text-anchor="${anchor}" font-size="${num(obj(a.font).size, 12)}"${bold}>${esc(a.text)}</text>`);
  }
  const title = textOf(layout.title);
  if (title) put(`<text class="title" x="${fmt(W / 2)}" y="${fmt(Math.min(30, mt / 2 + 6))}" text-anchor="middle" font-size="17">${esc(title)}</text>`);

  // Legend below the plot, wrapped into rows (Plotly shows one when there is more than one trace).
  const showLegend = layout.showlegend === true || (layout.showlegend !== false && traces.length > 1);
  const items = showLegend ? legend.filter((l) => l.shown) : [];
  let rows = 0;
  if (items.length) {
    let x = ml;
    rows = 1;
    const y0 = H + 4;
    for (const item of items) {
      const w = 34 + 7 * plotlyPlain(item.name).length;
      if (x + w > W - 10 && x > ml) { x = ml; rows++; }
      const y = y0 + (rows - 1) * 20;
      put(item.kind === 'line'
        ? `<line x1="${fmt(x)}" x2="${fmt(x + 22)}" y1="${fmt(y)}" y2="${fmt(y)}" stroke="${esc(item.color)}" stroke-width="3"/>`
        : `<rect x="${fmt(x + 4)}" y="${fmt(y - 6)}" width="12" height="12" fill="${esc(item.color)}"/>`);
      put(`<text class="legend" x="${fmt(x + 28)}" y="${fmt(y + 4)}">${esc(item.name)}</text>`);
      x += w;
    }
  }
  const totalH = H + (rows ? rows * 20 + 8 : 0);
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${fmt(totalH)}" viewBox="0 0 ${W} ${fmt(totalH)}" font-family="${esc(fontFamily)}" font-size="12">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    ...out,
    '</svg>',
  ].join('\n');
}

/**
 * A polyline with at most four points per pixel column (the first, lowest, highest and last there, in order):
 * the same picture as every point, a fraction of the size for long runs.
 */
function decimate(pts: [number, number][]): [number, number][] {
  if (pts.length < 1000) return pts;
  const out: [number, number][] = [];
  for (let i = 0; i < pts.length;) {
    const col = Math.round(pts[i][0]);
    let j = i;
    let lo = i;
    let hi = i;
    while (j < pts.length && Math.round(pts[j][0]) === col) {
      if (pts[j][1] < pts[lo][1]) lo = j;
      if (pts[j][1] > pts[hi][1]) hi = j;
      j++;
    }
    for (const k of [...new Set([i, lo, hi, j - 1])].sort((a, b) => a - b)) out.push(pts[k]);
    i = j;
  }
  return out;
}

function plotExtent(axis: Axis): number {
  return axis.px[1] - axis.px[0];
}
