/**
 * No silent slow path (issue 20 §1): in a fresh process, nothing tunelab does may leave tfjs on its pure-JS
 * cpu backend unless the user asked for it. Each case runs in its own process, because the engine is
 * chosen once per process.
 */
import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as path from 'path';

const src = path.resolve(__dirname, '..', '..', 'src');

/** Runs `body` (CommonJS, `tl` = tunelab's src/index.ts, `tf` = tfjs) in a fresh Node; returns its output. */
function fresh(body: string, env: NodeJS.ProcessEnv = {}): { status: number | null; stdout: string; stderr: string } {
  const script = `const tl = require(${JSON.stringify(src)}); const tf = require('@tensorflow/tfjs');
(async () => { ${body} })().catch((e) => { console.log('ERROR ' + e.message); process.exit(3); });`;
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
  if (!('TUNELAB_BACKEND' in env)) delete childEnv.TUNELAB_BACKEND;
  const r = spawnSync(process.execPath, ['--require', require.resolve('tsx/cjs'), '-e', script],
    { cwd: path.resolve(src, '..'), env: childEnv, encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('engine: automatic selection at every entry point', function () {
  this.timeout(180_000);

  it('loadModel starts the best engine itself (wasm here), and the progress line names it', () => {
    const r = fresh(`const { model } = await tl.loadModel(tl.modelsDir + '/tiny-llama');
      console.log('BACKEND ' + tl.engine().backend + ' ' + tf.getBackend());
      console.log(tl.progressLine({ step: 1, loss: 1, lr: 1e-3, gradNorm: 1, tokens: 10, tokensPerSec: 100, elapsedMs: 1, etaMs: 1 }, 2));
      model.dispose();`);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /BACKEND wasm wasm/);
    assert.match(r.stdout, /100 tok\/s on wasm/);
  });

  it('a synchronous entry point before any engine is an error that says what to call, not a silent cpu run', () => {
    const r = fresh(`tl.CausalLM.create({ family: 'llama', vocabSize: 16, dModel: 8, nHeads: 2, nLayers: 1, contextLength: 8 });
      console.log('CREATED on ' + tf.getBackend());`);
    assert.equal(r.status, 3, r.stdout + r.stderr);
    assert.match(r.stdout, /ERROR CausalLM\.create: no tensor engine started yet.*await initEngine\(\)/);
  });

  it('a backend started through tfjs itself is adopted (wasm gets tunelab\'s kernels)', () => {
    const r = fresh(`require('@tensorflow/tfjs-backend-wasm'); await tf.setBackend('wasm');
      const m = tl.CausalLM.create({ family: 'llama', vocabSize: 16, dModel: 8, nHeads: 2, nLayers: 1, contextLength: 8 });
      console.log('ADOPTED ' + tl.engine().backend + ' ' + tl.engine().patchedKernels.join(','));
      m.dispose();`);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /ADOPTED wasm BatchMatMul/);
  });

  it('the cpu backend runs only when asked for: initEngine({ backend: "cpu" }) or TUNELAB_BACKEND=cpu', () => {
    const asked = fresh(`await tl.initEngine({ backend: 'cpu' }); const { model } = await tl.loadModel(tl.modelsDir + '/tiny-llama');
      console.log('BACKEND ' + tl.engine().backend + ' ' + tf.getBackend()); model.dispose();`);
    assert.match(asked.stdout, /BACKEND cpu cpu/, asked.stdout + asked.stderr);
    const env = fresh(`const { model } = await tl.loadModel(tl.modelsDir + '/tiny-llama');
      console.log('BACKEND ' + tl.engine().backend + ' ' + tf.getBackend()); model.dispose();`, { TUNELAB_BACKEND: 'cpu' });
    assert.match(env.stdout, /BACKEND cpu cpu/, env.stdout + env.stderr);
  });
});
