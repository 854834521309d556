/** Parsing and validation of a safetensors header, against the length of the data section it describes. */
import { DTYPES, SAFETENSORS_MAX_HEADER_BYTES, TensorInfo, describe, fail, fmtShape, isDtype, isObject, q, readNonNegativeInts } from './format';

/** Reads and checks the u64 header length: `total` is the whole file's size. */
export function readHeaderLength(first8: Uint8Array, total: number, source: string): number {
  if (total < 8) {
    fail(source, `file is only ${total} bytes; a safetensors file starts with an 8-byte header length`);
  }
  const n = new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(SAFETENSORS_MAX_HEADER_BYTES)) {
    fail(source, `header length ${n} exceeds the ${SAFETENSORS_MAX_HEADER_BYTES}-byte limit (corrupt or not a safetensors file)`);
  }
  const length = Number(n);
  if (length > total - 8) {
    fail(source, `header length ${length} is larger than the ${total - 8} bytes that follow it (truncated file?)`);
  }
  return length;
}

/** Parses one `name: {dtype, shape, data_offsets}` entry; checks types and that the byte length fits the shape. */
function parseTensorEntry(name: string, raw: unknown, source: string): TensorInfo {
  const t = `tensor ${q(name)}`;
  if (!isObject(raw)) fail(source, `${t} must be an object with dtype, shape and data_offsets, got ${describe(raw)}`);
  for (const key of ['dtype', 'shape', 'data_offsets']) {
    if (!(key in raw)) fail(source, `${t} is missing "${key}"`);
  }
  const dtype = raw.dtype;
  if (typeof dtype !== 'string') fail(source, `${t} has a "dtype" that is ${describe(dtype)}, not a string`);
  if (!isDtype(dtype)) fail(source, `${t} has unknown dtype ${q(dtype)}`);
  const shape = readNonNegativeInts(raw.shape);
  if (!shape) fail(source, `${t} has "shape" ${JSON.stringify(raw.shape)}; expected an array of non-negative integers`);
  const offsets = readNonNegativeInts(raw.data_offsets);
  if (!offsets || offsets.length !== 2) {
    fail(source, `${t} has "data_offsets" ${JSON.stringify(raw.data_offsets)}; expected [begin, end] of non-negative integers`);
  }
  const [begin, end] = offsets;
  if (end < begin) fail(source, `${t} has data_offsets [${begin},${end}] that end before they begin`);
  const elements = shape.reduce((a, b) => a * b, 1);
  const needed = elements * DTYPES[dtype].size;
  if (!Number.isSafeInteger(needed)) fail(source, `${t} has shape ${fmtShape(shape)}, too large to address`);
  if (end - begin !== needed) {
    fail(
      source,
      `${t} has shape ${fmtShape(shape)} and dtype ${dtype}, which need ${needed} bytes, ` +
        `but its data_offsets [${begin},${end}] span ${end - begin} bytes`,
    );
  }
  return { name, dtype, shape: [...shape], dataOffsets: [begin, end], byteLength: needed };
}

/**
 * Parses the JSON header and checks the layout against the data section's length: every tensor inside it,
 * tensors contiguous from offset 0 to its end, as the Rust reader requires.
 */
export function parseHeader(
  headerBytes: Uint8Array,
  dataLength: number,
  source: string,
): { metadata: Record<string, string>; infos: TensorInfo[] } {
  let text: string;
  try {
    // ignoreBOM keeps a BOM in the text so JSON.parse rejects it, like serde does.
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(headerBytes);
  } catch {
    fail(source, 'header is not valid UTF-8');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    fail(source, `header is not valid JSON (${(err as Error).message})`);
  }
  if (!isObject(json)) fail(source, `header must be a JSON object, got ${describe(json)}`);

  const metadata: Record<string, string> = {};
  const infos: TensorInfo[] = [];
  for (const [name, raw] of Object.entries(json)) {
    if (name === '__metadata__') {
      // serde reads `Option<HashMap<String, String>>`: null means "no metadata".
      if (raw === null) continue;
      if (!isObject(raw)) fail(source, `"__metadata__" must be an object of strings, got ${describe(raw)}`);
      for (const [key, value] of Object.entries(raw)) {
        if (typeof value !== 'string') {
          fail(source, `"__metadata__" must map strings to strings, but ${q(key)} is ${describe(value)}`);
        }
        // defineProperty: a "__proto__" key must stay a plain entry, not replace the object's prototype.
        Object.defineProperty(metadata, key, { value, enumerable: true, writable: true, configurable: true });
      }
      continue;
    }
    infos.push(parseTensorEntry(name, raw, source));
  }

  // Truncation first: it explains overlaps/holes that are only symptoms. The tensor reaching furthest
  // gives the total number of missing bytes.
  let furthest: TensorInfo | undefined;
  for (const info of infos) if (!furthest || info.dataOffsets[1] > furthest.dataOffsets[1]) furthest = info;
  if (furthest && furthest.dataOffsets[1] > dataLength) {
    const [b, e] = furthest.dataOffsets;
    fail(
      source,
      `tensor ${q(furthest.name)} needs bytes [${b},${e}) of the data section, which has only ${dataLength} bytes: ` +
        `${e - dataLength} bytes missing (truncated file?)`,
    );
  }

  infos.sort((a, b) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1]);
  let cursor = 0;
  let previous: TensorInfo | undefined;
  for (const info of infos) {
    const [b, e] = info.dataOffsets;
    if (previous && b < cursor) {
      const [pb, pe] = previous.dataOffsets;
      fail(source, `tensors ${q(previous.name)} [${pb},${pe}) and ${q(info.name)} [${b},${e}) overlap`);
    }
    if (b > cursor) {
      const where = previous
        ? `between tensor ${q(previous.name)} (ends at ${cursor}) and tensor ${q(info.name)} (starts at ${b})`
        : `at the start of the data section, before tensor ${q(info.name)} (starts at ${b})`;
      fail(source, `${b - cursor} unused bytes ${where}; tensor data must be contiguous`);
    }
    cursor = e;
    previous = info;
  }
  if (cursor < dataLength) {
    const where = previous
      ? `after the last tensor ${q(previous.name)} (ends at ${cursor})`
      : 'but the header lists no tensors';
    fail(source, `${dataLength - cursor} unused bytes in the ${dataLength}-byte data section ${where}`);
  }
  return { metadata, infos };
}
