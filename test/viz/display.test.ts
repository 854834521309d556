import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { specOf } from './helpers';
import {
  Chart, RecordingSink, detectEnvironment, display, displaySink, kernelSink, mimeBundleKey, mimeBundleOf, lossChart, loadPlotly, locatePlotly, plotlyScript, resetPlotly, scriptSafe,
  setDisplaySink, terminalSink, tslabSink,
} from '../../src/viz';

const tiny = () => lossChart({ step: [1, 2, 3], loss: [3, 2, 1.5] });
const isBundle = (html: string | undefined) => !!html && html.includes('inlined by tunelab');

describe('viz display', () => {
  it('detects a script (no tslab kernel) and a tslab kernel through its __tslab__ global', () => {
    assert.equal(detectEnvironment(), 'terminal');
    const g = globalThis as { __tslab__?: unknown };
    const fake = { display: { raw() {} }, newDisplay: () => ({ raw() {} }) };
    g.__tslab__ = { require: (id: string) => (id === 'tslab' ? fake : undefined) };
    try {
      assert.equal(detectEnvironment(), 'tslab');
    } finally {
      delete g.__tslab__;
    }
  });

  it('tslab sink sends the richest mime and keeps one display per live output', () => {
    const sent: { display: string; mime: string; data: string }[] = [];
    let n = 0;
    const make = (id?: string) => ({ id, raw: (mime: string, data: string | Uint8Array) => void sent.push({ display: id ?? 'none', mime, data: String(data) }) });
    const sink = tslabSink({ display: make(), newDisplay: () => make(`d${++n}`) });
    sink.show({ 'text/plain': 'p', 'text/html': '<b>h</b>' });
    const live = sink.live();
    live.render({ 'text/html': '1' });
    live.render({ 'text/html': '2' });
    assert.equal(live.id, 'd1');
    assert.deepEqual(sent, [
      { display: 'none', mime: 'text/html', data: '<b>h</b>' },
      { display: 'd1', mime: 'text/html', data: '1' },
      { display: 'd1', mime: 'text/html', data: '2' },
    ]);
  });

  it('charts carry no plotly.js bundle; loadPlotly sends it once per sink, again after reset or force', () => {
    const sink = new RecordingSink();
    tiny().show(sink);
    tiny().show(sink);
    assert.equal(sink.messages.length, 2);
    assert.equal(sink.html().filter(isBundle).length, 0);
    assert.equal(loadPlotly({ sink }), true);
    assert.equal(loadPlotly({ sink }), false);
    resetPlotly(sink);
    assert.equal(loadPlotly({ sink }), true);
    assert.equal(loadPlotly({ sink, force: true }), true);
    assert.equal(sink.html().filter(isBundle).length, 3);
    // Another notebook (sink) gets its own copy.
    const other = new RecordingSink();
    assert.equal(loadPlotly({ sink: other }), true);
  });

  it('a chart output carries the Plotly figure, live HTML, a static SVG and a text summary', () => {
    const sink = new RecordingSink();
    const c = tiny();
    c.show(sink);
    const data = sink.messages[0].data;
    assert.deepEqual(Object.keys(data), ['application/vnd.plotly.v1+json', 'text/html', 'image/svg+xml', 'text/plain']);
    assert.deepEqual(data['application/vnd.plotly.v1+json'], JSON.parse(JSON.stringify(c.spec)));
    const svg = String(data['image/svg+xml']);
    assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    // The HTML's fallback picture is the same SVG, as a data URL that notebook sanitizers keep.
    const img = /<img class="tunelab-static" src="data:image\/svg\+xml;base64,([^"]+)"/.exec(String(data['text/html']));
    assert.ok(img, 'the HTML holds the static picture');
    assert.equal(Buffer.from(img[1], 'base64').toString(), svg);
    assert.equal(data['text/plain'], c.text());
    assert.deepEqual(specOf(data['text/html']), JSON.parse(JSON.stringify(c.spec)));
  });

  it('chart scripts wait for window.Plotly, else fetch it once per page from the kernelspec on a Jupyter server', () => {
    const script = plotlyScript();
    assert.match(script, /^<script type="text\/javascript">/);
    assert.match(script, /if \(!window\.Plotly\) \{\(function \(module, exports, define\) \{/);
    assert.match(script, /dispatchEvent\(new Event\('tunelab:plotly'\)\)/);
    const chart = tiny().html();
    assert.match(chart, /if \(w\.Plotly\) \{ draw\(\); return; \}/);
    assert.match(chart, /addEventListener\('tunelab:plotly', draw\)/);
    assert.match(chart, /getAttribute\('data-base-url'\)/, 'classic Notebook base URL');
    assert.match(chart, /'jupyter-config-data'/, 'JupyterLab base URL');
    assert.match(chart, /'kernelspecs\/' \+ encodeURIComponent\(kernel\) \+ '\/plotly\.min\.js'/);
    assert.match(chart, /kernel = "tunelab"/);
    assert.match(chart, /if \(!w\.__tunelabPlotly\)/, 'one fetch per page');
  });

  it('emits no network URLs: no http(s), non-data src= or href= outside plotly.js\'s own source', () => {
    const sink = new RecordingSink();
    loadPlotly({ sink });
    tiny().show(sink);
    const source = scriptSafe(fs.readFileSync(locatePlotly().file, 'utf8'));
    assert.ok(sink.html()[0].includes(source), 'the bundle is inlined verbatim');
    for (const html of sink.html()) {
      const ours = html.replace(source, '').replace(/ xmlns="http:\/\/www\.w3\.org\/2000\/svg"/g, '');
      assert.ok(ours.length < 60_000, 'only plotly.js itself is large');
      assert.doesNotMatch(ours, /https?:|\bsrc="(?!data:)|\bhref=|<link|<iframe/i);
    }
  });

  it('terminal sink prints the text summary and never sends the bundle', () => {
    const lines: string[] = [];
    const out = { write: (s: string) => lines.push(s) } as unknown as NodeJS.WritableStream;
    const sink = terminalSink(out);
    tiny().show(sink);
    assert.deepEqual(lines, ['[Training loss] train loss (3 points, last 1.5)\n']);
    assert.equal(loadPlotly({ sink }), false);
  });

  it('finds plotly.js-dist first when the user installed it, else plotly.js-dist-min', () => {
    assert.equal(locatePlotly().package, 'plotly.js-dist-min');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-plotly-'));
    try {
      const pkg = path.join(dir, 'node_modules', 'plotly.js-dist');
      fs.mkdirSync(pkg, { recursive: true });
      fs.writeFileSync(path.join(pkg, 'package.json'), JSON.stringify({ name: 'plotly.js-dist', version: '9.9.9', main: 'plotly.js' }));
      fs.writeFileSync(path.join(pkg, 'plotly.js'), 'window.Plotly = {}; var s = "</script><!--<script>";');
      const found = locatePlotly([dir, __dirname]);
      assert.deepEqual(found, { package: 'plotly.js-dist', version: '9.9.9', file: path.join(pkg, 'plotly.js') });
      const script = plotlyScript(found);
      assert.ok(script.includes('var s = "<\\/script><\\!--<script>";'), 'the bundle cannot end its own <script>');
      assert.equal(script.match(/<\/script>/g)?.length, 1);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('scriptSafe leaves ordinary code alone', () => {
    assert.equal(scriptSafe('a < b && c <!-- d'), 'a < b && c <!-- d');
    assert.equal(scriptSafe('"</SCRIPT>"'), '"<\\/SCRIPT>"');
  });

  it('setDisplaySink overrides auto-detection until reset', () => {
    const sink = new RecordingSink();
    setDisplaySink(sink);
    try {
      assert.equal(displaySink(), sink);
      tiny().show();
      assert.equal(sink.messages.length, 1);
    } finally {
      setDisplaySink(undefined);
    }
    assert.equal(displaySink().kind, 'terminal');
  });

  it('the tunelab kernel sink sends whole bundles, with one display id per live output', () => {
    const sent: { data: object; opts?: { displayId?: string; update?: boolean } }[] = [];
    const sink = kernelSink({ display: (data, opts) => void sent.push({ data, opts }) });
    tiny().show(sink);
    const live = sink.live();
    live.render({ 'text/plain': '1' });
    live.render({ 'text/plain': '2' });
    assert.equal(Object.keys(sent[0].data).length, 4, 'every form of the chart');
    assert.deepEqual(sent.slice(1), [
      { data: { 'text/plain': '1' }, opts: { displayId: live.id, update: false } },
      { data: { 'text/plain': '2' }, opts: { displayId: live.id, update: true } },
    ]);
    // Inside the kernel (its hook on globalThis) the auto-detected sink is this one.
    const key = Symbol.for('tunelab.kernel');
    Reflect.set(globalThis, key, { clearOutput() {}, display: () => undefined });
    try {
      assert.equal(detectEnvironment(), 'tslab');
    } finally {
      Reflect.deleteProperty(globalThis, key);
    }
  });

  it("display(x) and mimeBundleOf use an object's Symbol.for('tunelab.mimeBundle'), else its printed text", () => {
    const rich = { [Symbol.for('tunelab.mimeBundle')]: () => ({ 'text/plain': 'p', 'text/html': '<i>h</i>' }) };
    assert.equal(mimeBundleKey, Symbol.for('tunelab.mimeBundle'));
    const sink = new RecordingSink();
    display(rich, sink);
    display('text', sink);
    display({ a: 1 }, sink);
    display(tiny(), sink);
    assert.deepEqual(sink.messages.slice(0, 3).map((m) => m.data), [{ 'text/plain': 'p', 'text/html': '<i>h</i>' }, { 'text/plain': 'text' }, { 'text/plain': '{ a: 1 }' }]);
    assert.ok(sink.messages[3].data['application/vnd.plotly.v1+json'], 'a chart displays as a chart');
    assert.throws(() => mimeBundleOf({ [Symbol.for('tunelab.mimeBundle')]: () => ({ 'text/html': 'no text' }) }), /must return an object with a string 'text\/plain'/);
  });

  it('a chart prints as one line in tslab', () => {
    const { inspect } = require('util') as typeof import('util');
    assert.equal(inspect(new Chart({ data: [{ type: 'bar', y: [1] }], layout: { title: { text: 'x' } } })), 'Chart "x" (1 traces)');
  });
});
