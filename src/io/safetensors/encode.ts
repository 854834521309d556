/** Encoding tensor values into safetensors bytes: dtype choice and checks, float16/bfloat16 rounding, integer ranges. */
import { DTYPES, HOST_LITTLE_ENDIAN, SafeDtype, TensorInput, TensorInputArray, fail, fmtShape, isDtype, q, readNonNegativeInts } from './format';

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** float32 → float16 bits, round to nearest even; overflow → ±Infinity, NaN stays NaN. */
export function toHalfBits(value: number): number {
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

export interface Planned {
  name: string;
  nameBytes: Uint8Array;
  dtype: SafeDtype;
  shape: number[];
  data: TensorInputArray;
  byteLength: number;
}

export function planTensor(name: string, input: TensorInput, where: string): Planned {
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
export function encodeInto(out: Uint8Array, p: Planned, where: string): void {
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
