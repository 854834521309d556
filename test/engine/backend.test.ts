import { spawnSync } from 'child_process';
import * as path from 'path';
import * as os from 'os';
import * as fs from 'fs';
import { strict as assert } from 'assert';
import * as tf from '@tensorflow/tfjs';
import * as engineModule from '../../src/engine/backend';
import { batchMatMulConfig } from '../../src/engine/wasm-kernels';

const { initEngine, engine } = engineModule;

/** A fresh copy of backend.ts (no engine started yet); tf and the wasm kernels stay shared. */
function freshBackendModule(): typeof engineModule {
  const path = require.resolve('../../src/engine/backend');
  const saved = require.cache[path];
  delete require.cache[path];
  try {
    return require(path) as typeof engineModule;
  } finally {
    // Leave the shared instance in the cache for every other importer.
    if (saved) require.cache[path] = saved;
  }
}

/** Runs `fn` with TUNELAB_BACKEND set to `value` (or unset), restoring it afterwards. */
async function withBackendEnv<T>(value: string | undefined, fn: () => Promise<T>): Promise<T> {
  const saved = process.env.TUNELAB_BACKEND;
  if (value === undefined) delete process.env.TUNELAB_BACKEND;
  else process.env.TUNELAB_BACKEND = value;
  try {
    return await fn();
  } finally {
    if (saved === undefined) delete process.env.TUNELAB_BACKEND;
    else process.env.TUNELAB_BACKEND = saved;
  }
}

describe('engine/backend', function () {
  after(async () => {
    // Other suites expect the patched wasm backend.
    await withBackendEnv(undefined, () => initEngine({ backend: 'wasm' }));
    await tf.setBackend('wasm');
  });

  it('initEngine({backend}) switches cpu → wasm and reports each', async () => {
    const cpu = await initEngine({ backend: 'cpu' });
    assert.equal(cpu.backend, 'cpu');
    assert.equal(tf.getBackend(), 'cpu');
    assert.deepEqual(cpu.patchedKernels, []);
    assert.deepEqual(cpu.skipped, []);
    assert.equal(cpu.tfjsVersion, tf.version_core);
    assert.equal(engine(), cpu);

    const wasm = await initEngine({ backend: 'wasm' });
    assert.equal(wasm.backend, 'wasm');
    assert.equal(tf.getBackend(), 'wasm');
    // Products run on the native GEMM's pool when its addon is built, else single-threaded XNNPACK.
    assert.equal(wasm.threads, wasm.native?.active ? wasm.native.threads : 1);
    assert.match(wasm.native?.reason ?? '', wasm.native?.active ? /native GEMM( and fused kernels)?: \w+ kernels/ : /products run on XNNPACK/);
    assert.deepEqual(wasm.patchedKernels, ['BatchMatMul', 'UnsortedSegmentSum', 'Sum', 'Identity', 'GatherV2']);
    assert.equal(tf.getKernel('BatchMatMul', 'wasm')?.kernelFunc, batchMatMulConfig.kernelFunc);
    assert.equal(engine(), wasm);
    // Asking again for the running backend returns the same report without restarting.
    assert.equal(await initEngine({ backend: 'wasm' }), wasm);
    // initEngine({ threads }) resizes the native pool of the running engine.
    if (wasm.native?.active) {
      assert.equal((await initEngine({ threads: 1 })).threads, 1);
      assert.equal(engine()?.native?.threads, 1);
    }
    await assert.rejects(initEngine({ threads: 0 }), /threads must be an integer from 1 to 256, got 0/);
  });

  it('TUNELAB_BACKEND=bogus is an error naming the variable and the value', async () => {
    await withBackendEnv('bogus', async () => {
      await assert.rejects(initEngine(), (e: Error) => /TUNELAB_BACKEND/.test(e.message) && /bogus/.test(e.message));
    });
  });

  it('TUNELAB_BACKEND=cpu forces cpu on a fresh engine', async () => {
    const fresh = freshBackendModule();
    const info = await withBackendEnv('cpu', () => fresh.initEngine());
    assert.equal(info.backend, 'cpu');
    assert.equal(tf.getBackend(), 'cpu');
  });

  it('an unknown backend passed to initEngine is an error naming it', async () => {
    const bad = { backend: 'tpu' } as unknown as engineModule.EngineOptions;
    await assert.rejects(initEngine(bad), /unknown backend "tpu"/);
  });

  it('auto mode picks wasm here, reporting both tfjs-node packages as skipped', async () => {
    const fresh = freshBackendModule();
    assert.equal(fresh.engine(), undefined);
    const info = await withBackendEnv(undefined, () => fresh.initEngine());
    assert.equal(info.backend, 'wasm');
    assert.equal(tf.getBackend(), 'wasm');
    assert.deepEqual(info.skipped.map((s) => s.backend), ['tensorflow-gpu', 'tensorflow']);
    for (const s of info.skipped) assert.match(s.reason, /tfjs-node/);
    assert.deepEqual(info.patchedKernels, ['BatchMatMul', 'UnsortedSegmentSum', 'Sum', 'Identity', 'GatherV2']);
  });

  it('a broken tfjs-node binding (installed without its libtensorflow) is skipped, not fatal', function () {
    this.timeout(60_000);
    // A stand-in package that fails the way tfjs-node does when its install script could not download.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-broken-'));
    for (const name of ['tfjs-node', 'tfjs-node-gpu']) {
      const pkg = path.join(dir, '@tensorflow', name);
      fs.mkdirSync(pkg, { recursive: true });
      fs.writeFileSync(path.join(pkg, 'package.json'), JSON.stringify({ name: `@tensorflow/${name}`, version: '4.22.0', main: 'index.js' }));
      fs.writeFileSync(path.join(pkg, 'index.js'), `throw new Error('The Node.js native addon module (tfjs_binding.node) can not be found at path: ${name}/lib');`);
    }
    const script = "require('./src/engine').initEngine().then((e) => console.log(JSON.stringify(e)), (e) => { console.error(e); process.exit(3); })";
    const root = path.join(__dirname, '..', '..');
    const r = spawnSync(process.execPath, ['--require', 'tsx/cjs', '-e', script], {
      cwd: root, encoding: 'utf8', env: { ...process.env, NODE_PATH: dir, TUNELAB_BACKEND: '' },
    });
    assert.equal(r.status, 0, r.stderr);
    const info = JSON.parse(r.stdout);
    assert.equal(info.backend, 'wasm');
    assert.deepEqual(info.skipped.map((s: { backend: string }) => s.backend), ['tensorflow-gpu', 'tensorflow']);
    for (const s of info.skipped) assert.match(s.reason, /tfjs_binding\.node\) can not be found/);
  });
});
