import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { CausalLM, generate } from '../../src/model';
import { dequantizeBase, quantizeBase, weightBytes } from '../../src/model/quant-model';
import { Trainer } from '../../src/train/trainer';
import { TokenWindows, causalLmObjective, tokenStream } from '../../src/train/causal-lm';
import { addLora, addDora } from '../../src/peft/lora';
import { addIa3 } from '../../src/peft/ia3';
import { addBottleneck } from '../../src/peft/bottleneck';
import { loadAdapter, saveAdapter } from '../../src/peft/io';
import { checkpointWriter, loadModel, resumeFrom, saveModel } from '../../src/io/checkpoint';
import { heldOutLossSync } from '../../src/eval/metrics';
import { base } from '../../src/lab/base';
import { dataset } from '../../src/lab/data';
import { logitsOf, pretrained, task, tinyFamilies } from './fixtures';
import { engineReady, maxAbsDiff } from '../helpers';

const { llama, gpt2 } = tinyFamilies();
const formats = [{ format: 'int8' }, { format: 'nf4' }, { format: 'nf4', doubleQuant: true, embeddings: true }] as const;
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-qlora-'));

/** Trains `model` (adapters already attached) on the task stream; returns the losses and tensor counts per step. */
async function train(model: CausalLM, steps: number): Promise<{ losses: number[]; counts: number[] }> {
  const t = new Trainer(model, causalLmObjective, new TokenWindows(task(2000), 16, 8, 5), { lr: 1e-2, maxSteps: steps, seed: 3 });
  const counts: number[] = [];
  t.on('step', () => counts.push(tf.memory().numTensors));
  const r = await t.train();
  t.dispose();
  return { losses: r.history.map((h) => h.loss), counts };
}

describe('peft/qlora: adapters on a quantized frozen base', () => {
  before(engineReady);

  for (const fam of [llama, gpt2, { ...llama, tieEmbeddings: false }]) {
    for (const cfg of formats) {
      it(`${fam.family}${fam.tieEmbeddings === false ? ' (untied head)' : ''} ${JSON.stringify(cfg)}: the quantized forward equals the float32 forward of the decoded weights; frees the float32 variables`, () => {
        const m = CausalLM.create(fam, { seed: 2 });
        const f32Bytes = weightBytes(m).total;
        const before = tf.memory().numBytes;
        const paths = quantizeBase(m, cfg);
        const n = paths.reduce((s, p) => s + m.quantized.get(p)!.size, 0);
        assert.equal(before - tf.memory().numBytes, 4 * n, 'every quantized float32 variable is freed');
        assert.ok(paths.every((p) => !m.params.has(p) && m.quantized.has(p)));
        assert.equal(paths.includes('embed_tokens.weight'), 'embeddings' in cfg);
        assert.equal(m.paramCount(), CausalLM.create(fam).paramCount(), 'parameter count unchanged');
        assert.ok(weightBytes(m).total < f32Bytes * (cfg.format === 'int8' ? 0.5 : 0.45));
        const twin = m.clone();
        assert.equal(twin.quantized.get(paths[0]), m.quantized.get(paths[0]), 'a clone shares the immutable quantized matrices');
        dequantizeBase(twin);
        assert.equal(twin.quantized.size, 0);
        assert.ok(maxAbsDiff(logitsOf(m), logitsOf(twin)) < 1e-5);
        // Generation runs the cached path (one row at a time) through the same products.
        assert.deepEqual(generate(m, [1, 2, 3], { maxNewTokens: 6 }), generate(twin, [1, 2, 3], { maxNewTokens: 6 }));
        m.dispose();
        twin.dispose();
      });
    }
  }

  it('shipped base: held-out loss close to float32 (int8 0.1 %, nf4 1 %, nf4 with embeddings 2 %); NF4 weight memory ≤ 0.16 × float32', async () => {
    const { model, tokenizer } = await base('tiny-llama');
    const tokens = tokenStream(tokenizer, dataset('general', 'heldout')).slice(0, 24 * 64 + 1);
    const ref = heldOutLossSync(model, { tokens }, { seqLen: 64 }).loss;
    const f32 = weightBytes(model).total;
    const rows: Record<string, { loss: number; ratio: number }> = {};
    for (const [name, cfg, tol] of [['int8', { format: 'int8' }, 0.001], ['nf4', { format: 'nf4' }, 0.01], ['nf4+emb', { format: 'nf4', embeddings: true }, 0.02]] as const) {
      const m = model.clone();
      quantizeBase(m, cfg);
      const loss = heldOutLossSync(m, { tokens }, { seqLen: 64 }).loss;
      rows[name] = { loss, ratio: weightBytes(m).total / f32 };
      assert.ok(Math.abs(loss - ref) / ref < tol, `${name}: loss ${loss} vs float32 ${ref}`);
      m.dispose();
    }
    // Projections alone are three quarters of tiny-llama's weights; the tied embedding table the rest.
    assert.ok(rows.nf4.ratio < 0.36 && rows['nf4+emb'].ratio <= 0.16, JSON.stringify(rows));
    assert.ok(rows.int8.ratio < 0.45);
    model.dispose();
  });

  it('LoRA trains on an NF4 base: loss falls, only adapter weights change, tensor count flat, same seed → same losses', async () => {
    const start = await pretrained(llama);
    const runOnce = async () => {
      const m = start.clone();
      quantizeBase(m, { format: 'nf4' });
      addLora(m, { r: 4, alpha: 8, targetModules: 'all-linear' });
      assert.ok([...m.trainableParams().keys()].every((k) => k.startsWith('adapters.')), 'only adapter weights are trainable');
      const frozen = new Map([...m.params].map(([k, p]) => [k, p.variable.dataSync().slice()]));
      const codes = new Map([...m.quantized].map(([k, q]) => [k, q.dequantize()]));
      const r = await train(m, 16);
      for (const [k, v] of frozen) assert.deepEqual(m.params.get(k)!.variable.dataSync(), v, `${k} unchanged`);
      for (const [k, v] of codes) assert.deepEqual(m.quantized.get(k)!.dequantize(), v, `${k} unchanged`);
      m.dispose();
      return r;
    };
    const a = await runOnce();
    assert.ok(a.losses.at(-1)! < a.losses[0] - 0.3, `losses ${a.losses.map((l) => l.toFixed(3))}`);
    assert.equal(a.counts[2], a.counts.at(-1), `tensor count per step ${a.counts}`);
    const b = await runOnce();
    assert.deepEqual(b.losses, a.losses);
    start.dispose();
  });

  it('IA3 and bottleneck adapters train on an int8 base', async () => {
    const start = await pretrained(gpt2);
    for (const add of [(m: CausalLM) => addIa3(m), (m: CausalLM) => addBottleneck(m, { bottleneckSize: 8 })]) {
      const m = start.clone();
      quantizeBase(m, { format: 'int8' });
      add(m);
      const { losses } = await train(m, 8);
      assert.ok(losses.every(Number.isFinite) && losses.at(-1)! < losses[0], `losses ${losses}`);
      m.dispose();
    }
    start.dispose();
  });

  it('saves the adapter and the decoded base; both load back onto a base quantized again from float32', async () => {
    const dir = tmp();
    try {
      const start = await pretrained(llama);
      const m = start.clone();
      quantizeBase(m, { format: 'nf4' });
      addLora(m, { r: 4, targetModules: ['q_proj', 'v_proj', 'down_proj'] });
      await train(m, 6);
      const want = logitsOf(m);
      await saveAdapter(m, path.join(dir, 'adapter'));
      // The adapter onto the original float32 base, quantized the same way: identical logits.
      const again = start.clone();
      quantizeBase(again, { format: 'nf4' });
      loadAdapter(again, path.join(dir, 'adapter'));
      assert.deepEqual(logitsOf(again), want);
      // saveModel writes the decoded float32 base; quantizing that file again gives the same NF4 weights
      // (each block's absmax is decoded exactly, so every value maps back to its own code).
      await saveModel(path.join(dir, 'base'), m);
      const { model: loaded } = await loadModel(path.join(dir, 'base'));
      quantizeBase(loaded, { format: 'nf4' });
      for (const [k, q] of m.quantized) assert.ok(maxAbsDiff(loaded.quantized.get(k)!.dequantize(), q.dequantize()) < 1e-6, k);
      loadAdapter(loaded, path.join(dir, 'adapter'));
      assert.ok(maxAbsDiff(logitsOf(loaded), want) < 1e-4);
      [start, m, again, loaded].forEach((x) => x.dispose());
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a QLoRA run resumes from its checkpoint to the losses of an uninterrupted run', async () => {
    const dir = tmp();
    try {
      const start = await pretrained(llama);
      const make = () => {
        const m = start.clone();
        quantizeBase(m, { format: 'nf4' });
        addLora(m, { r: 4, targetModules: 'all-linear' });
        return new Trainer(m, causalLmObjective, new TokenWindows(task(2000), 16, 8, 5),
          { lr: 1e-2, maxSteps: 6, seed: 3, checkpointEvery: 3, outDir: dir }, { checkpoints: checkpointWriter() });
      };
      const whole = make();
      const losses = (await whole.train()).history.map((h) => h.loss);
      const resumed = make();
      resumeFrom(resumed as Trainer<unknown>, path.join(dir, 'checkpoint-3'));
      assert.deepEqual((await resumed.train()).history.map((h) => h.loss), losses, 'same losses, step for step');
      for (const t of [whole, resumed]) { t.dispose(); t.model.dispose(); }
      start.dispose();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names what it refuses: a quantized weight read as float32, DoRA, quantizing twice, bad options, a NaN weight', () => {
    const m = CausalLM.create(llama, { seed: 1 });
    assert.throws(() => quantizeBase(m, { format: 'nf3' as never }), /quantizeBase: format must be "int8" or "nf4" \(got "nf3"\)/);
    assert.throws(() => quantizeBase(m, { bits: 4 } as never), /quantizeBase: unknown option "bits"/);
    assert.throws(() => quantizeBase(m, { format: 'int8', doubleQuant: true }), /doubleQuant applies to "nf4" only/);
    m.weight('layers.1.mlp.up_proj.weight').assign(tf.fill([32, 64], NaN));
    assert.throws(() => quantizeBase(m), /quantizeBase: layers\.1\.mlp\.up_proj\.weight: value NaN at \[0, 0\] is not finite/);
    assert.equal(m.quantized.size, 0, 'a refused quantization leaves the model as it was');
    m.weight('layers.1.mlp.up_proj.weight').assign(tf.zeros([32, 64]));
    quantizeBase(m);
    assert.throws(() => m.weight('layers.0.attn.q_proj.weight'), /"layers\.0\.attn\.q_proj\.weight" is stored quantized \(nf4\) and frozen; dequantizeBase\(model\)/);
    assert.deepEqual(m.weightShape('layers.0.mlp.down_proj.weight'), [64, 32]);
    assert.throws(() => addDora(m, { r: 2 }), /is stored quantized \(nf4\)/);
    assert.throws(() => quantizeBase(m), /nothing to quantize \(already nf4\)/);
    assert.deepEqual(m.linearPaths(), CausalLM.create(llama).linearPaths(), 'linear paths keep their forward order');
    m.dispose();
  });
});
