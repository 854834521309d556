/**
 * Adapters on their own, in Hugging Face PEFT's folder layout: `adapter_config.json` (the adapter's
 * `peftConfig()`) and `adapter_model.safetensors`. LoRA uses PEFT's exact keys (llama:
 * `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight` [r, in]); other methods either give
 * their own keys with `fileTensors` or get `base_model.model.<weight key>`. Loading dispatches on
 * `peft_type` through {@link adapterLoaders}.
 *
 * GPT-2: tunelab splits HF's fused `c_attn` (one Conv1D, [in, out]) into q/k/v_proj. Files use HF's
 * modules only, so `PeftModel.from_pretrained` finds them on `GPT2LMHeadModel`: q/k/v LoRAs become one
 * exact block LoRA on `c_attn` (rank k·r, scale kept by `rank_pattern` / `alpha_pattern`), IA3 vectors
 * one `c_attn.ia3_l`, biases one `c_attn.bias`; `fan_in_fan_out` is true as PEFT sets it for Conv1D.
 * On load, tunelab's metadata splits them back; PEFT's own `c_attn` LoRAs load exactly as q/k/v LoRAs
 * sharing A. DoRA (`use_dora`) adds `lora_magnitude_vector` [out] per module; c_attn's is q | k | v's.
 * Files of older tunelab versions (`attn.q_proj` names, a `tunelab` key in
 * adapter_config.json, prompt tuning's RANDOM_DISCRETE) still load.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import type { CausalLM } from '../model/transformer';
import type { HostTensor } from '../io/hf';
import { readJson, writeJsonAtomic } from '../io/atomic';
import { readSafetensors, SafeTensorEntry, writeSafetensors } from '../io/safetensors';
import { recoverFolder } from '../io/recover';
import { Adapter, peft, PeftType } from './peft';
import { addLora, gpt2QkvPaths, hfModuleMembers, hfModulePath, LoraAdapter, LoraBias, LoraInit } from './lora';
import { columnNorm } from './dora';

/** File names PEFT's `save_pretrained` writes. */
export const ADAPTER_CONFIG_FILE = 'adapter_config.json';
export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors';
/**
 * tunelab's own metadata of an adapter (seed, exact target paths), beside PEFT's files: PEFT reads only
 * the two above, and an unknown key in adapter_config.json makes `PeftConfig.from_peft_type` warn that
 * the file came from "a higher version" of PEFT. Older tunelab folders kept it under a `tunelab` key of
 * adapter_config.json; both are read.
 */
export const TUNELAB_ADAPTER_FILE = 'tunelab_adapter.json';

/** What a method adds to its {@link Adapter} to choose its own file keys and layouts (LoRA does). */
export interface AdapterFileTensors {
  fileTensors(model: CausalLM): Promise<Map<string, HostTensor>>;
}

function hasFileTensors(a: Adapter): a is Adapter & AdapterFileTensors {
  return typeof (a as Partial<AdapterFileTensors>).fileTensors === 'function';
}

/** Options of {@link saveAdapter}. */
export interface SaveAdapterOptions {
  /** Replace an existing adapter's files in `dir` (default false: error naming the file). */
  overwrite?: boolean;
  /** Written as `base_model_name_or_path` (the hub id or folder of the base model). */
  baseModelNameOrPath?: string;
}

/**
 * Writes adapter `name` of `model` to `dir` as PEFT does (`adapter_config.json`, `adapter_model.safetensors`),
 * each file atomically, plus tunelab's metadata in {@link TUNELAB_ADAPTER_FILE}. LoRA, IA3, prefix and
 * prompt tuning folders load in Python with `PeftModel.from_pretrained(base, dir)`; BOTTLENECK and
 * LORA_MOE are tunelab's own methods (PEFT has no such `peft_type`), so only tunelab reads those.
 *
 * @example
 * addLora(model, { r: 8 });
 * // … train …
 * await saveAdapter(model, 'runs/faq-lora', 'default', { baseModelNameOrPath: 'models/tiny-llama' });
 */
export async function saveAdapter(model: CausalLM, dir: string, name = 'default', options: SaveAdapterOptions = {}): Promise<void> {
  const adapter = peft(model).get(name);
  recoverFolder(dir);
  const configFile = path.join(dir, ADAPTER_CONFIG_FILE);
  const weightsFile = path.join(dir, ADAPTER_WEIGHTS_FILE);
  const metaFile = path.join(dir, TUNELAB_ADAPTER_FILE);
  if (!options.overwrite) {
    for (const f of [configFile, weightsFile, metaFile]) if (fs.existsSync(f)) throw new Error(`${f} already exists; pass { overwrite: true } to replace it`);
  }
  const tensors = hasFileTensors(adapter) ? await adapter.fileTensors(model) : await defaultFileTensors(adapter);
  const { tunelab, ...config } = adapter.peftConfig({ baseModelNameOrPath: options.baseModelNameOrPath });
  fs.mkdirSync(dir, { recursive: true });
  writeSafetensors(weightsFile, tensors, { format: 'pt' });
  // PEFT writes inference_mode true in saved configs (save_pretrained flips it while writing).
  writeJsonAtomic(configFile, { ...config, base_model_name_or_path: options.baseModelNameOrPath ?? config.base_model_name_or_path ?? null, inference_mode: true });
  if (tunelab !== undefined) writeJsonAtomic(metaFile, tunelab);
  else fs.rmSync(metaFile, { force: true }); // a stale one from an adapter this overwrote
}

/** Default file layout: `base_model.model.<weight key>`, values as stored. */
async function defaultFileTensors(adapter: Adapter): Promise<Map<string, HostTensor>> {
  const out = new Map<string, HostTensor>();
  for (const [k, v] of adapter.weights) out.set(`base_model.model.${k}`, { shape: [...v.shape], data: (await v.data()) as Float32Array });
  return out;
}

/** An adapter folder as read: parsed config and the (lazily read) tensors. */
export interface AdapterFile {
  configFile: string;
  weightsFile: string;
  /** adapter_config.json, with tunelab's metadata ({@link TUNELAB_ADAPTER_FILE}) under `tunelab` when present. */
  config: Record<string, unknown>;
  tensors: ReadonlyMap<string, SafeTensorEntry>;
}

/** Builds and attaches (under `name`) the adapter a folder describes; errors name the file and tensor. */
export type AdapterLoader = (model: CausalLM, file: AdapterFile, name: string) => Adapter;

/** Loaders by `peft_type`; methods add theirs with {@link registerAdapterLoader}. */
export const adapterLoaders = new Map<string, AdapterLoader>([['LORA', loadLora]]);

/**
 * A number from an adapter's config (or `fallback` when absent), for loaders; the error names the file,
 * the key and the value. `integer` additionally requires a positive integer.
 *
 * @example
 * const r = configNumber(file, 'r'); const p = configNumber(file, 'num_virtual_tokens', undefined, 'integer');
 */
export function configNumber(file: Pick<AdapterFile, 'config' | 'configFile'>, key: string, fallback?: number, kind: 'number' | 'integer' = 'number'): number {
  const v = file.config[key] ?? fallback;
  const ok = typeof v === 'number' && (kind === 'number' ? Number.isFinite(v) : Number.isInteger(v) && v > 0);
  if (!ok) throw new Error(`${file.configFile}: "${key}" must be ${kind === 'number' ? 'a number' : 'a positive integer'} (got ${JSON.stringify(v)})`);
  return v as number;
}

/**
 * Makes {@link loadAdapter} read folders whose `peft_type` is `peftType`.
 *
 * @example
 * registerAdapterLoader('IA3', (model, file, name) => loadIa3(model, file, name));
 */
export function registerAdapterLoader(peftType: PeftType, loader: AdapterLoader): void {
  adapterLoaders.set(peftType, loader);
}

/**
 * Reads an adapter folder written by {@link saveAdapter} or PEFT and attaches it to `model` under `name`
 * (active, base frozen). Every tensor's name and shape is checked against the model first, so a wrong
 * base model or a damaged file fails with the file and tensor named and leaves the model untouched.
 *
 * @example
 * const { model } = await loadModel('models/tiny-llama');
 * loadAdapter(model, 'runs/faq-lora');
 * generate(model, prompt, { maxNewTokens: 32 });
 */
export function loadAdapter(model: CausalLM, dir: string, name = 'default'): Adapter {
  recoverFolder(dir);
  const configFile = path.join(dir, ADAPTER_CONFIG_FILE);
  const weightsFile = path.join(dir, ADAPTER_WEIGHTS_FILE);
  const metaFile = path.join(dir, TUNELAB_ADAPTER_FILE);
  const config = readJson(configFile);
  if (fs.existsSync(metaFile)) config.tunelab = readJson(metaFile);
  const type = config.peft_type;
  const loader = typeof type === 'string' ? adapterLoaders.get(type) : undefined;
  if (!loader) throw new Error(`${configFile}: peft_type ${JSON.stringify(type)} is not supported (known: ${[...adapterLoaders.keys()].join(', ')})`);
  if (peft(model).has(name)) throw new Error(`adapter "${name}" already exists; remove it first or pick another name`);
  return loader(model, { configFile, weightsFile, config, tensors: readSafetensors(weightsFile).tensors }, name);
}

/**
 * PEFT's target_modules matching over HF module names: a list matches name suffixes (`q_proj` hits
 * `model.layers.0.self_attn.q_proj`), a string is a full-match regex. Returns the matching modules.
 */
function matchTargets(file: AdapterFile, modules: readonly string[], family: string): string[] {
  const t = file.config.target_modules;
  if (typeof t === 'string') {
    const re = new RegExp(`^(?:${t})$`);
    const hit = modules.filter((m) => re.test(m));
    if (hit.length === 0) throw new Error(`${file.configFile}: target_modules ${JSON.stringify(t)} matches no linear layer of this ${family} model`);
    return hit;
  }
  if (!Array.isArray(t) || t.length === 0 || !t.every((x) => typeof x === 'string')) throw new Error(`${file.configFile}: target_modules must be a string or a non-empty list of strings`);
  const names = t as string[];
  const matches = (m: string, s: string) => m === s || m.endsWith(`.${s}`);
  for (const s of names) {
    if (!modules.some((m) => matches(m, s))) throw new Error(`${file.configFile}: target_modules entry "${s}" matches no linear layer of this ${family} model`);
  }
  return modules.filter((m) => names.some((s) => matches(m, s)));
}

/** One tensor the file must hold, and how it becomes adapter weights (tunelab layout). */
interface Need {
  key: string;
  shape: number[];
  /** For messages: e.g. `lora_A of layers.0.attn.q_proj`. */
  what: string;
  /** Adapter weight key → value, from the file's tensor (runs inside tf.tidy). */
  assign(t: tf.Tensor): [string, tf.Tensor][];
  /** What is wrong with the values, if anything (checked before the model is touched). */
  check?(data: Float32Array): string | undefined;
}

/**
 * PEFT's `get_pattern_key` (utils/other.py) over `rank_pattern` / `alpha_pattern`: the first key whose
 * regex matches the module name at a dot boundary, `(.*\.)?(key)$`; its value, or undefined.
 */
function patternValue(file: AdapterFile, field: 'rank_pattern' | 'alpha_pattern', module: string): number | undefined {
  const v = file.config[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) throw new Error(`${file.configFile}: ${field} must be an object of module pattern → number (got ${JSON.stringify(v)})`);
  for (const [key, n] of Object.entries(v as Record<string, unknown>)) {
    let re: RegExp;
    try {
      re = new RegExp(`^(?:.*\\.)?(?:${key})$`);
    } catch (e) {
      throw new Error(`${file.configFile}: ${field} key ${JSON.stringify(key)} is not a valid regex (${(e as Error).message})`);
    }
    if (!re.test(module)) continue;
    if (typeof n !== 'number' || !Number.isFinite(n) || (field === 'rank_pattern' && !(Number.isInteger(n) && n > 0))) {
      throw new Error(`${file.configFile}: ${field}[${JSON.stringify(key)}] must be ${field === 'rank_pattern' ? 'a positive integer' : 'a number'} (got ${JSON.stringify(n)})`);
    }
    return n;
  }
  return undefined;
}

function loadLora(model: CausalLM, file: AdapterFile, name: string): LoraAdapter {
  const c = file.config;
  const num = (key: string, fallback?: number) => configNumber(file, key, fallback);
  const r = num('r');
  const alpha = num('lora_alpha', r);
  const dropout = num('lora_dropout', 0);
  const bias = (c.bias ?? 'none') as LoraBias;
  if (!['none', 'all', 'lora_only'].includes(bias)) throw new Error(`${file.configFile}: bias ${JSON.stringify(c.bias)} is not supported`);
  if (c.use_dora !== undefined && c.use_dora !== null && typeof c.use_dora !== 'boolean') throw new Error(`${file.configFile}: use_dora must be true or false (got ${JSON.stringify(c.use_dora)})`);
  const useDora = c.use_dora === true;
  const useRslora = c.use_rslora === true;
  const scaleOf = (rank: number, a: number) => (useRslora ? a / Math.sqrt(rank) : a / rank);
  const scale = scaleOf(r, alpha);
  const init = c.init_lora_weights;
  const initLoraWeights: LoraInit = init === false || init === 'gaussian' ? init : true; // only matters for fresh weights
  const tl = c.tunelab as { seed?: unknown; targets?: unknown } | undefined;
  const saved = Array.isArray(tl?.targets) ? (tl!.targets as unknown[]).filter((t): t is string => typeof t === 'string') : undefined;
  const cfg = model.config;
  // HF module → the tunelab linear layers it covers. GPT-2's fused c_attn covers q/k/v.
  const modules = new Map<string, string[]>();
  for (const p of model.linearPaths()) modules.set(hfModulePath(cfg, p), [...(modules.get(hfModulePath(cfg, p)) ?? []), p]);
  // Older tunelab GPT-2 files named q/k/v LoRAs `transformer.h.0.attn.q_proj` (no such HF module): still read.
  if (cfg.family === 'gpt2') for (let i = 0; i < cfg.nLayers; i++) for (const p of gpt2QkvPaths(i)) modules.set(`transformer.h.${i}.attn.${p.split('.').pop()}`, [p]);
  const hit = matchTargets(file, [...modules.keys()], cfg.family);
  const width = cfg.nHeads * (cfg.dModel / cfg.nHeads);

  // Per module: rank and alpha (PEFT's rank_pattern / alpha_pattern), and how the file maps onto tunelab.
  // A c_attn LoRA that tunelab wrote from k of q/k/v (rank k·r, block-diagonal B; see LoraAdapter.fileTensors)
  // splits back into those k LoRAs; any other c_attn LoRA of rank r is q/k/v LoRAs sharing A, with B split
  // by rows. Both are exact. tunelab has one r and scale for every layer, so other ranks are refused.
  const plan = hit.map((m) => {
    const rm = patternValue(file, 'rank_pattern', m) ?? r;
    const am = patternValue(file, 'alpha_pattern', m) ?? alpha;
    const paths = modules.get(m)!;
    const present = paths.length === 3 && saved ? paths.filter((p) => saved.includes(p)) : [];
    const sameScale = Math.abs(scaleOf(rm, am) - scale) <= 1e-6 * Math.abs(scale);
    if (present.length > 0 && rm === present.length * r && sameScale) return { m, rm, block: present, paths };
    if (rm !== r || !sameScale) {
      throw new Error(`${file.configFile}: rank_pattern / alpha_pattern give ${m} rank ${rm} and lora_alpha ${am}, but tunelab's LoRA has one rank and scale for every layer (r = ${r}, lora_alpha = ${alpha})`);
    }
    return { m, rm, block: undefined, paths };
  });
  const targets = plan.flatMap((x) => x.block ?? x.paths);
  const twice = targets.find((p, i) => targets.indexOf(p) !== i);
  if (twice) throw new Error(`${file.configFile}: target_modules adapt ${twice} twice (c_attn and its q/k/v_proj); keep one`);
  const ordered = model.linearPaths().filter((p) => targets.includes(p));
  const biasPaths = bias === 'none' ? [] : (bias === 'lora_only' ? ordered : model.linearPaths()).filter((p) => model.params.has(`${p}.bias`));

  const needs: Need[] = [];
  const split = (t: tf.Tensor, axis: number) => tf.split(t, 3, axis);
  for (const { m, rm, block, paths } of plan) {
    const [inDim, outDim] = paths.length === 1 ? model.weightShape(`${paths[0]}.weight`) : [cfg.dModel, 3 * width];
    const of = (w: string) => `${w} of ${paths.join(', ')}`;
    const key = `base_model.model.${m}`;
    if (block) {
      const rows = (p: string) => paths.indexOf(p) * width;
      needs.push({
        key: `${key}.lora_A.weight`, shape: [rm, inDim], what: of('lora_A'),
        assign: (t) => tf.split(t, block.length, 0).map((a, j) => [`${block[j]}.lora_A`, tf.transpose(a)]),
      });
      needs.push({
        key: `${key}.lora_B.weight`, shape: [outDim, rm], what: of('lora_B'),
        assign: (t) => block.map((p, j) => [`${p}.lora_B`, tf.transpose(tf.slice(t, [rows(p), j * r], [width, r]))]),
        // Only the diagonal blocks may be non-zero, or splitting would drop part of the update.
        check: (data) => {
          for (let i = 0; i < outDim; i++) for (let j = 0; j < rm; j++) {
            const diag = block.some((p, b) => i >= rows(p) && i < rows(p) + width && j >= b * r && j < (b + 1) * r);
            if (!diag && data[i * rm + j] !== 0) return `is not the block-diagonal form tunelab writes for ${block.join(', ')} (element [${i}, ${j}] = ${data[i * rm + j]}); was it trained further outside tunelab? Remove ${TUNELAB_ADAPTER_FILE} and give it rank ${r} to load it as q/k/v LoRAs sharing A`;
          }
          return undefined;
        },
      });
      // DoRA: the magnitude's q | k | v row blocks; an untargeted block must be ‖W_x‖_c (g = 1), as written.
      if (useDora) {
        const rest = paths.filter((p) => !block.includes(p));
        needs.push({
          key: `${key}.lora_magnitude_vector`, shape: [outDim], what: of('lora_magnitude_vector'),
          assign: (t) => block.map((p) => [`${p}.lora_magnitude_vector`, tf.slice(t, rows(p), width)]),
          check: (data) => {
            for (const p of rest) {
              const norm = tf.tidy(() => columnNorm(model.weight(`${p}.weight`) as tf.Tensor2D).dataSync());
              for (let i = 0; i < width; i++) {
                const v = data[rows(p) + i];
                if (!(Math.abs(v - norm[i]) <= 1e-5 * Math.max(1, Math.abs(norm[i])))) {
                  return `holds ${v} at row ${rows(p) + i}, in the block of ${p}, which this adapter leaves as the base: that needs the base weight's norm ${norm[i]}; was it trained further outside tunelab, or is this another base model?`;
                }
              }
            }
            return undefined;
          },
        });
      }
      continue;
    }
    // PEFT [r, in] / [out, r] → tunelab [in, r] / [r, out]; a fused B splits into q/k/v column blocks.
    needs.push({ key: `${key}.lora_A.weight`, shape: [r, inDim], what: of('lora_A'), assign: (t) => paths.map((p) => [`${p}.lora_A`, tf.transpose(t)]) });
    needs.push({
      key: `${key}.lora_B.weight`, shape: [outDim, r], what: of('lora_B'),
      assign: (t) => (paths.length === 1 ? [tf.transpose(t)] : split(tf.transpose(t), 1)).map((v, j) => [`${paths[j]}.lora_B`, v]),
    });
    // DoRA's magnitude is per output unit: a fused c_attn's splits into q | k | v like the bias.
    if (useDora) {
      needs.push({
        key: `${key}.lora_magnitude_vector`, shape: [outDim], what: of('lora_magnitude_vector'),
        assign: (t) => (paths.length === 1 ? [t] : split(t, 0)).map((v, j) => [`${paths[j]}.lora_magnitude_vector`, v]),
      });
    }
  }
  // Biases hold base + delta (what PEFT saves); GPT-2 q/k/v biases come fused, as c_attn.bias.
  const done = new Set<string>();
  for (const p of biasPaths) {
    if (done.has(p)) continue;
    const paths = hfModuleMembers(cfg, p);
    const minusBase = (vs: tf.Tensor[]): [string, tf.Tensor][] =>
      vs.flatMap((v, j) => (biasPaths.includes(paths[j]) ? [[`${paths[j]}.bias_delta`, tf.sub(v, model.weight(`${paths[j]}.bias`))] as [string, tf.Tensor]] : []));
    needs.push(paths.length === 3
      ? { key: `base_model.model.${hfModulePath(cfg, p)}.bias`, shape: [3 * width], what: `bias of ${paths.join(', ')}`, assign: (t) => minusBase(split(t, 0)) }
      : { key: `base_model.model.${hfModulePath(cfg, p)}.bias`, shape: [...model.weight(`${p}.bias`).shape], what: `bias of ${p}`, assign: (t) => minusBase([t]) });
    for (const q of paths) done.add(q);
  }

  // Check every tensor before touching the model.
  const values = new Map<string, HostTensor>();
  for (const e of needs) {
    const entry = file.tensors.get(e.key);
    if (!entry) throw new Error(`${file.weightsFile}: missing tensor "${e.key}" (${e.what}, as target_modules and bias in ${ADAPTER_CONFIG_FILE} require)`);
    if (entry.shape.join() !== e.shape.join()) {
      throw new Error(`${file.weightsFile}: tensor "${e.key}" has shape [${entry.shape}] but r = ${r} on this model needs [${e.shape}] (${e.what}); was the adapter trained on another base model?`);
    }
    const t = entry.read();
    if (!(t.data instanceof Float32Array)) throw new Error(`${file.weightsFile}: tensor "${e.key}" has dtype ${t.dtype}; a float dtype is needed`);
    const problem = e.check?.(t.data);
    if (problem) throw new Error(`${file.weightsFile}: tensor "${e.key}" ${problem}`);
    values.set(e.key, { shape: t.shape, data: t.data });
  }
  const unexpected = [...file.tensors.keys()].filter((k) => !values.has(k));
  if (unexpected.length) throw new Error(`${file.weightsFile}: unexpected tensors ${unexpected.slice(0, 5).map((k) => `"${k}"`).join(', ')}${unexpected.length > 5 ? `, … (${unexpected.length})` : ''} for target_modules ${JSON.stringify(c.target_modules)} and bias "${bias}"${!useDora && unexpected.some((k) => k.endsWith('.lora_magnitude_vector')) ? `; lora_magnitude_vector tensors are DoRA's: ${ADAPTER_CONFIG_FILE} needs "use_dora": true` : ''}`);

  const adapter = addLora(model, {
    r, alpha, dropout, bias, initLoraWeights, useRslora, useDora, targetModules: ordered,
    seed: typeof tl?.seed === 'number' ? tl.seed : 0,
  }, name);
  for (const e of needs) {
    const host = values.get(e.key)!;
    tf.tidy(() => {
      for (const [k, v] of e.assign(tf.tensor(host.data, host.shape))) adapter.weights.get(k)!.assign(v);
    });
  }
  return adapter;
}
