/**
 * `npm run notebooks`: executes every notebook in notebooks/ headless with the tunelab kernel, exports
 * each to HTML and checks in headless Chromium that every chart shows: drawn by Plotly, or as its static
 * SVG picture (what exported HTML shows without a Jupyter server to load plotly.js from).
 *
 *   npx tsx notebooks/run.ts [--full] [--out DIR] [name-filter]
 *
 * Quick mode (default) sets TUNELAB_QUICK=1, which the notebooks read to shorten training; the code path
 * is the real one. Fails (exit 1) on any cell error, on a notebook without charts or with a chart that shows
 * nothing, on an executed notebook that embeds plotly.js more than once, or when Jupyter/Chromium are missing
 * (the message names the Debian packages).
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { installKernelSpec } from '../src/kernel/spec';
import { MARK_PICTURES, chartStates } from '../test/viz/helpers';

const here = __dirname;
const args = process.argv.slice(2);
const full = args.includes('--full');
const outIdx = args.indexOf('--out');
const out = path.resolve(outIdx >= 0 ? args[outIdx + 1] : fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-notebooks-')));
const filter = args.find((a, i) => !a.startsWith('--') && args[i - 1] !== '--out');
const jupyter = '/usr/bin/jupyter';
const chromium = '/usr/bin/chromium';

function fail(message: string): never {
  console.error(`notebooks: ${message}`);
  process.exit(1);
}

if (!fs.existsSync(jupyter)) fail('Jupyter is missing: apt-get install -y jupyter-nbconvert jupyter-client python3-nbclient python3-ipykernel');
if (!fs.existsSync(chromium)) fail('Chromium is missing (needed to check that charts render): apt-get install -y chromium');

// A private kernelspec, so the run never depends on (or changes) the user's Jupyter setup.
const prefix = path.join(out, 'jupyter');
installKernelSpec({ prefix });
const home = path.join(out, 'home');
fs.mkdirSync(home, { recursive: true });
const env = {
  ...process.env, JUPYTER_PATH: path.join(prefix, 'share', 'jupyter'), TUNELAB_QUICK: full ? '0' : '1',
  HOME: home, XDG_CONFIG_HOME: path.join(home, '.config'), XDG_CACHE_HOME: path.join(home, '.cache'),
};

function run(cmd: string, argv: string[], timeoutMs: number) {
  const r = spawnSync(cmd, argv, { env, encoding: 'utf8', timeout: timeoutMs, maxBuffer: 256 * 1024 * 1024 });
  return { ok: r.status === 0, output: `${r.stdout ?? ''}${r.stderr ?? ''}`, stdout: r.stdout ?? '' };
}

const notebooks = fs.readdirSync(here).filter((f) => f.endsWith('.ipynb') && (!filter || f.includes(filter))).sort();
if (notebooks.length === 0) fail(`no notebooks${filter ? ` matching "${filter}"` : ''} in ${here}`);
const results: { notebook: string; seconds: number; charts: number }[] = [];
for (const nb of notebooks) {
  const started = Date.now();
  const executed = path.join(out, nb);
  const exec = run(jupyter, ['nbconvert', '--to', 'notebook', '--execute', '--ExecutePreprocessor.kernel_name=tunelab',
    `--ExecutePreprocessor.timeout=${full ? 7200 : 900}`, '--output-dir', out, path.join(here, nb)], (full ? 7500 : 1200) * 1000);
  if (!exec.ok) fail(`${nb}: execution failed\n${exec.output.split('\n').slice(-40).join('\n')}`);
  const bundles = fs.readFileSync(executed, 'utf8').split('inlined by tunelab').length - 1;
  if (bundles > 1) fail(`${nb}: the executed notebook embeds plotly.js ${bundles} times`);
  const html = run(jupyter, ['nbconvert', '--to', 'html', '--output-dir', out, executed], 120_000);
  if (!html.ok) fail(`${nb}: HTML export failed\n${html.output}`);
  const page = executed.replace(/\.ipynb$/, '.html');
  // A script that marks decoded static pictures, so the DOM dump tells them from broken ones.
  fs.writeFileSync(page, fs.readFileSync(page, 'utf8').replace(/<\/body>/i, `${MARK_PICTURES}</body>`));
  const dom = run(chromium, ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync', `--user-data-dir=${fs.mkdtempSync(path.join(out, 'chromium-'))}`,
    '--virtual-time-budget=10000', '--dump-dom', `file://${page}`], 120_000);
  const states = chartStates(dom.stdout);
  const blank = states.flatMap((s, i) => (s === 'none' ? [i + 1] : []));
  if (states.length === 0) fail(`${nb}: no chart in ${page}`);
  if (blank.length > 0) fail(`${nb}: chart(s) ${blank.join(', ')} of ${states.length} show nothing in ${page}`);
  const charts = states.length;
  const plotly = states.filter((s) => s === 'plotly').length;
  results.push({ notebook: nb, seconds: Math.round((Date.now() - started) / 1000), charts });
  console.log(`ok ${nb}: ${charts} charts shown (${plotly} by Plotly, ${charts - plotly} as static pictures), ${results.at(-1)!.seconds}s (${page})`);
}
console.log(`${results.length} passed, 0 failed`);
