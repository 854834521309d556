/** The tiny models, token streams and probes every PEFT suite shares (one copy, so the suites test the same thing). */
import * as tf from '@tensorflow/tfjs';
import { CausalLM, ModelConfig } from '../../src/model';
import { Trainer } from '../../src/train/trainer';
import { TokenWindows, causalLmObjective } from '../../src/train/causal-lm';
import { ids } from '../helpers';

/** Both families at test size (64 tokens, d 32, 2 layers; Llama with grouped-query attention). */
export function tinyFamilies(contextLength = 16): { llama: Partial<ModelConfig>; gpt2: Partial<ModelConfig> } {
  return {
    llama: { family: 'llama', vocabSize: 64, dModel: 32, nLayers: 2, nHeads: 4, nKvHeads: 2, dFf: 64, contextLength },
    gpt2: { family: 'gpt2', vocabSize: 64, dModel: 32, nLayers: 2, nHeads: 4, dFf: 64, contextLength },
  };
}

/** A learnable stream: a repeating pattern with some seeded noise (as test/train/trainer.test.ts). */
export const stream = (n: number) => Array.from({ length: n }, (_, i) => (i % 7 === 6 ? (i * 31) % 64 : (i * 3) % 13));

/** The fine-tuning task: another pattern, so an adapter has something to learn beyond the base. */
export const task = (n: number) => Array.from({ length: n }, (_, i) => (i % 5 === 4 ? (i * 17) % 64 : 20 + ((i * 5) % 11)));

/** A small base model briefly pretrained on {@link stream} (a random one's logits are too flat to adapt). */
export async function pretrained(cfg: Partial<ModelConfig>): Promise<CausalLM> {
  const model = CausalLM.create(cfg, { seed: 1 });
  const t = new Trainer(model, causalLmObjective, new TokenWindows(stream(2000), 16, 8, 3), { lr: 1e-2, maxSteps: 20 });
  await t.train();
  t.dispose();
  return model;
}

/** Two 8-token rows: the default probe of {@link logitsOf}. */
export const probeRows = [[1, 2, 3, 4, 5, 6, 7, 8], [9, 10, 11, 12, 13, 14, 15, 16]];

/** The model's logits on `rows`, flat, as a host copy. */
export function logitsOf(model: CausalLM, rows: number[][] = probeRows, options: { training?: boolean; seed?: number } = {}): Float32Array {
  const t = tf.tidy(() => model.forward(ids(rows), options));
  const d = t.dataSync().slice() as Float32Array;
  t.dispose();
  return d;
}

/** The model's logits on `rows` as nested arrays (B, T, V). */
export const logitsArray = (m: CausalLM, rows: number[][], options = {}) => tf.tidy(() => m.forward(ids(rows), options).arraySync()) as number[][][];

/** Host copies of the base weights by path (to check that an adapter leaves them untouched). */
export const baseWeights = (model: CausalLM) => new Map([...model.params].map(([k, p]) => [k, p.variable.dataSync().slice() as Float32Array]));
