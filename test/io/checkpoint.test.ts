import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { CausalLM, modelConfig, ModelConfig } from '../../src/model';
import { checkpointWriter, loadModel, saveModel, loadWeightsInto, resumeFrom } from '../../src/io/checkpoint';
import { CRASH_ENV, SimulatedCrash } from '../../src/io/folder';
import { Trainer } from '../../src/train/trainer';
import { TokenWindows, causalLmObjective } from '../../src/train/causal-lm';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors';
import { Tokenizer } from '../../src/tokenizer';
import { engineReady, ids, maxAbsDiff } from '../helpers';

const cfg = (over: Partial<ModelConfig> = {}) => modelConfig({ vocabSize: 300, contextLength: 16, dModel: 32, nLayers: 2, nHeads: 4, dFf: 48, ...over });
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-ckpt-'));
const logits = (m: CausalLM) => tf.tidy(() => Array.from(m.forward(ids([[1, 2, 3, 4, 5]])).dataSync()));

describe('io/checkpoint', () => {
  let tok: Tokenizer;
  before(async () => {
    await engineReady();
    tok = Tokenizer.train(['the cat sat on the mat. the dog sat on the log.'.repeat(20)], { vocabSize: 300 });
  });

  for (const family of ['llama', 'gpt2'] as const) {
    it(`${family}: saves an HF folder and loads it back to identical logits`, async () => {
      const dir = path.join(tmp(), 'model');
      const m = new CausalLM(cfg({ family, nKvHeads: family === 'llama' ? 2 : undefined, tieEmbeddings: family === 'gpt2' }), { seed: 5 });
      await saveModel(dir, m, tok);
      assert.deepEqual(fs.readdirSync(dir).sort(), ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
      const hfConfig = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
      const st = readSafetensors(path.join(dir, 'model.safetensors'));
      if (family === 'llama') {
        assert.equal(hfConfig.model_type, 'llama');
        assert.equal(hfConfig.num_key_value_heads, 2);
        assert.equal(hfConfig.tie_word_embeddings, false);
        // nn.Linear layout [out, in]: q is [32, 32], k is [16, 32] with 2 kv heads of 8.
        assert.deepEqual(st.tensors.get('model.layers.1.self_attn.k_proj.weight')!.shape, [16, 32]);
        assert.deepEqual(st.tensors.get('model.layers.0.mlp.gate_proj.weight')!.shape, [48, 32]);
        assert.deepEqual(st.tensors.get('lm_head.weight')!.shape, [300, 32]);
        const ours = m.weight('layers.1.attn.k_proj.weight').arraySync() as number[][];
        const theirs = st.tensors.get('model.layers.1.self_attn.k_proj.weight')!.read().data;
        assert.equal(theirs[3 * 32 + 7], Math.fround(ours[7][3]), 'HF row = output unit');
      } else {
        assert.equal(hfConfig.model_type, 'gpt2');
        assert.equal(hfConfig.n_embd, 32);
        // Conv1D layout [in, out], q|k|v fused along out.
        assert.deepEqual(st.tensors.get('h.0.attn.c_attn.weight')!.shape, [32, 96]);
        assert.deepEqual(st.tensors.get('h.0.attn.c_attn.bias')!.shape, [96]);
        assert.deepEqual(st.tensors.get('wpe.weight')!.shape, [16, 32]);
        assert.equal(st.tensors.has('lm_head.weight'), false);
        const v = m.weight('layers.0.attn.v_proj.weight').arraySync() as number[][];
        assert.equal(st.tensors.get('h.0.attn.c_attn.weight')!.read().data[5 * 96 + 64 + 2], Math.fround(v[5][2]));
      }
      const { model, tokenizer } = await loadModel(dir);
      assert.deepEqual(model.config, m.config);
      assert.equal(maxAbsDiff(logits(model), logits(m)), 0);
      assert.deepEqual(tokenizer!.encode('the cat'), tok.encode('the cat'));
      model.dispose();
      m.dispose();
    });
  }

  it('reads f16 and bf16 weights, upcast to float32', async () => {
    const dir = path.join(tmp(), 'half');
    const m = new CausalLM(cfg(), { seed: 1 });
    await saveModel(dir, m);
    const file = path.join(dir, 'model.safetensors');
    const st = readSafetensors(file);
    const tensors = new Map([...st.tensors].map(([n, e], i) => [n, { ...e.read(), dtype: (i % 2 ? 'F16' : 'BF16') as 'F16' | 'BF16' }]));
    writeSafetensors(file, tensors);
    const { model } = await loadModel(dir);
    const d = maxAbsDiff(logits(model), logits(m));
    assert.ok(d > 0 && d < 0.05, `half-precision logits differ by ${d}`);
    model.dispose();
    m.dispose();
  });

  it('errors name the file and tensor: shape mismatch, missing, unexpected, bad config', async () => {
    const dir = path.join(tmp(), 'bad');
    const m = new CausalLM(cfg(), { seed: 1 });
    await saveModel(dir, m);
    const file = path.join(dir, 'model.safetensors');
    const good = new Map([...readSafetensors(file).tensors].map(([n, e]) => [n, e.read()]));
    const other = new CausalLM(cfg({ dFf: 40 }), { seed: 1 });
    assert.throws(() => loadWeightsInto(other, dir), (e: Error) => e.message.includes(file) && /model\.layers\.0\.mlp\.gate_proj\.weight" has shape \[48,32\] but the config needs \[40,32\]/.test(e.message));
    const missing = new Map(good);
    missing.delete('model.layers.1.self_attn.v_proj.weight');
    writeSafetensors(file, missing);
    await assert.rejects(loadModel(dir), (e: Error) => e.message.includes(file) && /missing tensor "model\.layers\.1\.self_attn\.v_proj\.weight"/.test(e.message));
    writeSafetensors(file, new Map([...good, ['model.layers.9.extra.weight', { dtype: 'F32', shape: [1], data: new Float32Array(1) }]]));
    await assert.rejects(loadModel(dir), /unexpected tensors for a llama model: model\.layers\.9\.extra\.weight/);
    writeSafetensors(file, good);
    fs.writeFileSync(path.join(dir, 'config.json'), '{"model_type": "bert"}');
    await assert.rejects(loadModel(dir), (e: Error) => e.message.includes('config.json') && /model_type "bert" is not supported/.test(e.message));
    fs.writeFileSync(path.join(dir, 'config.json'), '{oops');
    await assert.rejects(loadModel(dir), /config\.json: invalid JSON/);
    await assert.rejects(loadModel(path.join(dir, 'nope')), /nope.*config\.json: cannot read/);
    m.dispose();
    other.dispose();
  });

  it('replaces an existing folder only once the new one is complete', async () => {
    const root = tmp();
    const dir = path.join(root, 'model');
    const m = new CausalLM(cfg(), { seed: 1 });
    await saveModel(dir, m);
    const before = fs.readFileSync(path.join(dir, 'model.safetensors'));
    const broken = { ...tok, save: () => { throw new Error('disk full'); }, specialTokens: tok.specialTokens } as unknown as Tokenizer;
    await assert.rejects(saveModel(dir, m, broken), /disk full/);
    assert.deepEqual(fs.readFileSync(path.join(dir, 'model.safetensors')), before);
    assert.deepEqual(fs.readdirSync(root), ['model'], 'no temporary folder left behind');
    m.dispose();
  });

  it('a checkpoint cut between its two renames is put back by resumeFrom (one stderr line), with umask permissions', async () => {
    const dir = path.join(tmp(), 'checkpoint-2');
    const windows = () => new TokenWindows(Array.from({ length: 400 }, (_, i) => (i * 7) % 300), 8, 4);
    const t = new Trainer(new CausalLM(cfg(), { seed: 1 }), causalLmObjective, windows(), { lr: 1e-3, maxSteps: 2 });
    await t.train();
    const io = checkpointWriter(tok);
    await io.save(dir, t as Trainer<unknown>);
    process.env[CRASH_ENV] = 'moved-aside';
    try {
      await assert.rejects(io.save(dir, t as Trainer<unknown>), SimulatedCrash);
    } finally {
      delete process.env[CRASH_ENV];
    }
    assert.ok(!fs.existsSync(dir), 'the crash hit between the renames');
    const resumed = new Trainer(new CausalLM(cfg(), { seed: 9 }), causalLmObjective, windows(), { lr: 1e-3, maxSteps: 4 });
    const write = process.stderr.write;
    let log = '';
    process.stderr.write = ((c: string | Uint8Array) => ((log += String(c)), true)) as typeof process.stderr.write;
    try {
      resumeFrom(resumed as Trainer<unknown>, dir);
    } finally {
      process.stderr.write = write;
    }
    assert.equal(resumed.step, 2);
    assert.match(log, /^tunelab: .*checkpoint-2: installed the complete new save \.checkpoint-2\.new-\S+ \(writer pid \d+ died while replacing it\); removed 1 stale temp of crashed saves \([\d.]+ kB\)\n$/);
    assert.deepEqual(fs.readdirSync(path.dirname(dir)), ['checkpoint-2']);
    assert.ok(maxAbsDiff(logits(resumed.model), logits(t.model)) === 0);
    // Created under this process's umask (022 here, as in CI): readable by other users, like models/tiny-llama.
    const mask = process.umask(0o022);
    process.umask(mask);
    assert.equal(fs.statSync(dir).mode & 0o777, 0o777 & ~mask);
    for (const t2 of [t, resumed]) { t2.dispose(); t2.model.dispose(); }
  });
});
