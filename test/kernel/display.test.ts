/**
 * Rich display through a real kernel (jupyter_client): the mime-bundle protocol for a cell's value and
 * display(x), chart outputs with every form, data packages importable anywhere, imports kept after failures.
 */
import { strict as assert } from 'assert';
import * as path from 'path';
import { missingJupyter, py, skipWith, tempKernel, TempKernel } from './jupyter';

interface Cell {
  status: string;
  evalue: string | null;
  stderr: string;
  outputs: { type: string; data: Record<string, unknown> }[];
}

describe('kernel: rich display, data packages and kept imports', function () {
  this.timeout(300_000);
  let k: TempKernel | undefined;
  let cells: Record<string, Cell>;

  before(function () {
    const missing = missingJupyter(['jupyter_client']);
    if (missing) skipWith(this, missing);
    k = tempKernel();
    const r = py(k, [path.join(__dirname, 'driver.py'), 'rich'], 240_000);
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    cells = JSON.parse(r.stdout) as Record<string, Cell>;
  });
  after(() => k?.cleanup());

  const results = (c: Cell) => c.outputs.filter((o) => o.type === 'execute_result').map((o) => o.data);

  it('arquero and danfo import in a folder without node_modules', () => {
    assert.equal(cells.arquero.status, 'ok', cells.arquero.evalue ?? '');
    assert.deepEqual(results(cells.arquero), [{ 'text/plain': '3' }]);
    assert.equal(cells.danfo.status, 'ok', cells.danfo.evalue ?? '');
    assert.deepEqual(results(cells.danfo), [{ 'text/plain': '[ 2, 2 ]' }]);
  });

  it("a cell's last value shows its Symbol.for('tunelab.mimeBundle') bundle; a bad bundle falls back to text", () => {
    assert.deepEqual(results(cells.protocol), [{ 'text/plain': 'plain o', 'text/html': '<b>rich o</b>' }]);
    assert.equal(cells.bad_bundle.status, 'ok');
    assert.match(String(results(cells.bad_bundle)[0]['text/plain']), /Symbol\(tunelab\.mimeBundle\)/);
    assert.match(cells.bad_bundle.stderr, /rich display failed, showing text: .*must return an object with a string 'text\/plain'/);
  });

  it('display(x) and chart.show() send whole bundles: Plotly JSON, live HTML, static SVG, text', () => {
    const c = cells.display;
    assert.equal(c.status, 'ok', c.evalue ?? '');
    const shown = c.outputs.filter((o) => o.type === 'display_data').map((o) => o.data);
    assert.equal(shown.length, 3);
    assert.deepEqual(shown[0], { 'text/plain': 'plain o', 'text/html': '<b>rich o</b>' });
    assert.deepEqual(shown[1], { 'text/plain': '42' });
    assert.deepEqual(Object.keys(shown[2]), ['application/vnd.plotly.v1+json', 'text/html', 'image/svg+xml', 'text/plain']);
    const fig = shown[2]['application/vnd.plotly.v1+json'] as { data: { y: number[] }[] };
    assert.deepEqual(fig.data[0].y, [3, 2, 1], 'the Plotly figure is JSON, not a string');
    assert.match(String(shown[2]['image/svg+xml']), /^<svg /);
    assert.doesNotMatch(String(shown[2]['text/html']), /inlined by tunelab/, 'no plotly.js bundle in outputs');
    const chart = results(cells.chart_value);
    assert.equal(chart.length, 1);
    assert.ok(chart[0]['application/vnd.plotly.v1+json'], 'a chart as the last value is shown as a chart');
  });

  it('a cell failing after its imports keeps them for later cells (run-time and compile-time failures)', () => {
    assert.equal(cells.runtime_fail.status, 'error');
    assert.equal(cells.runtime_fail.evalue, 'boom');
    assert.equal(cells.after_runtime_fail.status, 'ok', cells.after_runtime_fail.evalue ?? '');
    assert.deepEqual(results(cells.after_runtime_fail), [{ 'text/plain': '2' }]);
    assert.equal(cells.compile_fail.status, 'error');
    assert.equal(cells.after_compile_fail.status, 'ok', cells.after_compile_fail.evalue ?? '');
    assert.deepEqual(results(cells.after_compile_fail), [{ 'text/plain': '3' }]);
  });
});
