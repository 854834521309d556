/**
 * A plain copy of a model as it runs now: base weights with its active LoRA and IA3 adapters folded in.
 * The fluent API starts each stage from such a copy, so an SFT-with-LoRA stage continues into DPO or PPO
 * with the behaviour it learned (and the previous run stays as it was).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { CausalLM } from '../model/transformer';
import { peft, type PeftType } from './peft';
import { loadAdapter, saveAdapter } from './io';
import { mergeLora } from './lora';
import { mergeIa3 } from './ia3';
import { dequantizeBase } from '../model/quant-model';

const foldable: readonly PeftType[] = ['LORA', 'IA3'];

/**
 * Copies `model` (base weights, trainable flags; a quantized base decoded to float32) and folds its active LoRA / IA3 adapters into the copy,
 * in the order they run. Other methods (prefix and prompt tuning, bottleneck adapters, mixtures) have no
 * weight-space form: they are named in the error.
 *
 * @example
 * addLora(model, { r: 8 }); // … train …
 * const plain = await mergedCopy(model); // same logits, no adapters
 */
export async function mergedCopy(model: CausalLM): Promise<CausalLM> {
  const reg = peft(model);
  const active = reg.activeNames;
  const bad = active.filter((n) => !foldable.includes(reg.get(n).peftType));
  if (bad.length) {
    throw new Error(`cannot fold adapter ${bad.map((n) => `"${n}" (${reg.get(n).peftType})`).join(', ')} into the weights: only LoRA and IA3 merge; save it with saveAdapter and keep training it on the same model`);
  }
  const copy = model.clone();
  // A quantized base becomes the float32 values it computes with: adapters fold into those.
  dequantizeBase(copy);
  if (active.length === 0) return copy;
  // Through the adapter files: the one exact, tested path from one model's adapters to another's.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-merge-'));
  try {
    for (const name of active) {
      await saveAdapter(model, path.join(dir, name), name);
      loadAdapter(copy, path.join(dir, name), name);
    }
    for (const name of active) {
      if (peft(copy).get(name).peftType === 'LORA') mergeLora(copy, name);
      else mergeIa3(copy, name);
    }
    peft(copy).clear();
  } catch (e) {
    copy.dispose();
    throw e;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return copy;
}
