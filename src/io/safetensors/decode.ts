/**
 * Decoding tensor bytes. Decoded arrays are always copies, in one of the three array types tfjs accepts directly:
 * - F64, F32, F16, BF16, F8_E5M2, F8_E4M3 → Float32Array (F64 is rounded to float32; the rest are exact);
 * - I64, U64, I32, U32, I16, U16, I8 → Int32Array (values outside int32 throw, naming tensor and element);
 * - U8, BOOL → Uint8Array (raw bytes).
 */
import { DTYPES, DecodedArray, HOST_LITTLE_ENDIAN, TensorInfo, fail, q } from './format';

let f16Table: Float32Array | undefined;

/** All 65536 half-precision values: a lookup beats per-element bit arithmetic for large tensors. */
export function halfTable(): Float32Array {
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

export function decode(raw: Uint8Array, info: TensorInfo, source: string): DecodedArray {
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
