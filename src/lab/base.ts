/** The shipped base models (models/<name>/) and loading any checkpoint folder by path. */
import * as fs from 'fs';
import * as path from 'path';
import { loadModel } from '../io/checkpoint';
import type { CausalLM } from '../model/transformer';
import type { Tokenizer } from '../tokenizer/tokenizer';

/** A loaded base model with its tokenizer and, for shipped models, its training record. */
export interface BaseModel {
  name: string;
  dir: string;
  model: CausalLM;
  tokenizer: Tokenizer;
  /** Contents of `training.json` (size, data, steps, held-out perplexity), when the folder has one. */
  card?: Record<string, unknown>;
}

/** Folder holding the shipped models (the package's `models/`, from src/ or dist/ alike). */
export const modelsDir = path.join(__dirname, '..', '..', 'models');

/** Names of the shipped models: folders of models/ with a config.json. */
export function shippedModels(): string[] {
  if (!fs.existsSync(modelsDir)) return [];
  return fs.readdirSync(modelsDir).filter((n) => !n.startsWith('.') && fs.existsSync(path.join(modelsDir, n, 'config.json'))).sort();
}

/**
 * Loads a shipped base model by name, or any model folder by path (HF layout: config.json,
 * model.safetensors, tokenizer.json).
 *
 * @example
 * const { model, tokenizer, card } = await base('tiny-llama');
 * const mine = await base('./runs/demo/final');
 */
export async function base(nameOrPath = 'tiny-llama'): Promise<BaseModel> {
  const isPath = nameOrPath.includes('/') || nameOrPath.includes(path.sep) || nameOrPath.startsWith('.');
  const dir = isPath ? nameOrPath : path.join(modelsDir, nameOrPath);
  if (!fs.existsSync(path.join(dir, 'config.json'))) {
    const known = shippedModels();
    throw new Error(isPath
      ? `${dir}: not a model folder (no config.json)`
      : `no shipped model "${nameOrPath}" (shipped: ${known.join(', ') || 'none'}); pass a folder path to load your own`);
  }
  const { model, tokenizer } = await loadModel(dir);
  if (!tokenizer) {
    model.dispose();
    throw new Error(`${path.join(dir, 'tokenizer.json')}: missing; a base model needs its tokenizer`);
  }
  const cardFile = path.join(dir, 'training.json');
  const card = fs.existsSync(cardFile) ? (JSON.parse(fs.readFileSync(cardFile, 'utf8')) as Record<string, unknown>) : undefined;
  return { name: isPath ? path.basename(path.resolve(dir)) : nameOrPath, dir, model, tokenizer, card };
}
