/**
 * Hugging Face safetensors, as pure data (no tfjs): parse, validate, decode, serialize, shards.
 * `format.ts` has the types and layout, `read.ts` / `shards.ts` read files and folders, `write.ts` writes.
 */
export { SAFETENSORS_MAX_HEADER_BYTES, SAFETENSORS_INDEX_FILE, SAFETENSORS_SINGLE_FILE } from './format';
export type {
  SafeDtype, DecodedArray, TensorData, TensorInputArray, TensorInput, TensorInfo, SafeTensorEntry, SafetensorsFile, ShardedSafetensors,
} from './format';
export { parseSafetensors, readSafetensors } from './read';
export { readShardedSafetensors } from './shards';
export { serializeSafetensors, writeSafetensors } from './write';
