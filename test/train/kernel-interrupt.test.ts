import { strict as assert } from 'assert';
import * as path from 'path';
import { missingJupyter, py, root, skipWith, tempKernel, TempKernel } from '../kernel/jupyter';

// The notebook's interrupt button (SIGINT to the kernel) during `await trainer.train()`: the kernel asks the
// trainer to stop (requestStop), the step finishes, and the cell completes with the result marked interrupted.
describe('interrupt in the Jupyter kernel', function () {
  let k: TempKernel | undefined;
  before(function () {
    const missing = missingJupyter(['jupyter_client']);
    if (missing) skipWith(this, missing);
    k = tempKernel();
  });
  after(() => k?.cleanup());

  it('stops training at a step boundary; the cell returns the interrupted result and the trainer lives on', () => {
    const r = py(k as TempKernel, [path.join(__dirname, 'kernel_interrupt.py'), root], 240_000);
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
    assert.doesNotMatch(out.setup + out.train, /ERROR/, JSON.stringify(out));
    const m = /\{"steps":(\d+),"interrupted":true\}/.exec(out.train);
    assert.ok(m, `the cell finished with the interrupted result: ${out.train}`);
    const steps = Number(m[1]);
    assert.ok(steps >= 10 && steps < 1000, `stopped after ${steps} steps`);
    assert.match(out.after, new RegExp(`"step":${steps}`), 'the trainer and model are there for the next cell');
  });
});
