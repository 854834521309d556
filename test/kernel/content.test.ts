import { strict as assert } from 'assert';
import { toJupyterError } from '../../src/kernel/content';

describe('kernel/content: toJupyterError', () => {
  it("drops the kernel's own frames (src/kernel/*, dist/kernel/*), tslab's and node's from a traceback, keeps the cell's", () => {
    const e = new TypeError('bad value');
    e.stack = [
      'TypeError: bad value',
      '    at cell (/home/u/nb/1.ts:3:9)',
      '    at Kernel.execute (/repo/src/kernel/kernel.ts:280:5)',
      '    at toJupyterError (/repo/dist/kernel/content.js:50:1)',
      '    at run (/repo/node_modules/tslab/dist/executor.js:10:2)',
      '    at Script.runInContext (node:vm:143:12)',
    ].join('\n');
    const err = toJupyterError([[e]]);
    assert.equal(err.ename, 'TypeError');
    assert.equal(err.evalue, 'bad value');
    assert.deepEqual(err.traceback, ['TypeError: bad value', '    at cell (/home/u/nb/1.ts:3:9)']);
  });
});
