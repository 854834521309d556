/**
 * Charts in a real classic Notebook server (Debian's jupyter-notebook 6.4) driven in headless Chromium: a chart
 * cell renders, the page reloads on the same kernel, the saved chart and a chart cell run after the reload
 * render (plotly.js fetched from the kernelspec: no output carries it), a live chart redraws one output in place
 * through its updates, and the same outputs in an untrusted
 * notebook show the static picture. Skipped when jupyter-notebook or Chromium are missing.
 */
import { strict as assert } from 'assert';
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { Browser, CHROMIUM } from './chromium';
import { missingJupyter, skipWith, tempKernel, TempKernel } from './jupyter';

const NOTEBOOK = '/usr/bin/jupyter-notebook';

function notebook(cells: string[]): string {
  return JSON.stringify({
    cells: cells.map((source) => ({ cell_type: 'code', execution_count: null, metadata: {}, outputs: [], source })),
    metadata: { kernelspec: { name: 'tunelab', display_name: 'TypeScript (tunelab)', language: 'typescript' } },
    nbformat: 4, nbformat_minor: 5,
  });
}

/** Starts the notebook server on a free port (it retries upward) and resolves with its base URL. */
function startServer(k: TempKernel): Promise<{ proc: ChildProcess; url: string; log: () => string }> {
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  const proc = spawn(NOTEBOOK, ['--no-browser', '--ip=127.0.0.1', `--port=${port}`, '--port-retries=50', `--notebook-dir=${k.dir}`,
    '--NotebookApp.token=', '--NotebookApp.password=', '--NotebookApp.disable_check_xsrf=True', ...(process.getuid?.() === 0 ? ['--allow-root'] : [])], { cwd: k.dir, env: k.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`notebook server did not start:\n${log}`)), 60_000);
    const onData = (d: Buffer) => {
      log += d.toString();
      const m = /(http:\/\/127\.0\.0\.1:\d+\/)/.exec(log);
      if (m) {
        clearTimeout(timer);
        resolve({ proc, url: m[1], log: () => log });
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    proc.on('exit', (code) => reject(new Error(`notebook server exited (${code}):\n${log}`)));
  });
}

describe('kernel: charts in classic Notebook across a page reload (Chromium)', function () {
  this.timeout(240_000);
  let k: TempKernel | undefined;
  let server: { proc: ChildProcess; url: string; log: () => string } | undefined;
  let browser: Browser | undefined;

  before(async function () {
    const missing = missingJupyter(['notebook']);
    if (missing || !fs.existsSync(NOTEBOOK)) skipWith(this, missing ?? `needs ${NOTEBOOK} (apt-get install -y jupyter-notebook)`);
    if (!CHROMIUM) skipWith(this, 'needs /usr/bin/chromium (apt-get install -y chromium)');
    k = tempKernel();
    fs.writeFileSync(path.join(k.dir, 'charts.ipynb'), notebook([
      "import { lossChart } from 'tunelab';\nlossChart({ step: [1, 2, 3], loss: [3, 2, 1] }, { title: 'before reload' }).show();",
      "lossChart({ step: [1, 2], loss: [2, 1] }, { title: 'after reload' }).show();",
      // A live chart following a stand-in trainer (its events only): updates redraw one output in place.
      [
        "import { liveLossChart } from 'tunelab';",
        'const listeners: Record<string, ((e: any) => void)[]> = {};',
        'const emitter = { on: (ev: string, f: (e: any) => void) => { (listeners[ev] = listeners[ev] || []).push(f); return () => {}; } };',
        'const emit = (ev: string, e: any) => (listeners[ev] || []).forEach((f) => f(e));',
        'liveLossChart(emitter as any, { throttleMs: 0 });',
        'const history = [1, 2, 3, 4, 5].map((step) => ({ step, loss: 6 - step, lr: 0.001 }));',
        'for (const m of history) { emit("step", m); await new Promise((r) => setTimeout(r, 300)); }',
        'emit("end", { steps: 5, history, evals: [], stoppedEarly: false });',
      ].join('\n'),
    ]));
    server = await startServer(k);
    browser = await Browser.launch();
  });
  after(async () => {
    // The server first: nothing that follows may keep it (and its kernels) alive.
    server?.proc.kill('SIGTERM');
    try {
      await browser?.close();
    } finally {
      k?.cleanup();
    }
  });

  const connected = 'window.Jupyter && Jupyter.notebook && Jupyter.notebook.kernel && Jupyter.notebook.kernel.is_connected()';
  const plotted = (n: number) => `document.querySelectorAll('.tunelab-chart .main-svg').length > 0 && Array.from(document.querySelectorAll('.tunelab-chart')).filter((d) => d.querySelector('.main-svg')).length === ${n}`;

  it('a chart renders, and after a reload on the same kernel the saved chart and a newly run one render', async () => {
    const b = browser!;
    await b.goto(`${server!.url}notebooks/charts.ipynb`);
    await b.waitFor(connected, 'the kernel to connect', 60_000);
    await b.eval('Jupyter.notebook.get_cell(0).execute()');
    await b.waitFor(plotted(1), 'the first chart', 90_000);
    const kernel = await b.eval<string>('Jupyter.notebook.kernel.id');
    await b.eval('Jupyter.notebook.save_notebook().then(() => true)');

    await b.eval('window.beforeReload = true');
    await b.send('Page.reload');
    await b.waitFor(`!window.beforeReload && ${connected}`, 'the kernel to reconnect after the reload', 60_000);
    assert.equal(await b.eval<string>('Jupyter.notebook.kernel.id'), kernel, 'same kernel');
    await b.waitFor(plotted(1), 'the saved chart after the reload');
    await b.eval('Jupyter.notebook.get_cell(1).execute()');
    await b.waitFor(plotted(2), 'a chart run after the reload', 60_000);
    await b.eval('Jupyter.notebook.get_cell(2).execute()');
    const live = "Array.from(Jupyter.notebook.get_cell(2).output_area.element[0].querySelectorAll('.tunelab-chart .gtitle')).map((e) => e.textContent)";
    await b.waitFor(`JSON.stringify(${live}) === '["Training loss · step 5"]'`, 'the live chart to reach step 5 in one output', 60_000);
    const fetched = await b.eval<string[]>("performance.getEntriesByType('resource').map((e) => e.name).filter((n) => n.includes('plotly'))");
    assert.deepEqual(fetched, [`${server!.url}kernelspecs/tunelab/plotly.min.js`], 'plotly.js comes once from the kernelspec');
    const saved = fs.readFileSync(path.join(k!.dir, 'charts.ipynb'), 'utf8');
    assert.doesNotMatch(saved, /inlined by tunelab/, 'no plotly.js bundle in the saved notebook');
  });

  it('the same outputs in an untrusted notebook show the static picture', async () => {
    const b = browser!;
    const saved = JSON.parse(fs.readFileSync(path.join(k!.dir, 'charts.ipynb'), 'utf8')) as { metadata: Record<string, unknown> };
    saved.metadata.copied = true; // another digest: the server's notary no longer vouches for it
    fs.writeFileSync(path.join(k!.dir, 'untrusted.ipynb'), JSON.stringify(saved));
    await b.goto(`${server!.url}notebooks/untrusted.ipynb`);
    await b.waitFor("window.Jupyter && Jupyter.notebook && Jupyter.notebook._fully_loaded", 'the notebook to load', 60_000);
    assert.equal(await b.eval('Jupyter.notebook.trusted'), false);
    await b.waitFor("Array.from(document.querySelectorAll('.output_html img')).filter((i) => i.complete && i.naturalWidth === 800 && i.src.startsWith('data:image/svg+xml')).length === 1", 'the static picture');
    assert.equal(await b.eval("document.querySelectorAll('.main-svg').length"), 0, 'no script ran');
  });
});
