/**
 * A Plotly figure that shows itself in a notebook, renders to an HTML fragment, or saves as a
 * self-contained HTML file (plotly.js inlined, no network needed).
 */
import * as fs from 'fs';
import * as path from 'path';
import { inspect } from 'util';
import { DisplaySink, MimeBundle, displaySink } from './display';
import { escapeHtml, jsonForScript, randomId } from './html';
import { loadPlotly, plotlyScript } from './plotly';

/** A JSON value as Plotly reads it. */
export type JsonValue = string | number | boolean | null | readonly JsonValue[] | JsonObject;
/** A JSON object (a Plotly trace, layout or config). */
export interface JsonObject {
  [key: string]: JsonValue | undefined;
}

/** A Plotly figure: the arguments of `Plotly.newPlot(div, data, layout, config)`. */
export interface PlotSpec {
  data: JsonObject[];
  layout: JsonObject;
  config?: JsonObject;
}

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
    const t = this.spec.layout.title;
    const text = typeof t === 'string' ? t : t && typeof t === 'object' && !Array.isArray(t) ? (t as JsonObject).text : undefined;
    return typeof text === 'string' ? text : 'chart';
  }

  /** The Plotly spec, e.g. for `JSON.stringify(chart)`. */
  toJSON(): PlotSpec {
    return this.spec;
  }

  /**
   * An HTML fragment: a `<div>` and a script that draws into it once `window.Plotly` exists (it waits,
   * because the bundle's output may be later in the page or still loading). Needs plotly.js on the page:
   * use {@link show} in notebooks and {@link standaloneHtml} for files.
   */
  html(): string {
    return chartHtml(this.spec, this.height());
  }

  /** A one-line text summary (what a terminal shows): title and each trace's length and last value. */
  text(): string {
    const parts = this.spec.data.map((t, i) => {
      const name = typeof t.name === 'string' ? plainText(t.name) : `trace ${i + 1}`;
      if (t.type === 'heatmap' && Array.isArray(t.z)) {
        const cols = Array.isArray(t.z[0]) ? t.z[0].length : 0;
        return `${name} (heatmap ${t.z.length}×${cols})`;
      }
      const ys = Array.isArray(t.y) ? t.y : [];
      const last = ys.at(-1);
      return typeof last === 'number' ? `${name} (${ys.length} points, last ${formatNumber(last)})` : `${name} (${ys.length} points)`;
    });
    return `[${plainText(this.title)}] ${parts.join('; ')}`;
  }

  /** The outputs a notebook receives: HTML plus the text summary. */
  mimeBundle(): MimeBundle {
    return { 'text/html': this.html(), 'text/plain': this.text() };
  }

  /**
   * Shows the chart: in a notebook, sends plotly.js first if this kernel has not yet, then the chart; in a
   * script, prints {@link text} (use {@link save} for the picture). Returns nothing so a trailing
   * `chart.show()` in a tslab cell does not also print the object.
   */
  show(sink: DisplaySink = displaySink()): void {
    loadPlotly({ sink });
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

  /** Keeps tslab's printing of a trailing `chart` expression to one line instead of the whole spec. */
  [inspect.custom](): string {
    return `Chart ${JSON.stringify(this.title)} (${this.spec.data.length} traces)`;
  }
}

/** Plotly's pseudo-HTML as plain text (the entities `plotlyText` writes, tags dropped). */
function plainText(s: string): string {
  return s.replace(/<[^>]*>/g, '').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}

function formatNumber(v: number): string {
  return Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(3) : String(+v.toPrecision(4));
}

/**
 * The fragment for a spec. The spec is on its own line (`var spec = …;`) and its JSON escapes `<`, so
 * no data can close the script. The placeholder text is what untrusted notebooks (scripts off) show.
 */
export function chartHtml(spec: PlotSpec, height = 420): string {
  const id = randomId('tl-chart');
  const script = [
    '(function () {',
    `var id = ${JSON.stringify(id)};`,
    `var spec = ${jsonForScript(spec)};`,
    'function draw() {',
    '  var el = document.getElementById(id);',
    "  if (!el || el.getAttribute('data-drawn')) return;",
    "  el.setAttribute('data-drawn', '1'); el.innerHTML = '';",
    '  window.Plotly.newPlot(el, spec.data, spec.layout, spec.config);',
    '}',
    'if (window.Plotly) { draw(); return; }',
    "window.addEventListener('tunelab:plotly', draw);",
    'var tries = 0, timer = setInterval(function () {',
    '  var el = document.getElementById(id);',
    '  if (window.Plotly) { clearInterval(timer); draw(); }',
    '  else if (!el) clearInterval(timer);',
    "  else if (++tries > 300) { clearInterval(timer); el.textContent = 'plotly.js is not on this page: run tl.viz.loadPlotly({ force: true }) and re-run this cell.'; }",
    '}, 100);',
    '})();',
  ].join('\n');
  return (
    `<div id="${id}" class="tunelab-chart" style="width:100%;height:${height}px">` +
    `<span style="color:#888;font:12px sans-serif">chart: rendered by a script (trust the notebook or run the cell)</span></div>\n` +
    `<script type="text/javascript">\n${script}\n</script>`
  );
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
