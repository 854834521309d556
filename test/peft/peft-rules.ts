/**
 * How Hugging Face PEFT reads an adapter folder, written down from its sources (huggingface/peft at
 * 5d602fd) so tests can apply the same rules to tunelab's output without Python:
 * - `config.py` `PeftConfig.from_pretrained` → `from_peft_type`: the class comes from `peft_type`
 *   (`PEFT_TYPE_TO_CONFIG_MAPPING`, a KeyError otherwise); keys that are not fields of the class are
 *   dropped with the warning "… saved using a higher version of the library …"; then `__post_init__`.
 * - `tuners/prompt_tuning/config.py` `PromptTuningConfig.__post_init__` (TEXT needs tokenizer_name_or_path
 *   and prompt_tuning_init_text; `PromptTuningInit` is TEXT, SAMPLE_VOCAB, RANDOM).
 * - `tuners/tuners_utils.py` `check_target_module_exists`: a list entry matches a module name exactly or
 *   as a suffix after a dot; a string is `re.fullmatch`; no match at all is "Target modules … not found".
 * - `utils/other.py` `get_pattern_key`: rank_pattern / alpha_pattern keys match `(.*\.)?(key)$`.
 * - `tuners/lora/layer.py`: a LoRA on a Conv1D (GPT-2) takes in/out from the weight's [in, out] shape,
 *   lora_A is Linear(in, r) (weight [r, in]), lora_B Linear(r, out) (weight [out, r]); forward adds
 *   lora_B(lora_A(x)) · lora_alpha / r (/ √r with use_rslora). IA3 on a Conv1D: ia3_l (out, 1) scales
 *   the output, (1, in) the input for feedforward modules.
 * - `tuners/lora/dora.py` `DoraLinearLayer` (use_dora): `weight` is the magnitude, shape [out] (the norm of
 *   `transpose(W, fan_in_fan_out) + scaling·lora_B·lora_A` over dim 1); `utils/save_and_load.py` saves it
 *   as `<module>.lora_magnitude_vector` (".weight" stripped). Forward: with g = m / ‖·‖ (detached),
 *   y = base(x) + (g − 1)·(base(x) − bias) + g·lora_B(lora_A(x))·scaling.
 */
import * as tf from '@tensorflow/tfjs';
import type { ModelConfig } from '../../src/model/config';
import type { HostTensor } from '../../src/io/hf';

const peftConfig = ['task_type', 'peft_type', 'auto_mapping', 'peft_version', 'base_model_name_or_path', 'revision', 'inference_mode'];
const promptLearning = [...peftConfig, 'num_virtual_tokens', 'token_dim', 'num_transformer_submodules', 'num_attention_heads', 'num_layers', 'modules_to_save'];

/** Dataclass fields of PEFT's config classes, by `peft_type` (inherited ones included). */
export const peftConfigFields: Record<string, readonly string[]> = {
  LORA: [...peftConfig, 'r', 'target_modules', 'exclude_modules', 'lora_alpha', 'lora_dropout', 'fan_in_fan_out', 'bias', 'use_rslora',
    'modules_to_save', 'init_lora_weights', 'layers_to_transform', 'layers_pattern', 'rank_pattern', 'alpha_pattern', 'megatron_config',
    'megatron_core', 'trainable_token_indices', 'loftq_config', 'eva_config', 'corda_config', 'lora_ga_config', 'use_dora', 'velora_config',
    'alora_invocation_tokens', 'use_qalora', 'qalora_group_size', 'monteclora_config', 'layer_replication', 'runtime_config', 'lora_bias',
    'target_parameters', 'use_bdlora', 'arrow_config', 'kasa_config', 'ensure_weight_tying'],
  IA3: [...peftConfig, 'target_modules', 'exclude_modules', 'feedforward_modules', 'fan_in_fan_out', 'modules_to_save', 'init_ia3_weights'],
  PREFIX_TUNING: [...promptLearning, 'init_weights', 'encoder_hidden_size', 'prefix_projection'],
  PROMPT_TUNING: [...promptLearning, 'prompt_tuning_init', 'prompt_tuning_init_text', 'tokenizer_name_or_path', 'tokenizer_kwargs'],
};

/** PEFT's `TaskType` values. */
const taskTypes = ['SEQ_CLS', 'SEQ_2_SEQ_LM', 'CAUSAL_LM', 'TOKEN_CLS', 'QUESTION_ANS', 'FEATURE_EXTRACTION'];

/**
 * `PeftConfig.from_peft_type(**adapter_config)`: throws what PEFT raises, returns the warnings it emits.
 */
export function peftConfigFromJson(config: Record<string, unknown>): { warnings: string[] } {
  const type = config.peft_type;
  const fields = typeof type === 'string' ? peftConfigFields[type] : undefined;
  if (!fields) throw new Error(`KeyError: ${JSON.stringify(type)} (PEFT_TYPE_TO_CONFIG_MAPPING)`);
  const warnings: string[] = [];
  const unexpected = Object.keys(config).filter((k) => !fields.includes(k)).sort();
  if (unexpected.length) warnings.push(`Unexpected keyword arguments ${JSON.stringify(unexpected)}: … saved using a higher version of the library`);
  if (config.task_type !== undefined && config.task_type !== null && !taskTypes.includes(config.task_type as string)) throw new Error(`ValueError: task_type ${JSON.stringify(config.task_type)}`);
  if (type === 'PROMPT_TUNING') {
    const init = config.prompt_tuning_init ?? 'RANDOM';
    if (!['TEXT', 'SAMPLE_VOCAB', 'RANDOM'].includes(init as string)) throw new Error(`ValueError: ${JSON.stringify(init)} is not a valid PromptTuningInit`);
    if (init === 'TEXT' && !config.tokenizer_name_or_path) throw new Error(`ValueError: When prompt_tuning_init='TEXT', tokenizer_name_or_path can't be ${config.tokenizer_name_or_path}.`);
    if (init === 'TEXT' && (config.prompt_tuning_init_text === undefined || config.prompt_tuning_init_text === null)) throw new Error("ValueError: When prompt_tuning_init='TEXT', prompt_tuning_init_text can't be None.");
    if (config.tokenizer_kwargs && init !== 'TEXT') throw new Error("ValueError: tokenizer_kwargs only valid when using prompt_tuning_init='TEXT'.");
  }
  if (type === 'LORA') {
    if (typeof config.target_modules === 'string' && config.layers_to_transform != null) throw new Error('ValueError: `layers_to_transform` cannot be used when `target_modules` is a str.');
    if (config.layers_pattern && config.layers_to_transform == null) throw new Error('ValueError: When `layers_pattern` is specified, `layers_to_transform` must also be specified.');
  }
  return { warnings };
}

/** A Conv1D / Linear module of a Hugging Face model: name and weight shape as stored. */
export interface HfModule {
  name: string;
  /** Conv1D stores [in, out] (GPT-2); nn.Linear [out, in] (Llama). */
  conv1d: boolean;
  in: number;
  out: number;
}

/** The adaptable modules of `GPT2LMHeadModel` (`transformer.h.{i}.attn.c_attn` etc.; lm_head excluded). */
export function gpt2Modules(c: ModelConfig): HfModule[] {
  const d = c.dModel;
  return Array.from({ length: c.nLayers }, (_, i) => [
    { name: `transformer.h.${i}.attn.c_attn`, conv1d: true, in: d, out: 3 * d },
    { name: `transformer.h.${i}.attn.c_proj`, conv1d: true, in: d, out: d },
    { name: `transformer.h.${i}.mlp.c_fc`, conv1d: true, in: d, out: c.dFf },
    { name: `transformer.h.${i}.mlp.c_proj`, conv1d: true, in: c.dFf, out: d },
  ]).flat();
}

/** `check_target_module_exists` for one module name. */
export function targetMatches(targets: unknown, name: string): boolean {
  if (typeof targets === 'string') return new RegExp(`^(?:${targets})$`).test(name);
  return (targets as string[]).some((t) => name === t || name.endsWith(`.${t}`));
}

/** `get_pattern_key`: the value of the first pattern key matching `name`, or undefined. */
export function patternFor(pattern: unknown, name: string): number | undefined {
  for (const [k, v] of Object.entries((pattern ?? {}) as Record<string, number>)) if (new RegExp(`^(?:.*\\.)?(?:${k})$`).test(name)) return v;
  return undefined;
}

/** One injected LoRA layer: the module, its rank and scaling as PEFT computes them. */
export interface PeftLoraLayer {
  module: HfModule;
  r: number;
  scaling: number;
}

/**
 * What `get_peft_model` / `from_pretrained` builds for a LORA config on these modules, and the check
 * of `set_peft_model_state_dict`: every file tensor must be a parameter of an injected layer with its
 * shape, and every parameter must be in the file. Throws PEFT's error or a missing/unexpected-key error.
 */
export function peftLoraLayers(config: Record<string, unknown>, modules: readonly HfModule[], tensors: ReadonlyMap<string, { shape: readonly number[] }>): PeftLoraLayer[] {
  const hit = modules.filter((m) => targetMatches(config.target_modules, m.name));
  if (hit.length === 0) throw new Error(`ValueError: Target modules ${JSON.stringify(config.target_modules)} not found in the base model.`);
  const layers = hit.map((module) => {
    const r = patternFor(config.rank_pattern, module.name) ?? (config.r as number);
    const alpha = patternFor(config.alpha_pattern, module.name) ?? (config.lora_alpha as number);
    return { module, r, scaling: config.use_rslora ? alpha / Math.sqrt(r) : alpha / r };
  });
  const want = new Map<string, number[]>();
  for (const { module: m, r } of layers) {
    want.set(`base_model.model.${m.name}.lora_A.weight`, [r, m.in]);
    want.set(`base_model.model.${m.name}.lora_B.weight`, [m.out, r]);
    if (config.use_dora === true) want.set(`base_model.model.${m.name}.lora_magnitude_vector`, [m.out]);
  }
  for (const [k, shape] of want) {
    const t = tensors.get(k);
    if (!t) throw new Error(`missing adapter key ${k}`);
    if (t.shape.join() !== shape.join()) throw new Error(`size mismatch for ${k}: copying a param with shape [${t.shape}], the shape in current model is [${shape}]`);
  }
  const unexpected = [...tensors.keys()].filter((k) => !want.has(k) && !k.endsWith('.bias'));
  if (unexpected.length) throw new Error(`unexpected adapter keys ${unexpected.join(', ')}`);
  return layers;
}

/**
 * `GPT2LMHeadModel.forward` logits from its state dict (HF names, Conv1D [in, out]), with `adapt`
 * adding an adapter's term to a Conv1D output (PEFT's LoRA/IA3 layers wrap the module the same way).
 * Written from transformers' `modeling_gpt2.py`: pre-LN blocks, fused c_attn split q | k | v, causal
 * softmax(q·kᵀ/√hd), gelu_new MLP, ln_f, tied head.
 */
export function gpt2Logits(
  c: ModelConfig, hf: ReadonlyMap<string, HostTensor>, ids: number[],
  adapt: (module: string, x: tf.Tensor2D, y: tf.Tensor2D) => tf.Tensor2D = (_m, _x, y) => y,
): number[] {
  return tf.tidy(() => {
    const w = (name: string) => {
      const t = hf.get(name);
      if (!t) throw new Error(`no tensor ${name}`);
      return tf.tensor(t.data, t.shape);
    };
    const conv = (name: string, x: tf.Tensor2D) => adapt(name, x, tf.add(tf.matMul(x, w(`${name}.weight`) as tf.Tensor2D), w(`${name}.bias`)) as tf.Tensor2D);
    const ln = (name: string, x: tf.Tensor2D) => {
      const { mean, variance } = tf.moments(x, -1, true);
      return tf.add(tf.mul(tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, c.normEps))), w(`${name}.weight`)), w(`${name}.bias`)) as tf.Tensor2D;
    };
    const gelu = (x: tf.Tensor) => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.tanh(tf.mul(Math.sqrt(2 / Math.PI), tf.add(x, tf.mul(0.044715, tf.pow(x, 3)))))));
    const T = ids.length, d = c.dModel, H = c.nHeads, hd = d / H;
    let x = tf.add(tf.gather(w('transformer.wte.weight'), tf.tensor1d(ids, 'int32')), tf.slice(w('transformer.wpe.weight'), [0, 0], [T, d])) as tf.Tensor2D;
    const mask = tf.linalg.bandPart(tf.ones([T, T]), -1, 0);
    for (let i = 0; i < c.nLayers; i++) {
      const p = `transformer.h.${i}`;
      const qkv = conv(`${p}.attn.c_attn`, ln(`${p}.ln_1`, x));
      const [q, k, v] = tf.split(qkv, 3, 1).map((t) => tf.transpose(tf.reshape(t, [T, H, hd]), [1, 0, 2]));
      const scores = tf.div(tf.matMul(q, k, false, true), Math.sqrt(hd));
      const att = tf.softmax(tf.where(tf.cast(mask, 'bool'), scores, tf.fill(scores.shape, -1e9)));
      const o = tf.reshape(tf.transpose(tf.matMul(att, v), [1, 0, 2]), [T, d]) as tf.Tensor2D;
      x = tf.add(x, conv(`${p}.attn.c_proj`, o));
      const h = gelu(conv(`${p}.mlp.c_fc`, ln(`${p}.ln_2`, x))) as tf.Tensor2D;
      x = tf.add(x, conv(`${p}.mlp.c_proj`, h));
    }
    return [...tf.matMul(ln('transformer.ln_f', x), w('transformer.wte.weight'), false, true).dataSync()];
  });
}
