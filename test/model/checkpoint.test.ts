import { strict as assert } from 'assert';
import * as tf from '@tensorflow/tfjs';
import { CausalLM, ModelConfig } from '../../src/model';
import { KVCache } from '../../src/model/attention';
import { Trainer, TrainConfig } from '../../src/train/trainer';
import { LmBatch, TokenWindows, causalLmObjective } from '../../src/train/causal-lm';
import { addDora, addLora } from '../../src/peft/lora';
import { addPrefixTuning } from '../../src/peft/prefix';
import { addLoraMoe, loraMoeBalancePenalty } from '../../src/peft/moe';
import { addIa3 } from '../../src/peft/ia3';
import { addBottleneck } from '../../src/peft/bottleneck';
import { ppo } from '../../src/rlhf/ppo';
import { grpo } from '../../src/rlhf/grpo';
import { base } from '../../src/lab/base';
import { engineReady, maxAbsDiff } from '../helpers';

// Dropout on (model and LoRA) so the recompute must reuse the forward's masks to match.
const tiny = (family: 'llama' | 'gpt2', over: Partial<ModelConfig> = {}) => CausalLM.create(
  { family, vocabSize: 64, contextLength: 32, dModel: 32, nLayers: 3, nHeads: 4, nKvHeads: family === 'llama' ? 2 : 4, dFf: 64, dropout: 0.1, ...over }, { seed: 3 });
const stream = (n: number) => Array.from({ length: n }, (_, i) => (i % 7 === 6 ? (i * 31) % 64 : (i * 3) % 13));

/** Loss and gradients of every trainable parameter on one batch, with or without checkpointing. */
function lossAndGrads(model: CausalLM, batch: LmBatch, checkpointing: boolean): { loss: number; grads: Map<string, Float32Array> } {
  model.gradientCheckpointing = checkpointing;
  try {
    const params = model.trainableParams();
    const { value, grads } = tf.variableGrads(() => causalLmObjective.loss(model, batch, { training: true, seed: 11 }), [...params.values()]);
    const out = new Map([...params].map(([path, v]) => [path, grads[v.name].dataSync() as Float32Array]));
    const loss = value.dataSync()[0];
    tf.dispose([value, ...Object.values(grads)]);
    return { loss, grads: out };
  } finally {
    model.gradientCheckpointing = false;
  }
}

function assertSameGrads(model: CausalLM, batch: LmBatch): void {
  const plain = lossAndGrads(model, batch, false);
  const ckpt = lossAndGrads(model, batch, true);
  assert.ok(Math.abs(plain.loss - ckpt.loss) < 1e-6, `loss ${plain.loss} vs ${ckpt.loss}`);
  assert.deepEqual([...ckpt.grads.keys()], [...plain.grads.keys()]);
  for (const [path, g] of plain.grads) {
    assert.ok(g.some((x) => x !== 0), `${path}: zero gradient (the test would not see a difference)`);
    const d = maxAbsDiff(g, ckpt.grads.get(path)!);
    assert.ok(d < 1e-5, `${path}: max |Δgrad| ${d}`);
  }
}

const batchOf = (seqLen: number, b = 4) => new TokenWindows(stream(2000), seqLen, b, 5).next();
const disposeBatch = (batch: LmBatch) => causalLmObjective.dispose(batch);

/** Peak tensor bytes of one gradient computation (the step's memory high-water mark). */
async function profileStep(model: CausalLM, batch: LmBatch, checkpointing: boolean): Promise<number> {
  model.gradientCheckpointing = checkpointing;
  try {
    const vars = [...model.trainableParams().values()];
    const run = () => {
      const { value, grads } = tf.variableGrads(() => causalLmObjective.loss(model, batch, { training: true, seed: 1 }), vars);
      tf.dispose([value, ...Object.values(grads)]);
    };
    run(); // warm-up (kernel set-up outside the measurement)
    return (await tf.profile(run)).peakBytes;
  } finally {
    model.gradientCheckpointing = false;
  }
}

describe('gradient checkpointing', () => {
  before(engineReady);

  for (const family of ['llama', 'gpt2'] as const) {
    it(`${family}: gradients equal the plain path (full fine-tuning and LoRA with dropout)`, () => {
      const model = tiny(family);
      const batch = batchOf(16);
      assertSameGrads(model, batch); // every base weight: embeddings, blocks, final norm, head
      addLora(model, { r: 4, dropout: 0.1, initLoraWeights: false, targetModules: ['q_proj', 'v_proj', 'up_proj', 'down_proj'] });
      assertSameGrads(model, batch); // adapters living on the blocks
      disposeBatch(batch);
      model.dispose();
    });
  }

  // Random adapter weights, so no gradient is zero by initialisation (bottleneck's up projection starts at 0).
  for (const [name, add] of [['DoRA', addDora], ['IA3', addIa3], ['bottleneck', addBottleneck]] as const) {
    it(`${name}: gradients equal the plain path`, () => {
      const model = tiny('llama');
      add(model);
      let seed = 1;
      for (const p of model.adapterParams.values()) p.variable.assign(tf.tidy(() => tf.add(p.variable, tf.randomNormal(p.variable.shape, 0, 0.1, 'float32', seed++))));
      const batch = batchOf(12);
      assertSameGrads(model, batch);
      disposeBatch(batch);
      model.dispose();
    });
  }

  it('prefix tuning: gradients reach the prefixes through the checkpointed blocks', () => {
    const model = tiny('llama');
    addPrefixTuning(model, { numVirtualTokens: 3 });
    const batch = batchOf(12);
    assertSameGrads(model, batch);
    disposeBatch(batch);
    model.dispose();
  });

  it('a Trainer run gives the same losses with and without it, with a flat tensor count', async () => {
    const run = async (gradientCheckpointing: boolean) => {
      const model = tiny('llama');
      addLora(model, { r: 4, dropout: 0.1 });
      const config: Partial<TrainConfig> = { lr: 3e-3, maxSteps: 4, gradientCheckpointing, seed: 7 };
      const trainer = new Trainer(model, causalLmObjective, new TokenWindows(stream(2000), 16, 4, 3), config);
      const counts: number[] = [];
      trainer.on('step', () => counts.push(tf.memory().numTensors));
      const result = await trainer.train();
      assert.equal(model.gradientCheckpointing, false, 'the trainer leaves the model as it found it');
      model.dispose();
      return { losses: result.history.map((m) => m.loss), counts };
    };
    const plain = await run(false);
    const ckpt = await run(true);
    assert.equal(ckpt.losses.length, 4);
    assert.ok(maxAbsDiff(plain.losses, ckpt.losses) < 1e-5, `losses ${plain.losses} vs ${ckpt.losses}`);
    assert.ok(ckpt.losses[3] < ckpt.losses[0], 'it trains');
    assert.deepEqual(new Set(ckpt.counts.slice(1)).size, 1, `tensor counts per step ${ckpt.counts}`);
  });

  it('PPO and GRPO take the option too: the same losses and KL with and without it (shipped base)', async () => {
    const { model, tokenizer } = await base('tiny-llama');
    const prompts = ['the cat', 'a dog ran', 'once upon', 'we went to', 'it was', 'she said'];
    const reward = (_p: string, completion: string) => completion.length / 10; // varies, so advantages are not all 0
    const metrics = (history: object[]) => history.flatMap((h) => Object.entries(h).filter(([k]) => /loss|kl/.test(k)).map(([, v]) => v as number));
    for (const [name, train] of [
      ['ppo', (m: CausalLM, gradientCheckpointing: boolean) => ppo(m, tokenizer, prompts, reward, { maxSteps: 2, batchSize: 4, responseLength: 4, seed: 1, gradientCheckpointing })],
      ['grpo', (m: CausalLM, gradientCheckpointing: boolean) => grpo(m, tokenizer, prompts, reward, { maxSteps: 2, batchSize: 2, numGenerations: 4, maxCompletionLength: 4, beta: 0.04, seed: 1, gradientCheckpointing })],
    ] as const) {
      const runs: number[][] = [];
      for (const on of [false, true]) {
        const m = model.clone();
        // Did any forward run checkpointed? (the switch must reach the method's own gradient computation)
        let seen = false;
        const hidden = m.hidden.bind(m);
        m.hidden = (...args) => { seen ||= m.gradientCheckpointing; return hidden(...args); };
        runs.push(metrics((await train(m, on)).history as object[]));
        assert.equal(seen, on, `${name}: checkpointed forwards ${seen}`);
        assert.equal(m.gradientCheckpointing, false);
        m.dispose();
      }
      assert.ok(runs[0].length >= 4 && runs[0].some((x) => x !== 0), `${name}: metrics ${runs[0]}`);
      assert.ok(maxAbsDiff(runs[0], runs[1]) < 1e-5, `${name}: ${runs[0]} vs ${runs[1]}`);
    }
    model.dispose();
  });

  it('lowers the peak tensor memory of a step at two sequence lengths', async () => {
    const model = tiny('llama', { nLayers: 4, dropout: 0 });
    const rows: string[] = [];
    for (const seqLen of [16, 32]) {
      const batch = batchOf(seqLen, 8);
      const plain = await profileStep(model, batch, false);
      const ckpt = await profileStep(model, batch, true);
      disposeBatch(batch);
      rows.push(`T=${seqLen}: peak ${plain} → ${ckpt} bytes`);
      assert.ok(ckpt < plain, rows[rows.length - 1]);
    }
    model.dispose();
  });

  it('refuses what it cannot support, naming the option', () => {
    const model = tiny('llama');
    model.gradientCheckpointing = true;
    const cache = new KVCache(3);
    assert.throws(() => tf.tidy(() => { model.hidden(tf.tensor2d([[1, 2]], [1, 2], 'int32'), { cache }); }), /gradientCheckpointing cannot be combined with a KV cache/);
    cache.dispose();
    model.gradientCheckpointing = false;

    // A hook on layer 1 that reads a trainable weight of layer 0 would lose that gradient: refused in the backward.
    model.hooks.linear.set('layers.1.attn.q_proj', (x, base) => tf.add(base(x), tf.sum(model.weight('layers.0.attn.q_proj.weight'))) as tf.Tensor2D);
    const batch = batchOf(8);
    assert.throws(() => lossAndGrads(model, batch, true), /gradientCheckpointing: layers\.1 reads trainable parameter "layers\.0\.attn\.q_proj\.weight"/);
    model.hooks.linear.clear();
    model.dispose();

    const moe = tiny('llama');
    addLoraMoe(moe, { experts: 2, topK: 1 });
    const penalty = loraMoeBalancePenalty(moe);
    assert.throws(() => new Trainer(moe, causalLmObjective, new TokenWindows(stream(500), 8, 2), { gradientCheckpointing: true }, { penalty }),
      /TrainConfig\.gradientCheckpointing cannot be combined with the LoRA-MoE balance penalty/);
    assert.throws(() => new Trainer(moe, causalLmObjective, new TokenWindows(stream(500), 8, 2), { gradientCheckpointing: 1 as unknown as boolean }), /TrainConfig\.gradientCheckpointing must be true or false/);
    penalty.dispose();
    disposeBatch(batch);
    moe.dispose();
  });
});
