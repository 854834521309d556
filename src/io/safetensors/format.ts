/**
 * The safetensors format: element types, header entries, limits and the helpers the reader and writer share.
 *
 * Layout: [u64 little-endian N][N bytes of UTF-8 JSON header, space-padded to a multiple of 8][data].
 * Header: `{"__metadata__"?: {string: string}, name: {dtype, shape, data_offsets: [begin, end]}}`, offsets
 * relative to the data start; data is little-endian, row-major, contiguous (no holes, no overlaps, nothing
 * after the last tensor). Validation follows the Rust reference reader (`safetensors/src/tensor.rs`), with
 * messages that say which tensor is wrong and how.
 */
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
export const DTYPES: Readonly<Record<SafeDtype, { size: number; rank: number }>> = {
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

/** A decoded tensor: `dtype` is the stored type, `data` its values in the array type listed in `decode.ts`. */
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

export const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export function fail(source: string, message: string): never {
  throw new Error(`${source}: ${message}`);
}

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return `a ${typeof value}`;
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function isDtype(value: string): value is SafeDtype {
  return Object.prototype.hasOwnProperty.call(DTYPES, value);
}

export const q = (name: string): string => JSON.stringify(name);
export const fmtShape = (shape: readonly number[]): string => `[${shape.join(',')}]`;

export function readNonNegativeInts(value: unknown): number[] | undefined {
  if (!Array.isArray(value)) return undefined;
  for (const v of value) if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) return undefined;
  return value as number[];
}
