/**
 * A Plotly figure that shows itself in a notebook, renders to an HTML fragment, or saves as a
 * self-contained HTML file (plotly.js inlined, no network needed).
 *
 * In a notebook each chart is one output carrying every form a front end may pick: Plotly's own mime type
 * (VS Code, JupyterLab with its plotly renderer), live HTML (classic Notebook: a static picture that a
 * script replaces by the Plotly chart, loading plotly.js from the kernelspec when the page lacks it), a
 * static SVG (nbconvert, viewers, untrusted notebooks) and a text summary.
 */
import * as fs from 'fs';
import * as path from 'path';
import { inspect } from 'util';
import { DisplaySink, MimeBundle, displaySink, mimeBundleKey } from './display';
import { escapeHtml, jsonForScript, plotlyPlain, randomId } from './html';
import { plotlyScript } from './plotly';
import { chartSvg } from './svg';
import type { JsonObject, PlotSpec } from './plot-spec';

export type { JsonValue, JsonObject, PlotSpec } from './plot-spec';

/** Size of a chart's `<div>`. */
export interface ChartSize {
  /** CSS height in pixels (default: `layout.height`, else 420). */
  height?: number;
}

/**
 * Offline-safe defaults: no Plotly logo (a link to plotly.com) and no cloud export button.
 */
const CONFIG: JsonObject = { responsive: true, displaylogo: false, showLink: false, modeBarButtonsToRemove: ['sendDataToCloud'] };

/**
 * A chart. Build one with a ready-made function (`lossChart`, `paretoChart`, …) or from a raw Plotly spec.
 *
 * @example
 * const c = new Chart({ data: [{ type: 'scatter', x: [1, 2, 3], y: [3, 1, 2] }], layout: { title: { text: 'demo' } } });
 * c.show();                 // notebook: inline chart; script: a one-line summary
 * c.save('runs/demo.html'); // standalone file, opens offline
 */
export class Chart {
  readonly spec: PlotSpec;

  constructor(spec: PlotSpec, readonly size: ChartSize = {}) {
    this.spec = { data: spec.data, layout: spec.layout, config: { ...CONFIG, ...spec.config } };
  }

  /** The title given in the layout, or `chart`. */
  get title(): string {
    return titleOf(this.spec);
  }

  /** The Plotly spec, e.g. for `JSON.stringify(chart)`. */
  toJSON(): PlotSpec {
    return this.spec;
  }

  /**
   * An HTML fragment: a `<div>` holding the static picture and a script that replaces it by the Plotly chart
   * once plotly.js is there (on the page, later on it, or fetched from the kernelspec on a Jupyter server).
   * Where scripts do not run, the picture stays.
   */
  html(): string {
    return chartHtml(this.spec, this.height(), this.svg());
  }

  /** The static picture (see {@link chartSvg}). */
  svg(): string {
    return chartSvg(this.spec, { height: this.height() });
  }

  /** A one-line text summary (what a terminal shows): title and each trace's length and last value. */
  text(): string {
    const parts = this.spec.data.map((t, i) => {
      const name = typeof t.name === 'string' ? plotlyPlain(t.name) : `trace ${i + 1}`;
      if (t.type === 'heatmap' && Array.isArray(t.z)) {
        const cols = Array.isArray(t.z[0]) ? t.z[0].length : 0;
        return `${name} (heatmap ${t.z.length}×${cols})`;
      }
      const ys = Array.isArray(t.y) ? t.y : [];
      const last = ys.at(-1);
      return typeof last === 'number' ? `${name} (${ys.length} points, last ${formatNumber(last)})` : `${name} (${ys.length} points)`;
    });
    return `[${plotlyPlain(this.title)}] ${parts.join('; ')}`;
  }

  /**
   * The outputs a notebook receives, richest first: the Plotly figure as JSON, the live HTML, the static
   * SVG and the text summary. The SVG is drawn once and shared by the HTML and the image. `picture: false`
   * leaves the SVG out (live views redraw several times a second; their last render carries it).
   */
  mimeBundle(opts: { picture?: boolean } = {}): MimeBundle {
    const svg = opts.picture === false ? undefined : this.svg();
    return {
      'application/vnd.plotly.v1+json': JSON.parse(JSON.stringify(this.spec)) as PlotSpec,
      'text/html': chartHtml(this.spec, this.height(), svg ?? null),
      ...(svg ? { 'image/svg+xml': svg } : {}),
      'text/plain': this.text(),
    };
  }

  /** The rich display protocol: a trailing `chart` in a notebook cell shows the chart. */
  [mimeBundleKey](): MimeBundle {
    return this.mimeBundle();
  }

  /**
   * Shows the chart: in a notebook, one output with every form of it (see {@link mimeBundle}); in a script,
   * prints {@link text} (use {@link save} for the picture). Returns nothing so a trailing `chart.show()` in a
   * cell does not also print the object.
   */
  show(sink: DisplaySink = displaySink()): void {
    sink.show(this.mimeBundle());
  }

  /** A complete HTML page with plotly.js inlined: opens offline, in any browser. */
  standaloneHtml(): string {
    return standaloneHtml([this], this.title);
  }

  /**
   * Writes {@link standaloneHtml} to `file` (parent folders are created) and returns its absolute path.
   *
   * @example
   * lossChart(result).save('runs/x/loss.html');
   */
  save(file: string): string {
    return saveCharts(file, [this], this.title);
  }

  private height(): number {
    const h = this.size.height ?? this.spec.layout.height;
    return typeof h === 'number' ? h : 420;
  }

  /** Keeps printing a chart (console.log, stock tslab) to one line instead of the whole spec. */
  [inspect.custom](): string {
    return `Chart ${JSON.stringify(this.title)} (${this.spec.data.length} traces)`;
  }
}

function formatNumber(v: number): string {
  return Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(3) : String(+v.toPrecision(4));
}

/** The kernelspec name the kernel runs under (set in kernel.json by `tunelab kernel install`). */
function kernelName(): string {
  return process.env.TUNELAB_KERNEL_NAME || 'tunelab';
}

/**
 * The fragment for a spec. The spec is on its own line (`var spec = …;`) and its JSON escapes `<`, so no
 * data can close the script. The static picture (`svg`; null: none) is an `<img>` with a data URL: notebook sanitizers keep
 * it (they drop inline `<svg>`), so untrusted notebooks show it too. When the page has no `window.Plotly`,
 * the script waits for a bundle later on the page (saved files) and, on a Jupyter server, fetches
 * `<base>/kernelspecs/<kernel>/plotly.min.js` once per page (what a reloaded notebook needs); elsewhere
 * (exported HTML, viewers) the picture stays.
 */
export function chartHtml(spec: PlotSpec, height = 420, svg: string | null = chartSvg(spec, { height })): string {
  const id = randomId('tl-chart');
  const script = [
    '(function () {',
    `var id = ${JSON.stringify(id)}, height = ${height}, kernel = ${JSON.stringify(kernelName())}, w = window;`,
    `var spec = ${jsonForScript(spec)};`,
    'function draw() {',
    '  var el = document.getElementById(id);',
    "  if (!el || !w.Plotly || el.getAttribute('data-drawn')) return;",
    "  el.setAttribute('data-drawn', '1'); el.innerHTML = ''; el.style.height = height + 'px';",
    '  w.Plotly.newPlot(el, spec.data, spec.layout, spec.config);',
    '}',
    'if (w.Plotly) { draw(); return; }',
    "w.addEventListener('tunelab:plotly', draw);",
    "var base = document.body && document.body.getAttribute('data-base-url');",
    "var config = document.getElementById('jupyter-config-data');",
    'if (base === null && config) { try { base = JSON.parse(config.textContent).baseUrl; } catch (e) {} }',
    "if (typeof base !== 'string' || location.protocol.indexOf('http') !== 0 || !w.fetch) return;",
    'if (!w.__tunelabPlotly) {',
    "  var url = base.replace(/\\/?$/, '/') + 'kernelspecs/' + encodeURIComponent(kernel) + '/plotly.min.js';",
    "  w.__tunelabPlotly = fetch(url, { credentials: 'same-origin' })",
    "    .then(function (r) { if (!r.ok) throw new Error(url + ': HTTP ' + r.status); return r.text(); })",
    "    .then(function (src) { if (!w.Plotly) new Function('module', 'exports', 'define', src).call(w); });",
    '}',
    "w.__tunelabPlotly.then(draw, function (e) { w.__tunelabPlotly = null; console.warn('tunelab: plotly.js not loaded, the static chart stays', e); });",
    '})();',
  ].join('\n');
  const picture = svg === null
    ? `<span style="color:#888;font:12px sans-serif">chart: drawn by plotly.js (no static picture in this update)</span>`
    : `<img class="tunelab-static" src="data:image/svg+xml;base64,${Buffer.from(svg).toString('base64')}" alt="${escapeHtml(plotlyPlain(titleOf(spec)))}" style="max-width:100%;height:auto">`;
  return `<div id="${id}" class="tunelab-chart" style="width:100%">${picture}</div>\n<script type="text/javascript">\n${script}\n</script>`;
}

function titleOf(spec: PlotSpec): string {
  const t = spec.layout.title;
  const text = typeof t === 'string' ? t : t && typeof t === 'object' && !Array.isArray(t) ? (t as JsonObject).text : undefined;
  return typeof text === 'string' ? text : 'chart';
}

/**
 * One HTML page holding several charts and a single inlined plotly.js.
 *
 * @example
 * fs.writeFileSync('report.html', standaloneHtml([lossChart(r), paretoChart(points)], 'run 7'));
 */
export function standaloneHtml(charts: readonly Chart[], title = 'tunelab'): string {
  return [
    '<!DOCTYPE html>',
    '<html><head><meta charset="utf-8">',
    `<title>${escapeHtml(title)}</title>`,
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    '</head><body style="margin:16px;font-family:sans-serif">',
    plotlyScript(),
    ...charts.map((c) => c.html()),
    '</body></html>',
    '',
  ].join('\n');
}

/** Writes several charts into one standalone HTML file; returns its absolute path. */
export function saveCharts(file: string, charts: readonly Chart[], title?: string): string {
  const abs = path.resolve(file);
  fs.mkdirSync(path.dirname(abs), { recursive: true });
  fs.writeFileSync(abs, standaloneHtml(charts, title));
  return abs;
}
