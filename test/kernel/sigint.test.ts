import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as path from 'path';
import * as vm from 'vm';
import { drainKeptSigint, isInterruption } from '../../src/kernel/sigint';

describe('kernel: SIGINT kept by Node for a later cell', function () {
  this.timeout(120_000);

  it('recognises both ways a cell ends interrupted, and nothing else', () => {
    let interrupted: unknown;
    try {
      // The watchdog turns a SIGINT during a breakOnSigint run into ERR_SCRIPT_EXECUTION_INTERRUPTED.
      vm.runInThisContext(`process.kill(process.pid, 'SIGINT'); { const t = Date.now() + 5000; while (Date.now() < t) {} }`, { breakOnSigint: true });
    } catch (e) {
      interrupted = e;
    }
    assert.ok(isInterruption(interrupted), String(interrupted));
    assert.ok(isInterruption(new Error('Interrupted asynchronously')));
    assert.ok(!isInterruption(new Error('interrupted')));
    assert.ok(!isInterruption('Interrupted asynchronously'));
  });

  it('drains nothing when no signal is kept (0: its first run finished)', () => {
    assert.equal(drainKeptSigint(10), 0);
  });

  it('after double interrupts on a busy core, no later run is interrupted', function () {
    // Reproduces the race: two SIGINTs a few ms apart while a busy loop runs, sharing one core with a CPU hog
    // (where taskset exists), so the watchdog thread is often not scheduled before the run ends.
    const script = `
      const vm = require('vm');
      const { spawn, spawnSync } = require('child_process');
      const { drainKeptSigint } = require(${JSON.stringify(path.join(__dirname, '..', '..', 'src', 'kernel', 'sigint'))});
      process.on('SIGINT', () => {});
      const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
      (async () => {
        let later = 0, cleared = 0;
        for (let trial = 0; trial < 30; trial++) {
          const gap = (trial % 10) / 1000;
          spawn('sh', ['-c', 'sleep 0.05; kill -INT ' + process.pid + '; sleep ' + gap + '; kill -INT ' + process.pid]);
          try { vm.runInThisContext('while (true) {}', { breakOnSigint: true }); } catch (e) { cleared += drainKeptSigint(); }
          await sleep(50);
          for (let cell = 0; cell < 3; cell++) {
            try { vm.runInThisContext('{ const t = Date.now() + 20; while (Date.now() < t) {} }', { breakOnSigint: true }); } catch { later++; }
          }
        }
        console.log(JSON.stringify({ later, cleared }));
      })();`;
    const pinned = spawnSync('taskset', ['-c', '0', 'true']).status === 0;
    const hog = pinned ? require('child_process').spawn('taskset', ['-c', '0', 'sh', '-c', 'while :; do :; done']) : null;
    try {
      const cmd = pinned ? 'taskset' : process.execPath;
      const args = [...(pinned ? ['-c', '0', process.execPath] : []), '--require', require.resolve('tsx/cjs'), '-e', script];
      const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 100_000 });
      assert.equal(r.status, 0, r.stderr);
      const out = JSON.parse(r.stdout.trim().split('\n').pop() as string) as { later: number; cleared: number };
      assert.equal(out.later, 0, `runs interrupted by a kept SIGINT: ${JSON.stringify(out)}`);
    } finally {
      hog?.kill('SIGKILL');
    }
  });
});
