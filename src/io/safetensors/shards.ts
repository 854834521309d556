/** Sharded checkpoints: `model.safetensors.index.json` and the files its weight_map names. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SAFETENSORS_INDEX_FILE, SAFETENSORS_SINGLE_FILE, SafeTensorEntry, SafetensorsFile, ShardedSafetensors, describe, fail, isObject, q } from './format';
import { readSafetensors } from './read';

/**
 * Opens the checkpoint in `folder`: follows `model.safetensors.index.json` (`{"weight_map": {tensor: file}}`)
 * when present, else reads `model.safetensors`. Only headers are read up front. Every tensor in the
 * weight_map must exist in the file it names; shard paths are relative to `folder` and may not leave it.
 *
 * @example
 * const ckpt = readShardedSafetensors('models/Llama-3.2-1B');
 * const norm = ckpt.tensors.get('model.norm.weight')!.read();
 */
export function readShardedSafetensors(folder: string): ShardedSafetensors {
  const indexFile = path.join(folder, SAFETENSORS_INDEX_FILE);
  if (!fs.existsSync(indexFile)) {
    const single = path.join(folder, SAFETENSORS_SINGLE_FILE);
    if (!fs.existsSync(single)) fail(folder, `no ${SAFETENSORS_INDEX_FILE} or ${SAFETENSORS_SINGLE_FILE} in this folder`);
    const st = readSafetensors(single);
    return { tensors: new Map(st.tensors), files: [st] };
  }
  let index: unknown;
  try {
    index = JSON.parse(fs.readFileSync(indexFile, 'utf8'));
  } catch (err) {
    fail(indexFile, `cannot read index: ${(err as Error).message}`);
  }
  const weightMap = isObject(index) ? index.weight_map : undefined;
  if (!isObject(weightMap)) fail(indexFile, `"weight_map" must be an object mapping tensor names to file names`);

  const root = path.resolve(folder);
  const files = new Map<string, SafetensorsFile>();
  const tensors = new Map<string, SafeTensorEntry>();
  for (const [name, shard] of Object.entries(weightMap)) {
    if (typeof shard !== 'string') fail(indexFile, `weight_map entry ${q(name)} is ${describe(shard)}, not a file name`);
    const shardPath = path.resolve(root, shard);
    const relative = path.relative(root, shardPath);
    if (relative === '' || relative.startsWith('..') || path.isAbsolute(relative)) {
      fail(indexFile, `weight_map entry ${q(name)} points to ${q(shard)}, outside the checkpoint folder`);
    }
    let st = files.get(shardPath);
    if (!st) {
      st = readSafetensors(shardPath);
      files.set(shardPath, st);
    }
    const entry = st.tensors.get(name);
    if (!entry) fail(indexFile, `weight_map maps ${q(name)} to ${q(shard)}, which has no tensor ${q(name)}`);
    tensors.set(name, entry);
  }
  return { tensors, files: [...files.values()], indexFile };
}
