/**
 * Model folders and training checkpoints. A model folder is what Hugging Face tools expect:
 * `config.json`, `model.safetensors` (HF names) and `tokenizer.json`. A training checkpoint adds
 * `optimizer.safetensors` and `trainer_state.json`. Both are written with `writeFolderAtomic` (a crash
 * never leaves a half-written folder) and loaded after `recoverFolder` (a crashed save is repaired first).
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { CausalLM } from '../model/transformer';
import { ensureEngine } from '../engine/backend';
import { Tokenizer } from '../tokenizer/tokenizer';
import { chatmlJinja, chatTemplateFromConfig, type ChatTemplate, type TokenizerConfigJson } from '../data/chat';
import type { Trainer, TrainerState, CheckpointIO } from '../train/trainer';
import { hfTrainerState } from '../train/trainer-state';
import { readJson, writeJsonAtomic } from './atomic';
import { HostTensor, fromHfConfig, fromHfTensors, toHfConfig, toHfTensors } from './hf';
import { readSafetensors, readShardedSafetensors, writeSafetensors } from './safetensors';
import { writeFolderAtomic, type WriteFolderOptions } from './folder';
import { recoverFolder } from './recover';

/** Parameters of a model copied to plain memory. */
export async function hostParams(model: CausalLM): Promise<Map<string, HostTensor>> {
  const out = new Map<string, HostTensor>();
  for (const [p, { variable }] of model.params) out.set(p, { shape: variable.shape, data: (await variable.data()) as Float32Array });
  // A quantized base is written as the float32 values it computes with.
  for (const [p, q] of model.quantized) out.set(p, { shape: [...q.shape], data: q.dequantize() });
  return out;
}

/** Writes the model files (config, weights, tokenizer) into an existing folder. */
async function writeModelFiles(dir: string, model: CausalLM, tokenizer?: Tokenizer): Promise<void> {
  const special = tokenizer ? { bos: tokenizer.specialTokens.bos?.id, eos: tokenizer.specialTokens.eos?.id, pad: tokenizer.specialTokens.pad?.id } : {};
  writeJsonAtomic(path.join(dir, 'config.json'), toHfConfig(model.config, special));
  writeSafetensors(path.join(dir, 'model.safetensors'), toHfTensors(model.config, await hostParams(model)), { format: 'pt' });
  if (tokenizer) {
    tokenizer.save(path.join(dir, 'tokenizer.json'));
    writeJsonAtomic(path.join(dir, 'tokenizer_config.json'), tokenizerConfig(tokenizer, model.config.contextLength));
  }
}

/**
 * `tokenizer_config.json` for HF tools: special-token names, no automatic bos/eos (tunelab adds none),
 * and the ChatML chat template when the tokenizer has its delimiters.
 */
export function tokenizerConfig(tokenizer: Tokenizer, contextLength: number): Record<string, unknown> {
  const st = tokenizer.specialTokens;
  const out: Record<string, unknown> = {
    tokenizer_class: 'PreTrainedTokenizerFast', model_max_length: contextLength, add_bos_token: false, add_eos_token: false,
    clean_up_tokenization_spaces: false, bos_token: st.bos?.token ?? null, eos_token: st.eos?.token ?? null,
    pad_token: st.pad?.token ?? null, unk_token: st.unk?.token ?? null,
  };
  if (st.imStart && st.imEnd) out.chat_template = chatmlJinja({ imStart: st.imStart.token, imEnd: st.imEnd.token });
  return out;
}

/**
 * Saves a model (and its tokenizer) as a Hugging Face folder, crash-safely (see `writeFolderAtomic`): an
 * existing folder is replaced only once the new one is complete; when the save fails on a full disk the
 * error names the destination and, unless `options.rescue` is false, a copy under the OS temp folder.
 *
 * @example
 * await saveModel('runs/demo/final', model, tokenizer);
 */
export async function saveModel(dir: string, model: CausalLM, tokenizer?: Tokenizer, options: WriteFolderOptions = {}): Promise<void> {
  await writeFolderAtomic(dir, (tmp) => writeModelFiles(tmp, model, tokenizer), options);
}

/** Reads `config.json` of a model folder into a tunelab config. */
export function loadModelConfig(dir: string) {
  const file = path.join(dir, 'config.json');
  return fromHfConfig(readJson(file), file);
}

/** Copies a folder's weights (HF names) into a model of the same config; errors name file and tensor. */
export function loadWeightsInto(model: CausalLM, dir: string): void {
  if (!fs.existsSync(dir)) throw new Error(`${dir}: no such model folder`);
  const { tensors } = readShardedSafetensors(dir);
  const source = path.join(dir, fs.existsSync(path.join(dir, 'model.safetensors.index.json')) ? 'model.safetensors.index.json' : 'model.safetensors');
  const expected = new Map([...model.params].map(([p, { variable }]) => [p, variable.shape]));
  for (const [p, q] of model.quantized) expected.set(p, [...q.shape]);
  const get = (name: string): HostTensor | undefined => {
    const entry = tensors.get(name);
    if (!entry) return undefined;
    const t = entry.read();
    if (!(t.data instanceof Float32Array)) throw new Error(`${source}: tensor "${name}" has dtype ${t.dtype}; expected a float dtype`);
    return { shape: [...t.shape], data: t.data };
  };
  const params = fromHfTensors(model.config, expected, [...tensors.keys()], get, source);
  tf.tidy(() => {
    // A quantized base stays as it is: its frozen weights were saved as their decoded values (resume).
    for (const [p, t] of params) if (!model.quantized.has(p)) model.weight(p).assign(tf.tensor(t.data, t.shape));
  });
}

/** What {@link loadModel} returns. */
export interface LoadedModel {
  model: CausalLM;
  /** From `tokenizer.json`, with special-token roles from `tokenizer_config.json` when present. */
  tokenizer?: Tokenizer;
  /** The `chat_template` of `tokenizer_config.json` (needs the optional `@huggingface/jinja`). */
  chatTemplate?: ChatTemplate;
  /** Things read but not usable, e.g. a chat template without `@huggingface/jinja` installed. */
  warnings: string[];
}

const tokenName = (t: unknown): string | undefined =>
  typeof t === 'string' ? t : t && typeof (t as { content?: unknown }).content === 'string' ? (t as { content: string }).content : undefined;

/**
 * Loads a model folder saved by tunelab or by Hugging Face (Llama, Mistral-style Llama or GPT-2;
 * `model.safetensors` or a sharded `model.safetensors.index.json`; f32/f16/bf16), with its tokenizer
 * and, from `tokenizer_config.json`, the special-token roles and chat template.
 *
 * @example
 * const { model, tokenizer, chatTemplate } = await loadModel('runs/demo/final');
 */
export async function loadModel(dir: string): Promise<LoadedModel> {
  recoverFolder(dir);
  await ensureEngine(); // never tfjs's silent cpu fallback
  const config = loadModelConfig(dir);
  const model = new CausalLM(config);
  try {
    loadWeightsInto(model, dir);
  } catch (e) {
    model.dispose();
    throw e;
  }
  const warnings: string[] = [];
  const tokFile = path.join(dir, 'tokenizer.json');
  const tcFile = path.join(dir, 'tokenizer_config.json');
  const tc = fs.existsSync(tcFile) ? (readJson(tcFile) as TokenizerConfigJson & Record<string, unknown>) : undefined;
  const roles = tc && Object.fromEntries((['bos', 'eos', 'pad', 'unk'] as const)
    .map((r) => [r, tokenName(tc[`${r}_token`])] as const).filter(([, v]) => v !== undefined));
  let tokenizer: Tokenizer | undefined;
  try {
    tokenizer = fs.existsSync(tokFile) ? Tokenizer.load(tokFile, roles && Object.keys(roles).length ? { specialTokens: roles } : {}) : undefined;
  } catch (e) {
    model.dispose();
    throw e;
  }
  if (tokenizer && tokenizer.vocabSize > config.vocabSize) {
    model.dispose();
    throw new Error(`${tokFile}: tokenizer has ${tokenizer.vocabSize} tokens but config.json vocab_size is ${config.vocabSize}`);
  }
  let chatTemplate: ChatTemplate | undefined;
  if (tc?.chat_template !== undefined) {
    try {
      chatTemplate = chatTemplateFromConfig(tc, tcFile);
    } catch (e) {
      warnings.push(`${tcFile}: chat_template not loaded: ${(e as Error).message}`);
    }
  }
  return { model, tokenizer, chatTemplate, warnings };
}

/** Saved alongside each training checkpoint. */
interface TrainerStateFile extends TrainerState {
  format: 'tunelab-trainer-state';
  optimizerStep: number;
  config: unknown;
}

/** tunelab's resume state in a checkpoint; `trainer_state.json` beside it is Hugging Face's `TrainerState`. */
export const RESUME_STATE_FILE = 'tunelab_state.json';

/**
 * Writes training checkpoints: model folder + optimizer moments + trainer position ({@link RESUME_STATE_FILE})
 * + Hugging Face's `trainer_state.json` (global_step, log_history, best_metric, …).
 *
 * @example
 * const trainer = new Trainer(model, objective, data, { checkpointEvery: 100, outDir: 'runs/x' }, { checkpoints: checkpointWriter(tokenizer) });
 * @param options - `{ rescue: false }` when the caller keeps the weights its own way after a failed save
 */
export function checkpointWriter(tokenizer?: Tokenizer, options: WriteFolderOptions = {}): CheckpointIO {
  return {
    async save(dir: string, trainer: Trainer<unknown>) {
      await writeFolderAtomic(dir, async (tmp) => {
        await writeModelFiles(tmp, trainer.model, tokenizer);
        // Adapter and head weights (PEFT, reward/value heads) are not part of the model folder: kept beside it.
        if (trainer.model.adapterParams.size > 0) {
          const extra = new Map<string, HostTensor>();
          for (const [k, p] of trainer.model.adapterParams) extra.set(k, { shape: [...p.variable.shape], data: (await p.variable.data()) as Float32Array });
          writeSafetensors(path.join(tmp, ADAPTER_PARAMS_FILE), extra, { format: 'tunelab' });
        }
        const { step, tensors } = await trainer.optimizer.state();
        writeSafetensors(path.join(tmp, 'optimizer.safetensors'), tensors, { format: 'tunelab', step: String(step) });
        const state: TrainerStateFile = { format: 'tunelab-trainer-state', ...trainer.state(), optimizerStep: step, config: trainer.config };
        writeJsonAtomic(path.join(tmp, RESUME_STATE_FILE), state);
        writeJsonAtomic(path.join(tmp, 'trainer_state.json'), hfTrainerState(trainer, dir));
      }, options);
    },
  };
}

/** Adapter and head weights of a training checkpoint (`model.adapterParams` by key). */
export const ADAPTER_PARAMS_FILE = 'adapter_params.safetensors';

/** Restores `model.adapterParams` from a checkpoint; the model must carry the same adapters (attach them first). */
function loadAdapterParamsInto(model: CausalLM, dir: string): void {
  const file = path.join(dir, ADAPTER_PARAMS_FILE);
  if (!fs.existsSync(file)) {
    if (model.adapterParams.size > 0) throw new Error(`${dir}: the model has adapter weights (${[...model.adapterParams.keys()][0]}, …) but the checkpoint has no ${ADAPTER_PARAMS_FILE}`);
    return;
  }
  const { tensors } = readSafetensors(file);
  for (const k of tensors.keys()) if (!model.adapterParams.has(k)) throw new Error(`${file}: tensor "${k}" has no adapter weight in the model; attach the same adapters before resuming`);
  for (const [k, p] of model.adapterParams) {
    const entry = tensors.get(k);
    if (!entry) throw new Error(`${file}: missing tensor "${k}"`);
    if (entry.shape.join() !== p.variable.shape.join()) throw new Error(`${file}: tensor "${k}" has shape [${entry.shape}], the model's is [${p.variable.shape}]`);
    const t = entry.read();
    tf.tidy(() => p.variable.assign(tf.tensor(t.data as Float32Array, p.variable.shape)));
  }
}

/**
 * Restores weights, optimizer moments and trainer position from a checkpoint folder into a trainer built
 * with the same model config and data; training then continues to the same losses as an uninterrupted run.
 */
export function resumeFrom(trainer: Trainer<unknown>, dir: string): void {
  recoverFolder(dir);
  loadWeightsInto(trainer.model, dir);
  loadAdapterParamsInto(trainer.model, dir);
  // Checkpoints written before trainer_state.json became HF's kept tunelab's state there.
  const stateFile = path.join(dir, fs.existsSync(path.join(dir, RESUME_STATE_FILE)) ? RESUME_STATE_FILE : 'trainer_state.json');
  const state = readJson(stateFile) as unknown as TrainerStateFile;
  if (state.format !== 'tunelab-trainer-state' || typeof state.step !== 'number') throw new Error(`${stateFile}: not a tunelab trainer state`);
  const optFile = path.join(dir, 'optimizer.safetensors');
  const opt = readSafetensors(optFile);
  const moments = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, entry] of opt.tensors) {
    const t = entry.read();
    moments.set(name, { shape: [...t.shape], data: t.data as Float32Array });
  }
  trainer.optimizer.restore(state.optimizerStep, moments, optFile);
  trainer.restore(state);
  trainer.lastCheckpoint = dir;
}
