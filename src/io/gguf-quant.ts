/**
 * llama.cpp's Q8_0 and Q4_0 block formats (ggml `ggml-common.h`, reference quantizers in `ggml-quants.c`),
 * written from the spec:
 *
 * - Blocks of 32 consecutive values along a row (ggml's innermost dimension), so a row's length must be a
 *   multiple of 32.
 * - Q8_0 (ggml type 8), 34 bytes: f16 scale d = absmax / 127, then 32 int8 q = round(x / d) (half away
 *   from zero). Value = d · q.
 * - Q4_0 (ggml type 2), 18 bytes: f16 scale d = m / −8 where m is the value of largest magnitude (sign
 *   kept), then 16 bytes; byte j holds element j in its low nibble and element j + 16 in its high nibble,
 *   each q = min(15, trunc(x / d + 8.5)). Value = d · (q − 8). m itself is exact (q = 0); a value of the
 *   opposite sign near −m clamps to q = 15 and may be off by up to |d| (all others by ≤ |d|/2).
 * - The quantizers divide by the float32 scale, as ggml's reference does, and store its f16 rounding.
 */
import { halfTable } from './safetensors/decode';
import { toHalfBits } from './safetensors/encode';

/** Values per block for both formats (ggml `QK8_0`, `QK4_0`). */
export const QK = 32;
/** Bytes per block: Q8_0 = 2 + 32, Q4_0 = 2 + 16. */
export const Q8_0_BLOCK_BYTES = 34;
export const Q4_0_BLOCK_BYTES = 18;

/** float32 → IEEE half bytes (little-endian), round to nearest even as ggml's FP32_TO_FP16: the safetensors encoder's rounding. */
export function toF16Bytes(data: Float32Array): Uint8Array {
  const out = new Uint8Array(data.length * 2);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < data.length; i++) dv.setUint16(2 * i, toHalfBits(data[i]), true);
  return out;
}

/** IEEE half bytes (little-endian) → float32, through the safetensors decoder's lookup table. */
export function fromF16Bytes(bytes: Uint8Array): Float32Array {
  const n = bytes.length >> 1;
  const out = new Float32Array(n);
  const table = halfTable();
  for (let i = 0; i < n; i++) out[i] = table[bytes[2 * i] | (bytes[2 * i + 1] << 8)];
  return out;
}

function checkLength(n: number, what: string): void {
  if (n % QK !== 0) throw new Error(`${what}: ${n} values is not a multiple of the block size ${QK}`);
}

/** Scales and quants of one format before the scales are rounded to f16 and packed. */
function packBlocks(x: Float32Array, blockBytes: number, block: (b: number, out: Uint8Array, at: number) => number): Uint8Array {
  const nb = x.length / QK;
  const out = new Uint8Array(nb * blockBytes);
  const scales = new Float32Array(nb);
  for (let b = 0; b < nb; b++) scales[b] = block(b, out, b * blockBytes + 2);
  const half = toF16Bytes(scales);
  for (let b = 0; b < nb; b++) out.set(half.subarray(2 * b, 2 * b + 2), b * blockBytes);
  return out;
}

/**
 * Quantizes float32 values (length a multiple of 32) to Q8_0 blocks.
 *
 * @example
 * const bytes = quantizeQ8_0(row); // row.length / 32 * 34 bytes
 */
export function quantizeQ8_0(x: Float32Array, what = 'quantizeQ8_0'): Uint8Array {
  checkLength(x.length, what);
  return packBlocks(x, Q8_0_BLOCK_BYTES, (b, out, at) => {
    let amax = 0;
    for (let j = 0; j < QK; j++) amax = Math.max(amax, Math.abs(x[b * QK + j]));
    const d = Math.fround(amax / 127);
    const id = d ? Math.fround(1 / d) : 0;
    for (let j = 0; j < QK; j++) {
      const v = Math.fround(x[b * QK + j] * id);
      const q = Math.sign(v) * Math.round(Math.abs(v)); // C roundf: half away from zero
      out[at + j] = q & 0xff;
    }
    return d;
  });
}

/**
 * Quantizes float32 values (length a multiple of 32) to Q4_0 blocks.
 *
 * @example
 * const bytes = quantizeQ4_0(row); // row.length / 32 * 18 bytes
 */
export function quantizeQ4_0(x: Float32Array, what = 'quantizeQ4_0'): Uint8Array {
  checkLength(x.length, what);
  return packBlocks(x, Q4_0_BLOCK_BYTES, (b, out, at) => {
    let amax = 0;
    let max = 0;
    for (let j = 0; j < QK; j++) {
      const v = x[b * QK + j];
      if (Math.abs(v) > amax) { amax = Math.abs(v); max = v; }
    }
    const d = Math.fround(max / -8);
    const id = d ? Math.fround(1 / d) : 0;
    const q = (v: number) => Math.min(15, Math.trunc(Math.fround(Math.fround(v * id) + 8.5)));
    for (let j = 0; j < QK / 2; j++) out[at + j] = q(x[b * QK + j]) | (q(x[b * QK + j + QK / 2]) << 4);
    return d;
  });
}

/** The f16 scale at the start of every block, decoded in one pass. */
function blockScales(bytes: Uint8Array, blockBytes: number): Float32Array {
  const nb = bytes.length / blockBytes;
  const half = new Uint8Array(nb * 2);
  for (let b = 0; b < nb; b++) half.set(bytes.subarray(b * blockBytes, b * blockBytes + 2), 2 * b);
  return fromF16Bytes(half);
}

/** Decodes Q8_0 blocks to float32. */
export function dequantizeQ8_0(bytes: Uint8Array): Float32Array {
  if (bytes.length % Q8_0_BLOCK_BYTES) throw new Error(`dequantizeQ8_0: ${bytes.length} bytes is not a whole number of ${Q8_0_BLOCK_BYTES}-byte blocks`);
  const nb = bytes.length / Q8_0_BLOCK_BYTES;
  const out = new Float32Array(nb * QK);
  const qs = new Int8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const scales = blockScales(bytes, Q8_0_BLOCK_BYTES);
  for (let b = 0; b < nb; b++) {
    const at = b * Q8_0_BLOCK_BYTES;
    const d = scales[b];
    for (let j = 0; j < QK; j++) out[b * QK + j] = d * qs[at + 2 + j];
  }
  return out;
}

/** Decodes Q4_0 blocks to float32. */
export function dequantizeQ4_0(bytes: Uint8Array): Float32Array {
  if (bytes.length % Q4_0_BLOCK_BYTES) throw new Error(`dequantizeQ4_0: ${bytes.length} bytes is not a whole number of ${Q4_0_BLOCK_BYTES}-byte blocks`);
  const nb = bytes.length / Q4_0_BLOCK_BYTES;
  const out = new Float32Array(nb * QK);
  const scales = blockScales(bytes, Q4_0_BLOCK_BYTES);
  for (let b = 0; b < nb; b++) {
    const at = b * Q4_0_BLOCK_BYTES;
    const d = scales[b];
    for (let j = 0; j < QK / 2; j++) {
      const byte = bytes[at + 2 + j];
      out[b * QK + j] = d * ((byte & 0x0f) - 8);
      out[b * QK + j + QK / 2] = d * ((byte >> 4) - 8);
    }
  }
  return out;
}
