import { strict as assert } from 'assert';
import { missingJupyter, py, skipWith, tempKernel, TempKernel, unittestSummary } from './jupyter';

describe('kernel: jupyter_kernel_test conformance', function () {
  this.timeout(300_000);
  let k: TempKernel | undefined;

  before(function () {
    const missing = missingJupyter(['jupyter_client', 'jupyter_kernel_test']);
    if (missing) skipWith(this, missing);
    k = tempKernel();
  });
  after(() => k?.cleanup());

  it('passes every test of the suite (kernel_info, execute, errors, results, display, history, complete, inspect, pager, clear_output)', () => {
    const kernel = k as TempKernel;
    const r = py({ ...kernel, env: { ...kernel.env, TUNELAB_KERNEL_MODULE: kernel.module } }, ['-m', 'unittest', '-v', 'kernel_conformance'], 240_000);
    const out = `${r.stdout}${r.stderr}`;
    const s = unittestSummary(out);
    assert.ok(Number.isFinite(s.ran), `no unittest summary:\n${out}`);
    assert.equal(s.failures + s.errors, 0, out);
    assert.ok(s.passed >= 12, `only ${s.passed} passed:\n${out}`);
    assert.equal(r.status, 0, out);
  });
});
