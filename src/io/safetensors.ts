/**
 * Hugging Face safetensors, as pure data (no tfjs): parse, validate, decode, serialize, shards.
 *
 * Layout: [u64 little-endian N][N bytes of UTF-8 JSON header, space-padded to a multiple of 8][data].
 * Header: `{"__metadata__"?: {string: string}, name: {dtype, shape, data_offsets: [begin, end]}}`, offsets
 * relative to the data start; data is little-endian, row-major, contiguous (no holes, no overlaps, nothing
 * after the last tensor). Validation follows the Rust reference reader (`safetensors/src/tensor.rs`), with
 * messages that say which tensor is wrong and how.
 *
 * Reading is lazy: the header is parsed and checked up front, each tensor is decoded only when `read()` is
 * called (for files, only its bytes are read from disk). Decoded arrays are always copies, in one of the
 * three array types tfjs accepts directly:
 * - F64, F32, F16, BF16, F8_E5M2, F8_E4M3 → Float32Array (F64 is rounded to float32; the rest are exact);
 * - I64, U64, I32, U32, I16, U16, I8 → Int32Array (values outside int32 throw, naming tensor and element);
 * - U8, BOOL → Uint8Array (raw bytes).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from './atomic';

/** Element types of the safetensors format (the names used in the header). */
export type SafeDtype =
  | 'F64'
  | 'F32'
  | 'F16'
  | 'BF16'
  | 'F8_E5M2'
  | 'F8_E4M3'
  | 'I64'
  | 'I32'
  | 'I16'
  | 'I8'
  | 'U64'
  | 'U32'
  | 'U16'
  | 'U8'
  | 'BOOL';

/**
 * Bytes per element, and the position in the Rust `Dtype` enum, which is ordered by alignment: HF's writer
 * lays tensors out by descending rank, then by name, so every tensor starts aligned to its element size.
 */
const DTYPES: Readonly<Record<SafeDtype, { size: number; rank: number }>> = {
  BOOL: { size: 1, rank: 0 },
  U8: { size: 1, rank: 1 },
  I8: { size: 1, rank: 2 },
  F8_E5M2: { size: 1, rank: 3 },
  F8_E4M3: { size: 1, rank: 4 },
  I16: { size: 2, rank: 5 },
  U16: { size: 2, rank: 6 },
  F16: { size: 2, rank: 7 },
  BF16: { size: 2, rank: 8 },
  I32: { size: 4, rank: 9 },
  U32: { size: 4, rank: 10 },
  F32: { size: 4, rank: 11 },
  F64: { size: 8, rank: 12 },
  I64: { size: 8, rank: 13 },
  U64: { size: 8, rank: 14 },
};

/** Largest header the reader accepts, as in the Rust reference (`MAX_HEADER_SIZE`). */
export const SAFETENSORS_MAX_HEADER_BYTES = 100_000_000;
/** Index file of a sharded checkpoint: `{"weight_map": {tensor: file}}`. */
export const SAFETENSORS_INDEX_FILE = 'model.safetensors.index.json';
/** File name of an unsharded checkpoint. */
export const SAFETENSORS_SINGLE_FILE = 'model.safetensors';

/** A decoded tensor's values: Float32Array for float dtypes, Int32Array for integers, Uint8Array for U8/BOOL. */
export type DecodedArray = Float32Array | Int32Array | Uint8Array;

/** A decoded tensor: `dtype` is the stored type, `data` its values in the array type listed at the top of this file. */
export interface TensorData {
  dtype: SafeDtype;
  shape: number[];
  data: DecodedArray;
}

/** Arrays {@link serializeSafetensors} accepts as tensor values. */
export type TensorInputArray =
  | Float32Array
  | Float64Array
  | Int32Array
  | Int16Array
  | Int8Array
  | Uint8Array
  | Uint16Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array;

/**
 * A tensor to write. `dtype` defaults to the array's own type (Float32Array → F32, Int32Array → I32,
 * Uint8Array → U8, BigInt64Array → I64, ...). A different `dtype` converts: float arrays to F64/F32/F16/BF16
 * (round to nearest even), integer arrays to any integer dtype or BOOL (range-checked). F8 cannot be written.
 * A {@link TensorData} from `read()` is a valid input and writes back the same bytes (except F8, F64).
 */
export interface TensorInput {
  shape: readonly number[];
  data: TensorInputArray;
  dtype?: SafeDtype;
}

/** What the header says about one tensor. `dataOffsets` are relative to the data start, end exclusive. */
export interface TensorInfo {
  readonly name: string;
  readonly dtype: SafeDtype;
  readonly shape: readonly number[];
  readonly dataOffsets: readonly [number, number];
  readonly byteLength: number;
}

/** A tensor of a parsed file: its header entry plus lazy access to its data. */
export interface SafeTensorEntry extends TensorInfo {
  /** The raw little-endian bytes (a view into the buffer for {@link parseSafetensors}, a fresh read for files). */
  bytes(): Uint8Array;
  /** Decodes the values into a new array (see {@link DecodedArray}). */
  read(): TensorData;
}

/** A parsed safetensors file or buffer. */
export interface SafetensorsFile {
  /** The file path or the source name given to {@link parseSafetensors}; starts every error message. */
  source: string;
  /** `__metadata__` of the header (empty when absent). */
  metadata: Record<string, string>;
  /** The tensors in data-offset order. */
  tensors: Map<string, SafeTensorEntry>;
  /** Byte offset of the data section in the file: 8 + header length. */
  dataStart: number;
}

/** The tensors of a checkpoint folder, possibly spread over several files. */
export interface ShardedSafetensors {
  /** Every tensor named in the index's weight_map (or every tensor of `model.safetensors`). */
  tensors: Map<string, SafeTensorEntry>;
  /** The files read, in order of first mention in the weight_map; each carries its own metadata. */
  files: SafetensorsFile[];
  /** Path of the index file, when there was one. */
  indexFile?: string;
}

const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function fail(source: string, message: string): never {
  throw new Error(`${source}: ${message}`);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return `a ${typeof value}`;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isDtype(value: string): value is SafeDtype {
  return Object.prototype.hasOwnProperty.call(DTYPES, value);
}

const q = (name: string): string => JSON.stringify(name);
const fmtShape = (shape: readonly number[]): string => `[${shape.join(',')}]`;

// ---------------------------------------------------------------------------------------------------------
// Header parsing and validation

/** Reads and checks the u64 header length: `total` is the whole file's size. */
function readHeaderLength(first8: Uint8Array, total: number, source: string): number {
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

function readNonNegativeInts(value: unknown): number[] | undefined {
  if (!Array.isArray(value)) return undefined;
  for (const v of value) if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) return undefined;
  return value as number[];
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
function parseHeader(
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

// ---------------------------------------------------------------------------------------------------------
// Decoding

let f16Table: Float32Array | undefined;

/** All 65536 half-precision values: a lookup beats per-element bit arithmetic for large tensors. */
function halfTable(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) {
      const sign = h & 0x8000 ? -1 : 1;
      const exp = (h >> 10) & 0x1f;
      const mant = h & 0x3ff;
      if (exp === 0) f16Table[h] = sign * mant * 2 ** -24;
      else if (exp === 31) f16Table[h] = mant ? NaN : sign * Infinity;
      else f16Table[h] = sign * (1 + mant / 1024) * 2 ** (exp - 15);
    }
  }
  return f16Table;
}

/** F8_E4M3 ("fn" variant used by torch.float8_e4m3fn): bias 7, no infinities, S.1111.111 is NaN. */
function e4m3(byte: number): number {
  const sign = byte & 0x80 ? -1 : 1;
  const exp = (byte >> 3) & 0xf;
  const mant = byte & 7;
  if (exp === 15 && mant === 7) return NaN;
  if (exp === 0) return sign * mant * 2 ** -9;
  return sign * (1 + mant / 8) * 2 ** (exp - 7);
}

function intRangeError(source: string, info: TensorInfo, index: number, value: bigint): never {
  fail(source, `tensor ${q(info.name)} (${info.dtype}) element ${index} is ${value}, outside the int32 range integers are decoded to`);
}

function decode(raw: Uint8Array, info: TensorInfo, source: string): DecodedArray {
  const size = DTYPES[info.dtype].size;
  const n = raw.byteLength / size;
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  switch (info.dtype) {
    case 'F32': {
      const out = new Float32Array(n);
      if (HOST_LITTLE_ENDIAN) new Uint8Array(out.buffer).set(raw);
      else for (let i = 0; i < n; i++) out[i] = dv.getFloat32(i * 4, true);
      return out;
    }
    case 'F64': {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = dv.getFloat64(i * 8, true);
      return out;
    }
    case 'F16': {
      const table = halfTable();
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = table[dv.getUint16(i * 2, true)];
      return out;
    }
    case 'BF16': {
      // bf16 is the top half of a float32: shifting the bits back is exact, NaN and infinities included.
      const bits = new Uint32Array(n);
      for (let i = 0; i < n; i++) bits[i] = dv.getUint16(i * 2, true) << 16;
      return new Float32Array(bits.buffer);
    }
    case 'F8_E5M2': {
      // E5M2 is the top byte of a float16.
      const table = halfTable();
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = table[raw[i] << 8];
      return out;
    }
    case 'F8_E4M3': {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = e4m3(raw[i]);
      return out;
    }
    case 'I32': {
      const out = new Int32Array(n);
      if (HOST_LITTLE_ENDIAN) new Uint8Array(out.buffer).set(raw);
      else for (let i = 0; i < n; i++) out[i] = dv.getInt32(i * 4, true);
      return out;
    }
    case 'I16':
    case 'U16':
    case 'I8': {
      const out = new Int32Array(n);
      if (info.dtype === 'I16') for (let i = 0; i < n; i++) out[i] = dv.getInt16(i * 2, true);
      else if (info.dtype === 'U16') for (let i = 0; i < n; i++) out[i] = dv.getUint16(i * 2, true);
      else for (let i = 0; i < n; i++) out[i] = dv.getInt8(i);
      return out;
    }
    case 'U32': {
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const v = dv.getUint32(i * 4, true);
        if (v > 0x7fffffff) intRangeError(source, info, i, BigInt(v));
        out[i] = v;
      }
      return out;
    }
    case 'I64':
    case 'U64': {
      // Checks the high word instead of building a BigInt per element: I64 token ids can be large tensors.
      const signed = info.dtype === 'I64';
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const lo = dv.getUint32(i * 8, true);
        const hi = dv.getInt32(i * 8 + 4, true);
        const fits = (hi === 0 && lo <= 0x7fffffff) || (signed && hi === -1 && lo > 0x7fffffff);
        if (!fits) intRangeError(source, info, i, signed ? dv.getBigInt64(i * 8, true) : dv.getBigUint64(i * 8, true));
        out[i] = lo | 0;
      }
      return out;
    }
    case 'U8':
    case 'BOOL':
      return new Uint8Array(raw); // a copy, and a plain Uint8Array even when `raw` is a Buffer
  }
}

function makeEntry(info: TensorInfo, source: string, load: (begin: number, end: number) => Uint8Array): SafeTensorEntry {
  const [begin, end] = info.dataOffsets;
  return {
    ...info,
    bytes: () => load(begin, end),
    read: () => ({ dtype: info.dtype, shape: [...info.shape], data: decode(load(begin, end), info, source) }),
  };
}

function toMap(infos: TensorInfo[], source: string, load: (begin: number, end: number) => Uint8Array): Map<string, SafeTensorEntry> {
  return new Map(infos.map((info) => [info.name, makeEntry(info, source, load)]));
}

/**
 * Parses a safetensors file held in memory. The header is validated at once; tensor data is decoded only by
 * each entry's `read()` (`bytes()` returns a view into `bytes`, so keep `bytes` unmodified while in use).
 * Errors start with `source`.
 *
 * @example
 * const st = parseSafetensors(fs.readFileSync('adapter_model.safetensors'), 'adapter_model.safetensors');
 * const a = st.tensors.get('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight')?.read();
 * // a.data is a Float32Array even when the file stores BF16
 */
export function parseSafetensors(bytes: Uint8Array, source = '<buffer>'): SafetensorsFile {
  const n = readHeaderLength(bytes, bytes.byteLength, source);
  const dataStart = 8 + n;
  const { metadata, infos } = parseHeader(bytes.subarray(8, dataStart), bytes.byteLength - dataStart, source);
  const data = bytes.subarray(dataStart);
  return { source, metadata, tensors: toMap(infos, source, (b, e) => data.subarray(b, e)), dataStart };
}

function readExactly(fd: number, length: number, position: number, file: string, what: string): Uint8Array {
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const got = fs.readSync(fd, out, done, length - done, position + done);
    if (got === 0) fail(file, `file ended while reading ${what}: got ${done} of ${length} bytes`);
    done += got;
  }
  return out;
}

/**
 * Opens a safetensors file, reading only its header; each entry's `read()`/`bytes()` later reads just that
 * tensor's bytes, so picking a few tensors from a large checkpoint is cheap. A read fails (rather than
 * returning wrong data) if the file was replaced or resized since the header was read. Errors start with `file`.
 *
 * @example
 * const st = readSafetensors('gpt2/model.safetensors');
 * const wte = st.tensors.get('wte.weight')!.read(); // { dtype: 'F32', shape: [50257, 768], data: Float32Array }
 */
export function readSafetensors(file: string): SafetensorsFile {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (err) {
    fail(file, `cannot open: ${(err as Error).message}`);
  }
  let stat: fs.Stats;
  let n: number;
  let parsed: { metadata: Record<string, string>; infos: TensorInfo[] };
  try {
    stat = fs.fstatSync(fd);
    const first8 = readExactly(fd, Math.min(8, stat.size), 0, file, 'the header length');
    n = readHeaderLength(first8, stat.size, file);
    parsed = parseHeader(readExactly(fd, n, 8, file, 'the header'), stat.size - 8 - n, file);
  } finally {
    fs.closeSync(fd);
  }
  const dataStart = 8 + n;
  const load = (begin: number, end: number): Uint8Array => {
    const rfd = fs.openSync(file, 'r');
    try {
      const now = fs.fstatSync(rfd);
      if (now.ino !== stat.ino || now.size !== stat.size || now.mtimeMs !== stat.mtimeMs) {
        fail(file, 'file changed since its header was read; read it again');
      }
      return readExactly(rfd, end - begin, dataStart + begin, file, 'tensor data');
    } finally {
      fs.closeSync(rfd);
    }
  };
  return { source: file, metadata: parsed.metadata, tensors: toMap(parsed.infos, file, load), dataStart };
}

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

// ---------------------------------------------------------------------------------------------------------
// Encoding and serialization

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** float32 → float16 bits, round to nearest even; overflow → ±Infinity, NaN stays NaN. */
function toHalfBits(value: number): number {
  f32Scratch[0] = value;
  const bits = u32Scratch[0];
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 112; // re-biased from 127 to 15
  if (e >= 31) return sign | 0x7c00;
  if (e >= 1) {
    // A carry out of the mantissa correctly bumps the exponent (up to 0x7c00 = Infinity).
    let h = (e << 10) | (mant >>> 13);
    const rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest === 0x1000 && h & 1)) h++;
    return sign | h;
  }
  // Subnormal half: value / 2^-24 = (1.mant) * 2^(exp-126); shifting by more than 24 always rounds to 0.
  const shift = 126 - exp;
  if (shift > 24) return sign;
  const full = mant | 0x800000;
  let h = full >>> shift;
  const rest = full & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  if (rest > half || (rest === half && h & 1)) h++;
  return sign | h;
}

/** float32 → bfloat16 bits, round to nearest even; NaN stays (quiet) NaN. */
function toBf16Bits(value: number): number {
  f32Scratch[0] = value;
  const bits = u32Scratch[0];
  if ((bits & 0x7f800000) === 0x7f800000 && bits & 0x7fffff) return (bits >>> 16) | 0x40;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

function naturalDtype(data: TensorInputArray): SafeDtype | undefined {
  if (data instanceof Float32Array) return 'F32';
  if (data instanceof Float64Array) return 'F64';
  if (data instanceof Int32Array) return 'I32';
  if (data instanceof Int16Array) return 'I16';
  if (data instanceof Int8Array) return 'I8';
  if (data instanceof Uint8Array) return 'U8';
  if (data instanceof Uint16Array) return 'U16';
  if (data instanceof Uint32Array) return 'U32';
  if (data instanceof BigInt64Array) return 'I64';
  if (data instanceof BigUint64Array) return 'U64';
  return undefined;
}

const FLOAT_DTYPES: ReadonlySet<SafeDtype> = new Set<SafeDtype>(['F64', 'F32', 'F16', 'BF16']);
const INT_RANGES: Readonly<Partial<Record<SafeDtype, readonly [bigint, bigint]>>> = {
  I8: [-(2n ** 7n), 2n ** 7n - 1n],
  I16: [-(2n ** 15n), 2n ** 15n - 1n],
  I32: [-(2n ** 31n), 2n ** 31n - 1n],
  I64: [-(2n ** 63n), 2n ** 63n - 1n],
  U8: [0n, 2n ** 8n - 1n],
  U16: [0n, 2n ** 16n - 1n],
  U32: [0n, 2n ** 32n - 1n],
  U64: [0n, 2n ** 64n - 1n],
  BOOL: [0n, 1n],
};

interface Planned {
  name: string;
  nameBytes: Uint8Array;
  dtype: SafeDtype;
  shape: number[];
  data: TensorInputArray;
  byteLength: number;
}

function planTensor(name: string, input: TensorInput, where: string): Planned {
  const t = `tensor ${q(name)}`;
  if (name === '__metadata__') fail(where, `"__metadata__" is reserved for metadata and cannot name a tensor`);
  const shape = readNonNegativeInts(input.shape);
  if (!shape) fail(where, `${t} has shape ${JSON.stringify(input.shape)}; expected an array of non-negative integers`);
  const natural = naturalDtype(input.data);
  if (!natural) fail(where, `${t} data must be a typed array (Float32Array, Int32Array, Uint8Array, ...)`);
  const dtype = input.dtype ?? natural;
  if (!isDtype(dtype)) fail(where, `${t} has unknown dtype ${q(String(dtype))}`);
  const elements = shape.reduce((a, b) => a * b, 1);
  if (elements !== input.data.length) {
    fail(where, `${t} has shape ${fmtShape(shape)} (${elements} elements) but ${input.data.length} data values`);
  }
  const floatData = FLOAT_DTYPES.has(natural);
  if (dtype.startsWith('F8_')) fail(where, `${t}: writing ${dtype} is not supported`);
  if (FLOAT_DTYPES.has(dtype) !== floatData) {
    const needs = floatData ? 'an integer typed array' : 'a Float32Array or Float64Array';
    fail(where, `${t}: dtype ${dtype} needs ${needs}, got ${input.data.constructor.name}`);
  }
  return {
    name,
    nameBytes: new TextEncoder().encode(name),
    dtype,
    shape,
    data: input.data,
    byteLength: elements * DTYPES[dtype].size,
  };
}

/** Writes `p.data` as `p.dtype` into `out` (exactly p.byteLength bytes), converting and range-checking. */
function encodeInto(out: Uint8Array, p: Planned, where: string): void {
  const { data, dtype } = p;
  if (dtype === naturalDtype(data) && HOST_LITTLE_ENDIAN) {
    out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    return;
  }
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  const n = data.length;
  if (data instanceof Float32Array || data instanceof Float64Array) {
    // Going through float32 first cannot double-round: float32 has more than 2p+2 bits for p = 11 or 8.
    if (dtype === 'F32') for (let i = 0; i < n; i++) dv.setFloat32(i * 4, data[i], true);
    else if (dtype === 'F64') for (let i = 0; i < n; i++) dv.setFloat64(i * 8, data[i], true);
    else if (dtype === 'F16') for (let i = 0; i < n; i++) dv.setUint16(i * 2, toHalfBits(data[i]), true);
    else for (let i = 0; i < n; i++) dv.setUint16(i * 2, toBf16Bits(data[i]), true);
    return;
  }
  const [lo, hi] = INT_RANGES[dtype] as readonly [bigint, bigint];
  const loN = Number(lo);
  const hiN = Number(hi);
  const outOfRange = (i: number, v: number | bigint): never =>
    fail(where, `tensor ${q(p.name)} element ${i} is ${v}, outside the range of ${dtype} [${lo}, ${hi}]`);
  if (data instanceof BigInt64Array || data instanceof BigUint64Array) {
    for (let i = 0; i < n; i++) {
      const v = data[i];
      if (v < lo || v > hi) outOfRange(i, v);
      if (dtype === 'I64') dv.setBigInt64(i * 8, v, true);
      else if (dtype === 'U64') dv.setBigUint64(i * 8, v, true);
      else writeSmallInt(dv, dtype, i, Number(v));
    }
    return;
  }
  for (let i = 0; i < n; i++) {
    const v = data[i];
    if (v < loN || v > hiN) outOfRange(i, v);
    if (dtype === 'I64' || dtype === 'U64') {
      // Number sources are at most 32-bit: write low word and sign-extended high word.
      dv.setInt32(i * 8, v, true);
      dv.setInt32(i * 8 + 4, v < 0 ? -1 : 0, true);
    } else writeSmallInt(dv, dtype, i, v);
  }
}

function writeSmallInt(dv: DataView, dtype: SafeDtype, i: number, v: number): void {
  switch (dtype) {
    case 'I8':
      return dv.setInt8(i, v);
    case 'U8':
    case 'BOOL':
      return dv.setUint8(i, v);
    case 'I16':
      return dv.setInt16(i * 2, v, true);
    case 'U16':
      return dv.setUint16(i * 2, v, true);
    case 'I32':
      return dv.setInt32(i * 4, v, true);
    case 'U32':
      return dv.setUint32(i * 4, v, true);
    default:
      throw new Error(`internal: ${dtype} is not a small integer dtype`);
  }
}

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
