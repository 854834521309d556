/** Serializing tensors to safetensors bytes in HF's layout, and writing them to a file atomically. */
import { writeFileAtomic } from '../atomic';
import { DTYPES, SAFETENSORS_MAX_HEADER_BYTES, TensorInput, describe, fail, q } from './format';
import { encodeInto, planTensor } from './encode';

/** Byte-wise UTF-8 order, as Rust's `String` Ord compares (differs from JS `<` for astral characters). */
function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

function serialize(
  tensors: Record<string, TensorInput> | ReadonlyMap<string, TensorInput>,
  metadata: Record<string, string> | undefined,
  where: string,
): Uint8Array {
  const entries: [string, TensorInput][] = tensors instanceof Map ? [...tensors] : Object.entries(tensors);
  const plans = entries.map(([name, input]) => planTensor(name, input, where));
  // HF's writer order: descending dtype alignment, then name; keeps every tensor aligned to its element size.
  plans.sort((a, b) => DTYPES[b.dtype].rank - DTYPES[a.dtype].rank || compareBytes(a.nameBytes, b.nameBytes));

  // Built by hand: JSON.stringify of an object would move integer-like keys ("0", "12") to the front.
  const parts: string[] = [];
  if (metadata !== undefined) {
    const meta: string[] = [];
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== 'string') fail(where, `metadata value for ${q(key)} must be a string, got ${describe(value)}`);
      meta.push(`${q(key)}:${q(value)}`);
    }
    parts.push(`"__metadata__":{${meta.join(',')}}`);
  }
  const offsets: number[] = [];
  let offset = 0;
  for (const p of plans) {
    offsets.push(offset);
    parts.push(`${q(p.name)}:{"dtype":"${p.dtype}","shape":[${p.shape.join(',')}],"data_offsets":[${offset},${offset + p.byteLength}]}`);
    offset += p.byteLength;
  }
  const json = new TextEncoder().encode(`{${parts.join(',')}}`);
  const headerLength = Math.ceil(json.length / 8) * 8;
  if (headerLength > SAFETENSORS_MAX_HEADER_BYTES) {
    fail(where, `header would be ${headerLength} bytes, over the ${SAFETENSORS_MAX_HEADER_BYTES}-byte limit readers enforce`);
  }
  const out = new Uint8Array(8 + headerLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLength), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + headerLength); // space padding, as HF pads
  const dataStart = 8 + headerLength;
  plans.forEach((p, i) => {
    const begin = dataStart + offsets[i];
    encodeInto(out.subarray(begin, begin + p.byteLength), p, where);
  });
  return out;
}

/**
 * Serializes tensors to safetensors bytes, laid out as HF's writer does (descending dtype alignment, then
 * name), header space-padded to a multiple of 8. Throws naming the tensor when shape and data disagree, a
 * value does not fit the requested dtype, or the dtype does not suit the array type.
 *
 * @example
 * const bytes = serializeSafetensors(
 *   { 'wte.weight': { shape: [2, 3], data: new Float32Array(6) }, ids: { shape: [2], data: new Int32Array([5, 7]), dtype: 'I64' } },
 *   { format: 'pt' },
 * );
 */
export function serializeSafetensors(
  tensors: Record<string, TensorInput> | ReadonlyMap<string, TensorInput>,
  metadata?: Record<string, string>,
): Uint8Array {
  return serialize(tensors, metadata, 'serializeSafetensors');
}

/**
 * Writes a safetensors file atomically (see `writeFileAtomic`): readers never see a partial file.
 * Errors start with `file`.
 *
 * @example
 * writeSafetensors('runs/demo/adapter_model.safetensors', { 'x.lora_A.weight': { shape: [8, 64], data: a } }, { format: 'pt' });
 */
export function writeSafetensors(
  file: string,
  tensors: Record<string, TensorInput> | ReadonlyMap<string, TensorInput>,
  metadata?: Record<string, string>,
): void {
  writeFileAtomic(file, serialize(tensors, metadata, file));
}
