/**
 * Renders charts in headless Chromium with the network off: Plotly's `main-svg` elements prove the inlined
 * bundle works offline; decoded `<img>` sizes prove the static pictures show where Plotly is absent.
 * Skipped when Chromium is not installed.
 */
import { strict as assert } from 'assert';
import { execFile } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { RecordingSink, attentionHeatmap, liveLossChart, loadPlotly, lossChart, paretoChart, peftChart, scoreDistributionChart } from '../../src/viz';
import { FakeTrainer, MARK_PICTURES, chartStates, metrics } from './helpers';

const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => fs.existsSync(p));

/** The DOM after scripts ran, as headless Chromium dumps it. */
function dumpDom(file: string, tmp: string): Promise<string> {
  const home = fs.mkdtempSync(path.join(tmp, 'home-'));
  const args = [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', `--user-data-dir=${fs.mkdtempSync(path.join(tmp, 'profile-'))}`,
    '--virtual-time-budget=5000', '--dump-dom', `file://${file}`,
  ];
  const env = { ...process.env, HOME: home, XDG_CONFIG_HOME: home, XDG_CACHE_HOME: home, XDG_DATA_HOME: home };
  return new Promise((resolve, reject) => {
    execFile(CHROMIUM!, args, { env, timeout: 90_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`chromium failed: ${err.message}\n${stderr.slice(-2000)}`));
      else resolve(stdout);
    });
  });
}

/** For each chart div in the dumped DOM, whether Plotly drew into it. */
const drawn = (dom: string) => chartStates(dom).map((s) => s === 'plotly');

describe('viz rendering in headless Chromium', function () {
  let tmp: string;
  before(function () {
    if (!CHROMIUM) {
      console.log('    (skipped: no /usr/bin/chromium; install Debian\'s `chromium` to run the render check)');
      this.skip();
    }
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-render-'));
  });
  after(() => tmp && fs.rmSync(tmp, { recursive: true, force: true }));

  it('a saved chart renders offline', async () => {
    const file = lossChart({ history: [1, 2, 3, 4].map((s) => metrics(s, 4)), evals: [{ step: 4, evalLoss: 2 }] }).save(path.join(tmp, 'loss.html'));
    const dom = await dumpDom(file, tmp);
    assert.ok((dom.match(/class="main-svg"/g) ?? []).length > 0, 'no Plotly svg in the rendered page');
    assert.deepEqual(drawn(dom), [true]);
  });

  it('notebook-style outputs render: a chart before the bundle waits for it, RequireJS on the page does not hide Plotly', async () => {
    const sink = new RecordingSink();
    loadPlotly({ sink }); // the opt-in bundle, after the first chart on the page
    const trainer = new FakeTrainer({ maxSteps: 3 });
    liveLossChart(trainer, { sink, throttleMs: 0 });
    for (let s = 1; s <= 3; s++) trainer.step(metrics(s, 3));
    trainer.end();
    paretoChart([{ label: 'a', target: 1, general: 2 }, { label: 'b', target: 2, general: 1 }]).show(sink);
    // An exported notebook keeps only the last render of a live display.
    const live = sink.messages.filter((m) => m.displayId);
    const outputs = [...sink.messages.filter((m) => !m.displayId), live.at(-1)!].map((m) => m.data['text/html']);
    const early = attentionHeatmap({ tokens: ['a', '</script>'], weights: [[1, 0], [0.5, 0.5]] }).html();
    const page = [
      '<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>',
      '<script>window.define = function () {}; window.define.amd = {};</script>', // classic notebook has RequireJS
      early,
      ...outputs.map((h) => `<div class="output_html">${h}</div>`),
      '</body></html>',
    ].join('\n');
    const file = path.join(tmp, 'notebook.html');
    fs.writeFileSync(file, page);
    const dom = await dumpDom(file, tmp);
    assert.deepEqual(drawn(dom), [true, true, true]);
  });

  it('without plotly.js (exported notebook, viewer) every chart shows its static picture', async () => {
    const sink = new RecordingSink();
    lossChart({ history: [1, 2, 3].map((s) => metrics(s, 3)) }).show(sink);
    peftChart([{ method: 'full', trainableParams: 1000, loss: 2 }, { method: 'lora', trainableParams: 10, loss: 2.2 }]).show(sink);
    scoreDistributionChart({ chosenScores: [1, 2, 3], rejectedScores: [0, 1] }).show(sink);
    attentionHeatmap({ tokens: ['a', '</script>'], weights: [[1, 0], [0.5, 0.5]] }).show(sink);
    const page = ['<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>', ...sink.html(), MARK_PICTURES, '</body></html>'].join('\n');
    const file = path.join(tmp, 'static.html');
    fs.writeFileSync(file, page);
    const dom = await dumpDom(file, tmp);
    assert.deepEqual(chartStates(dom), ['static', 'static', 'static', 'static'], 'every picture decodes, no Plotly here');
  });
});
