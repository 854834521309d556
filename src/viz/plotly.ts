/**
 * plotly.js, offline. Saved HTML files inline the bundle once. Notebooks carry no bundle: `tunelab kernel
 * install` copies it into the kernelspec ({@link installPlotly}), from where a chart's script fetches it on
 * a Jupyter server when the page lacks `window.Plotly` (a reloaded notebook); elsewhere charts show their
 * static SVG. {@link loadPlotly} still inlines the bundle into a notebook on request. No CDN.
 */
import * as fs from 'fs';
import * as path from 'path';
import { DisplaySink, displaySink } from './display';

/** A plotly.js bundle found on disk. */
export interface PlotlyBundle {
  /** `plotly.js-dist` (full, ~10 MB) is preferred when installed; `plotly.js-dist-min` ships with tunelab. */
  package: 'plotly.js-dist' | 'plotly.js-dist-min';
  version: string;
  /** Absolute path of the bundle file. */
  file: string;
}

const PACKAGES = ['plotly.js-dist', 'plotly.js-dist-min'] as const;

/**
 * Finds the plotly.js bundle: `plotly.js-dist` if the user installed it, else `plotly.js-dist-min`.
 * Looks from the working directory (the notebook's project) and from tunelab's own folder.
 *
 * @example
 * locatePlotly() // { package: 'plotly.js-dist-min', version: '4.1.2', file: '/…/plotly.min.js' }
 */
export function locatePlotly(paths: readonly string[] = [process.cwd(), __dirname]): PlotlyBundle {
  for (const pkg of PACKAGES) {
    let manifest: string;
    try {
      manifest = require.resolve(`${pkg}/package.json`, { paths: [...paths] });
    } catch {
      continue; // not installed: try the next one
    }
    const meta = JSON.parse(fs.readFileSync(manifest, 'utf8')) as { version?: string; main?: string };
    const file = path.join(path.dirname(manifest), meta.main ?? (pkg === 'plotly.js-dist' ? 'plotly.js' : 'plotly.min.js'));
    if (fs.existsSync(file)) return { package: pkg, version: meta.version ?? 'unknown', file };
  }
  throw new Error('plotly.js not found: install plotly.js-dist-min (a tunelab dependency) or plotly.js-dist');
}

// The bundle text is 5–10 MB: read it once per process.
let cached: { file: string; script: string } | undefined;

/**
 * Makes bundle text safe inside an inline `<script>`: `</script` would end the element early, and
 * `<!--` followed by `<script` would switch the HTML parser into a mode where the real `</script>` is
 * ignored. `<\/` and `<\!` mean the same inside the JS strings and regexes where such text occurs.
 */
export function scriptSafe(js: string): string {
  let out = js.replace(/<\/(script)/gi, '<\\/$1');
  if (/<script/i.test(out)) out = out.replace(/<!--/g, '<\\!--');
  return out;
}

/**
 * The guarded `<script>` that defines `window.Plotly` (skipped when the page already has it) and tells
 * waiting charts. `module`/`exports`/`define` are shadowed so the UMD wrapper always sets the global, even
 * on pages with RequireJS (classic notebook).
 */
export function plotlyScript(bundle: PlotlyBundle = locatePlotly()): string {
  if (cached?.file !== bundle.file) {
    const src = scriptSafe(fs.readFileSync(bundle.file, 'utf8'));
    const script =
      `<script type="text/javascript">/* ${bundle.package} ${bundle.version}, inlined by tunelab */\n` +
      `if (!window.Plotly) {(function (module, exports, define) {\n${src}\n}).call(window);}\n` +
      `try { window.dispatchEvent(new Event('tunelab:plotly')); } catch (e) {}\n</script>`;
    cached = { file: bundle.file, script };
  }
  return cached.script;
}

// Sinks that have received the bundle. The auto-detected kernel sink lives as long as the kernel process,
// so this is the per-process flag; a restarted kernel starts empty and sends the bundle again.
const loaded = new WeakSet<DisplaySink>();

/** The file name of the bundle in a kernelspec folder (what chart scripts fetch). */
export const KERNELSPEC_PLOTLY = 'plotly.min.js';

/**
 * Copies the plotly.js bundle into a kernelspec folder, where Jupyter serves it at
 * `<base>/kernelspecs/<name>/plotly.min.js`. Returns the copied file.
 */
export function installPlotly(kernelSpecDir: string, bundle: PlotlyBundle = locatePlotly()): string {
  const file = path.join(kernelSpecDir, KERNELSPEC_PLOTLY);
  fs.copyFileSync(bundle.file, file);
  return file;
}

/**
 * Inlines the plotly.js bundle (~4.8 MB) into this cell's output, once per kernel unless `force`, so that
 * an exported or viewed notebook has interactive charts without a Jupyter server. Charts do not need it:
 * they show a static picture there, and fetch plotly.js from the kernelspec on a server. Returns true
 * when it sent the bundle.
 *
 * @example
 * loadPlotly();   // in the first cell of a notebook meant to be shared as HTML
 */
export function loadPlotly(opts: { sink?: DisplaySink; force?: boolean } = {}): boolean {
  const sink = opts.sink ?? displaySink();
  if (sink.kind !== 'notebook' || (loaded.has(sink) && !opts.force)) return false;
  sink.show({ 'text/html': plotlyScript() });
  loaded.add(sink);
  return true;
}

/** Forgets that a sink received the bundle, so the next chart sends it again. */
export function resetPlotly(sink: DisplaySink = displaySink()): void {
  loaded.delete(sink);
}
