/**
 * `npm run notebooks`: executes every notebook in notebooks/ headless with the tunelab kernel, exports
 * each to HTML and checks in headless Chromium that its Plotly charts rendered.
 *
 *   npx tsx notebooks/run.ts [--full] [--out DIR] [name-filter]
 *
 * Quick mode (default) sets TUNELAB_QUICK=1, which the notebooks read to shorten training; the code path
 * is the real one. Fails (exit 1) on any cell error, on a notebook without rendered charts, or when
 * Jupyter/Chromium are missing (the message names the Debian packages).
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { installKernelSpec } from '../src/cli-kernel';

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
  const html = run(jupyter, ['nbconvert', '--to', 'html', '--output-dir', out, executed], 120_000);
  if (!html.ok) fail(`${nb}: HTML export failed\n${html.output}`);
  const page = executed.replace(/\.ipynb$/, '.html');
  const dom = run(chromium, ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync', `--user-data-dir=${fs.mkdtempSync(path.join(out, 'chromium-'))}`,
    '--virtual-time-budget=10000', '--dump-dom', `file://${page}`], 120_000);
  const charts = (dom.stdout.match(/class="main-svg"/g) ?? []).length;
  if (charts === 0) fail(`${nb}: no Plotly chart rendered in ${page}`);
  results.push({ notebook: nb, seconds: Math.round((Date.now() - started) / 1000), charts });
  console.log(`ok ${nb}: ${charts} chart layers rendered, ${results.at(-1)!.seconds}s (${page})`);
}
console.log(`${results.length} passed, 0 failed`);
