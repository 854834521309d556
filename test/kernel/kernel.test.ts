import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { jupyter, missingJupyter, py, root, skipWith, tempKernel, TempKernel } from './jupyter';

const driver = path.join(__dirname, 'driver.py');

interface ErrorReport {
  reply: { status: string; ename?: string; evalue?: string; traceback?: string[]; execution_count?: number };
  errors: { ename: string; evalue: string; traceback: string[] }[];
  stderr: string;
}

interface Session {
  flood: { status: string; lines: number; messages: number; first: string; last: string; in_order: boolean; stderr: string; seconds: number };
  display: { status: string; displays: number; updates: number; last: string; display_ids: number; errors: unknown[]; stderr: string; seconds: number };
  result: { status: string; count: number; results: { execution_count: number; data: Record<string, string> }[]; stdout: string };
  runtime_error: ErrorReport;
  after_error: { status: string; stdout: string };
  compile_error: ErrorReport;
  async_error: ErrorReport;
  stop_on_error: string[];
  after_abort: string;
  allow_errors: string[];
  interrupt: string[];
  after_interrupt: string;
  after_interrupt_error?: string;
  interrupt_attempts?: number[];
  late_interrupt: string[];
  resolve: { status: string; result: string[]; errors: unknown[] };
  typed_import: { status: string; result: string[]; errors: string[] };
  history: { status: string; history: [number, number, string][] };
}

describe('kernel: tunelab kernel through jupyter_client', function () {
  this.timeout(300_000);
  let k: TempKernel | undefined;

  before(function () {
    const missing = missingJupyter(['jupyter_client', 'nbclient']);
    if (missing) skipWith(this, missing);
    k = tempKernel();
  });
  after(() => k?.cleanup());

  describe('one kernel session', () => {
    let s: Session;
    before(function () {
      const r = py(k as TempKernel, [driver, 'session'], 240_000);
      assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
      s = JSON.parse(r.stdout) as Session;
    });

    it('a cell printing 20,000 lines delivers all of them, in order', () => {
      assert.equal(s.flood.status, 'ok');
      assert.equal(s.flood.lines, 20_000, JSON.stringify(s.flood));
      assert.ok(s.flood.in_order, 'lines out of order');
      assert.equal(s.flood.stderr, '');
    });

    it('a 2,000-step live display update loop delivers every update', () => {
      assert.equal(s.display.status, 'ok', JSON.stringify(s.display));
      assert.deepEqual([s.display.displays, s.display.updates, s.display.display_ids], [1, 2000, 1]);
      assert.equal(s.display.last, 'step 2000');
      assert.deepEqual(s.display.errors, []);
      assert.equal(s.display.stderr, '');
    });

    it('the last expression is an execute_result with the execution count', () => {
      assert.equal(s.result.status, 'ok');
      assert.equal(s.result.results.length, 1);
      assert.equal(s.result.results[0].data['text/plain'], '42');
      assert.equal(s.result.results[0].execution_count, s.result.count);
      assert.equal(s.result.stdout, '');
    });

    it('a thrown error is a Jupyter error (ename, evalue, traceback), not stderr, and the next cell runs', () => {
      for (const e of [s.runtime_error.reply, s.runtime_error.errors[0]]) {
        assert.equal(e.ename, 'TypeError');
        assert.equal(e.evalue, 'bad value');
        assert.ok(e.traceback?.some((l) => l.includes('TypeError: bad value')), JSON.stringify(e.traceback));
      }
      assert.equal(s.runtime_error.reply.status, 'error');
      assert.equal(s.runtime_error.errors.length, 1);
      assert.equal(s.runtime_error.stderr, '');
      assert.deepEqual(s.after_error, { status: 'ok', stdout: 'after\n' });
    });

    it('type errors and rejected awaits are Jupyter errors too', () => {
      assert.equal(s.compile_error.reply.ename, 'CompileError');
      assert.match(s.compile_error.reply.evalue ?? '', /not assignable to type 'number'/);
      assert.equal(s.async_error.reply.ename, 'RangeError');
      assert.equal(s.async_error.reply.evalue, 'late');
    });

    it('stop_on_error aborts only the requests queued behind the failure; allow-errors runs them', () => {
      assert.deepEqual(s.stop_on_error, ['error', 'aborted', 'aborted']);
      assert.equal(s.after_abort, 'ok');
      assert.deepEqual(s.allow_errors, ['error', 'ok']);
    });

    it('an interrupt stops a busy loop and a pending await, and the kernel lives on', () => {
      assert.equal(s.interrupt.length, 2);
      for (const evalue of s.interrupt) assert.match(evalue, /interrupted/i);
      assert.equal(s.after_interrupt, 'ok', `after the interrupts: ${s.after_interrupt_error} (interrupts sent per cell: ${s.interrupt_attempts})`);
    });

    it('an interrupt pressed again after the cell stopped leaves the next cells alone', () => {
      assert.deepEqual(s.late_interrupt, ['ok', 'ok', 'ok', 'ok']);
    });

    it('tunelab resolves by its package name from a folder without it in node_modules (runtime and types)', () => {
      assert.deepEqual(s.resolve.result, [path.join(root, 'package.json')], JSON.stringify(s.resolve));
      assert.deepEqual(s.typed_import.result, ['tunelab'], JSON.stringify(s.typed_import));
    });

    it('answers history requests with the executed cells', () => {
      assert.equal(s.history.status, 'ok');
      assert.equal(s.history.history.length, 3);
      assert.match(s.history.history[2][2], /tunelab\/package\.json/);
    });
  });

  it('nbconvert --allow-errors runs the cells after an error, with `tunelab` imported by name', function () {
    const haveDist = fs.existsSync(path.join(root, 'dist', 'index.js')) && fs.existsSync(path.join(root, 'dist', 'index.d.ts'));
    const cell = (source: string) => ({ cell_type: 'code', metadata: {}, execution_count: null, outputs: [], source });
    const cells = [
      cell("console.log('first')"),
      cell("throw new Error('boom')"),
      cell("console.log('after');\n6 * 7"),
      // The real package needs its build (npm install runs it); without one, its package.json stands in.
      cell(haveDist ? "import * as tunelab from 'tunelab';\ntypeof tunelab.CausalLM" : "import pkg from 'tunelab/package.json';\ntypeof pkg.name"),
    ];
    const nb = {
      cells, nbformat: 4, nbformat_minor: 5,
      metadata: { kernelspec: { name: 'tunelab', display_name: 'TypeScript (tunelab)', language: 'typescript' } },
    };
    const kernel = k as TempKernel;
    const folder = path.join(kernel.dir, 'notebooks');
    fs.mkdirSync(folder, { recursive: true });
    fs.writeFileSync(path.join(folder, 'errors.ipynb'), JSON.stringify(nb));
    const run = (extra: string[]) => py(kernel, [jupyter, 'nbconvert', '--to', 'notebook', '--execute', ...extra,
      '--ExecutePreprocessor.timeout=120', '--output', 'out.ipynb', path.join(folder, 'errors.ipynb')], 200_000);

    const allowed = run(['--allow-errors']);
    assert.equal(allowed.status, 0, allowed.stderr);
    const out = JSON.parse(fs.readFileSync(path.join(folder, 'out.ipynb'), 'utf8')) as {
      cells: { execution_count: number | null; outputs: { output_type: string; text?: string | string[]; ename?: string; evalue?: string; data?: Record<string, string | string[]>; execution_count?: number }[] }[];
    };
    const text = (v: string | string[] | undefined) => (Array.isArray(v) ? v.join('') : v ?? '');
    const [first, failing, after, imported] = out.cells;
    assert.equal(text(first.outputs[0]?.text), 'first\n');
    assert.deepEqual(failing.outputs.map((o) => [o.output_type, o.ename, o.evalue]), [['error', 'Error', 'boom']]);
    assert.deepEqual(after.outputs.map((o) => o.output_type), ['stream', 'execute_result']);
    assert.equal(text(after.outputs[1].data?.['text/plain']), '42');
    assert.equal(after.outputs[1].execution_count, after.execution_count);
    assert.equal(text(imported.outputs[0]?.data?.['text/plain']), haveDist ? 'function' : 'string', JSON.stringify(imported.outputs));

    // Without --allow-errors the error stops the run and fails the command, naming the error.
    const stopped = run([]);
    assert.notEqual(stopped.status, 0);
    assert.match(stopped.stderr, /boom/);
  });

  it('100 consecutive kernel starts all succeed (start, kernel_info, shutdown; 4 at a time)', function () {
    const r = py(k as TempKernel, [driver, 'starts', '100', '4'], 280_000);
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    const result = JSON.parse(r.stdout) as { count: number; ok: number; failed: unknown[]; seconds: number };
    assert.equal(result.ok, 100, JSON.stringify(result.failed, null, 1));
  });
});
