/**
 * Every PEFT method through saveAdapter → loadAdapter on both families, and through the two training
 * entry points (continued pretraining, SFT) with only the adapter's weights moving.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { CausalLM, ModelConfig } from '../../src/model';
import { Tokenizer } from '../../src/tokenizer';
import { continuedPretraining } from '../../src/train/pretrain';
import { sft } from '../../src/train/sft';
import type { SftRow } from '../../src/data/tokenize';
import { readSafetensors } from '../../src/io/safetensors';
import {
  ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, Adapter, PeftType, addBottleneck, addIa3, addLora, addLoraMoe, addPrefixTuning, addPromptTuning,
  loadAdapter, peft, saveAdapter,
} from '../../src/peft';
import { baseWeights, logitsOf, tinyFamilies } from './fixtures';
import { engineReady, maxAbsDiff } from '../helpers';

const families = tinyFamilies();
/** The same family one size up: every adapter tensor changes shape. */
const bigger = (cfg: Partial<ModelConfig>): Partial<ModelConfig> => ({ ...cfg, dModel: 48, dFf: 96 });

interface Method {
  label: string;
  peftType: PeftType;
  add(model: CausalLM): Adapter;
}

const methods: Method[] = [
  { label: 'LoRA', peftType: 'LORA', add: (m) => addLora(m, { r: 4, alpha: 8, targetModules: 'all-linear', bias: m.config.family === 'gpt2' ? 'lora_only' : 'none' }) },
  { label: 'IA3', peftType: 'IA3', add: (m) => addIa3(m) },
  { label: 'IA3 (all-linear)', peftType: 'IA3', add: (m) => addIa3(m, { targetModules: 'all-linear' }) },
  { label: 'bottleneck', peftType: 'BOTTLENECK', add: (m) => addBottleneck(m, { bottleneckSize: 4, nonLinearity: 'gelu' }) },
  { label: 'prefix tuning', peftType: 'PREFIX_TUNING', add: (m) => addPrefixTuning(m, { numVirtualTokens: 4 }) },
  { label: 'prefix tuning + projection', peftType: 'PREFIX_TUNING', add: (m) => addPrefixTuning(m, { numVirtualTokens: 4, prefixProjection: true, encoderHiddenSize: 8 }) },
  { label: 'prompt tuning', peftType: 'PROMPT_TUNING', add: (m) => addPromptTuning(m, { numVirtualTokens: 4 }) },
  { label: 'LoRA mixture', peftType: 'LORA_MOE', add: (m) => addLoraMoe(m, { experts: 3, r: 2, topK: 2, targetModules: ['q_proj', 'v_proj', 'down_proj'] }) },
];


const snapshot = baseWeights;

function assertSame(a: Map<string, ArrayLike<number>>, b: Map<string, ArrayLike<number>>, what: string): void {
  assert.deepEqual([...a.keys()], [...b.keys()], what);
  for (const [k, v] of a) assert.ok(maxAbsDiff(v, b.get(k)!) === 0, `${what}: ${k} changed`);
}

/** Moves every adapter weight by seeded noise (as training would), so no adapter is a no-op. */
function perturb(weights: ReadonlyMap<string, tf.Variable>, seed: number): void {
  let s = seed;
  for (const v of weights.values()) tf.tidy(() => v.assign(tf.add(v, tf.randomNormal(v.shape, 0, 0.2, 'float32', s++))));
}

describe('peft: save/load round trip of every method', function () {
  this.timeout(120000);
  let tmp: string;
  before(async () => {
    await engineReady();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-roundtrip-'));
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  for (const [family, cfg] of Object.entries(families)) {
    for (const method of methods) {
      it(`${family}: ${method.label}`, async () => {
        const dir = path.join(tmp, `${family}-${method.label.replace(/\W+/g, '_')}`);
        const model = CausalLM.create(cfg, { seed: 1 });
        const base = snapshot(model);
        const baseLogits = logitsOf(model);
        const adapter = method.add(model);
        assert.equal(adapter.peftType, method.peftType);
        perturb(adapter.weights, 7);
        const adapted = logitsOf(model);
        assert.ok(maxAbsDiff(adapted, baseLogits) > 1e-4, 'the perturbed adapter changes the logits');
        await saveAdapter(model, dir);
        assertSame(snapshot(model), base, 'base after adding and saving');

        const config = JSON.parse(fs.readFileSync(path.join(dir, ADAPTER_CONFIG_FILE), 'utf8')) as Record<string, unknown>;
        assert.equal(config.peft_type, method.peftType);
        const keys = [...readSafetensors(path.join(dir, ADAPTER_WEIGHTS_FILE)).tensors.keys()];
        assert.ok(keys.length > 0);

        // A fresh copy of the same base (same seed) gets the same logits.
        const fresh = CausalLM.create(cfg, { seed: 1 });
        assertSame(snapshot(fresh), base, 'fresh copy of the base');
        const loaded = loadAdapter(fresh, dir);
        assert.equal(loaded.peftType, method.peftType);
        assert.deepEqual(peft(fresh).activeNames, ['default']);
        const d = maxAbsDiff(logitsOf(fresh), adapted);
        assert.ok(d < 1e-6, `logits after load differ by ${d}`);
        assertSame(snapshot(fresh), base, 'base after loading');
        // Saving the loaded adapter again gives the same tensors (keys and values).
        const again = path.join(dir, 'again');
        await saveAdapter(fresh, again);
        const t1 = readSafetensors(path.join(dir, ADAPTER_WEIGHTS_FILE)).tensors;
        const t2 = readSafetensors(path.join(again, ADAPTER_WEIGHTS_FILE)).tensors;
        assert.deepEqual([...t2.keys()].sort(), [...t1.keys()].sort());
        for (const [k, e] of t1) assert.ok(maxAbsDiff(e.read().data, t2.get(k)!.read().data) < 1e-6, `re-saved ${k}`);

        // A base of another size: an error naming the file and a tensor, nothing attached, nothing leaked.
        const other = CausalLM.create(bigger(cfg), { seed: 1 });
        const tensorsBefore = tf.memory().numTensors;
        assert.throws(() => loadAdapter(other, dir), (e: Error) => {
          assert.ok(e.message.includes(path.join(dir, ADAPTER_WEIGHTS_FILE)), e.message);
          assert.ok(keys.some((k) => e.message.includes(`"${k}"`) || e.message.includes(`${k} has shape`)), `names a tensor: ${e.message}`);
          return true;
        });
        assert.deepEqual(peft(other).names, []);
        assert.equal(other.adapterParams.size, 0);
        assert.equal(tf.memory().numTensors, tensorsBefore);
        model.dispose();
        fresh.dispose();
        other.dispose();
      });
    }
  }

  it('IA3 files use PEFT keys and shapes: ...k_proj.ia3_l (out, 1), ...down_proj.ia3_l (1, in)', async () => {
    const dir = path.join(tmp, 'ia3-layout');
    const model = CausalLM.create(families.llama, { seed: 1 });
    addIa3(model);
    await saveAdapter(model, dir);
    const st = readSafetensors(path.join(dir, ADAPTER_WEIGHTS_FILE)).tensors;
    assert.deepEqual([...st.keys()].sort(), [0, 1].flatMap((i) => ['self_attn.k_proj', 'self_attn.v_proj', 'mlp.down_proj'].map((m) => `base_model.model.model.layers.${i}.${m}.ia3_l`)).sort());
    assert.deepEqual(st.get('base_model.model.model.layers.0.self_attn.k_proj.ia3_l')!.shape, [16, 1]);
    assert.deepEqual(st.get('base_model.model.model.layers.0.self_attn.v_proj.ia3_l')!.shape, [16, 1]);
    assert.deepEqual(st.get('base_model.model.model.layers.0.mlp.down_proj.ia3_l')!.shape, [1, 64]);
    const config = JSON.parse(fs.readFileSync(path.join(dir, ADAPTER_CONFIG_FILE), 'utf8')) as Record<string, unknown>;
    assert.deepEqual(config.target_modules, ['k_proj', 'v_proj', 'down_proj']);
    assert.deepEqual(config.feedforward_modules, ['down_proj']);
    model.dispose();
  });
});

describe('peft: every method trains under continued pretraining and SFT', function () {
  this.timeout(120000);
  const texts = [
    'The cat sat on the mat and looked at the door.',
    'A dog ran to the park and played with a ball.',
    'Rain fell on the roof all night long.',
    'The sun rose over the hills and the birds sang.',
    'She read a book by the window in the morning.',
    'He cooked rice and beans for dinner.',
    'The train left the station at noon.',
    'Children laughed as the kite rose into the sky.',
  ];
  const rows: SftRow[] = [
    { prompt: 'Where did the cat sit?', completion: ' On the mat.' },
    { prompt: 'What did the dog play with?', completion: ' A ball.' },
    { prompt: 'When did the train leave?', completion: ' At noon.' },
    { prompt: 'What fell on the roof?', completion: ' Rain.' },
  ];
  let tok: Tokenizer;
  before(async () => {
    await engineReady();
    tok = Tokenizer.train(texts, { vocabSize: 300 });
  });

  for (const method of methods) {
    for (const trainer of ['continuedPretraining', 'sft'] as const) {
      it(`${method.label}: ${trainer}, 2 steps, only adapter weights change`, async () => {
        // Alternate families so both see every trainer.
        const family = (methods.indexOf(method) + (trainer === 'sft' ? 1 : 0)) % 2 === 0 ? families.llama : families.gpt2;
        const model = CausalLM.create({ ...family, vocabSize: tok.vocabSize, contextLength: 32 }, { seed: 3 });
        const adapter = method.add(model);
        const base = snapshot(model);
        const before = new Map([...adapter.weights].map(([k, v]) => [k, v.dataSync().slice()]));
        const r = trainer === 'sft'
          ? await sft(model, tok, rows, { maxSteps: 2, batchSize: 2, lr: 1e-2 })
          : await continuedPretraining(model, tok, texts, { maxSteps: 2, batchSize: 2, seqLen: 8, lr: 1e-2 });
        assert.equal(r.steps, 2);
        assert.ok(r.history.every((h) => Number.isFinite(h.loss)), 'finite losses');
        assertSame(snapshot(model), base, 'base after training');
        const moved = [...adapter.weights].filter(([k, v]) => maxAbsDiff(v.dataSync(), before.get(k)!) > 0);
        assert.ok(moved.length > 0, 'some adapter weight moved');
        model.dispose();
      });
    }
  }
});
