/**
 * Storage formats of frozen base weights (QLoRA, Dettmers et al., arXiv 2305.14314), held as packed bytes
 * in JavaScript memory and decoded to float32 only while a matrix product runs (see `./quant-ops`).
 *
 * A matrix is read along its output channels: the columns of a projection stored [in, out], the rows of
 * the (tied) embedding table [vocab, d], whose head computes h·Eᵀ. Scales and blocks follow the canonical
 * index k = c·L + l of element (channel c, position l), L being the channel's length: the order of a row
 * of PyTorch's [out, in] weight, which is how bitsandbytes flattens a weight into blocks. The codes
 * themselves are kept in the stored layout, so decoding writes the float32 matrix in one sequential pass.
 *
 * - `int8`: per-output-channel absmax (LLM.int8()'s vector-wise scaling, without its outlier split):
 *   s_c = absmax_c / 127, q = round(w / s_c) ∈ [−127, 127]. Error ≤ s_c / 2 per element. 1 byte + 4/L.
 * - `nf4`: 4-bit NormalFloat. Blocks of 64 consecutive values (canonical order) with an absmax scale each;
 *   each value becomes the index of the nearest of the 16 NF4 code values to w / absmax (two per byte).
 *   Error ≤ absmax · (largest half-gap between neighbouring codes) = 0.1519·absmax. 0.5 byte + 4/64.
 *   With `doubleQuant` the block scales are quantized again (QLoRA §3 "Double Quantization"): minus their
 *   mean, int8 absmax in blocks of 256 (the paper uses 8-bit floats there; int8 is tunelab's choice), so
 *   a scale costs 1 byte + 4/256: 0.5 + 1/64 + 1/16384 bytes per weight.
 */

/** A storage format of frozen weights. */
export type QuantFormat = 'int8' | 'nf4';

/** The formats, for option checks. */
export const quantFormats: readonly QuantFormat[] = Object.freeze(['int8', 'nf4']);

/** Values per NF4 block (QLoRA's block size for the weights). */
export const NF4_BLOCK = 64;
/** Block scales per second-level block under double quantization (QLoRA's 256). */
export const NF4_SCALE_BLOCK = 256;

/**
 * The 16 NF4 code values: quantiles of N(0, 1) normalised to [−1, 1], with an exact zero (QLoRA eq. 4,
 * appendix; bitsandbytes `csrc/kernels.cu` `nf4_dequantization_lut`, the same numbers to float32).
 */
export const NF4_CODE: Readonly<Float32Array> = Float32Array.from([
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
  -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
  0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
  0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]);

/** Decision thresholds between neighbouring NF4 codes (midpoints): a value maps to the nearest code. */
const NF4_MID = Float32Array.from({ length: 15 }, (_, i) => (NF4_CODE[i] + NF4_CODE[i + 1]) / 2);

/** Index of the NF4 code nearest to v ∈ [−1, 1] (a value exactly on a midpoint takes the lower code). */
export function nf4Index(v: number): number {
  let lo = 0;
  let hi = 15;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (v > NF4_MID[mid]) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Options of {@link quantizeMatrix}. */
export interface QuantizeOptions {
  format: QuantFormat;
  /** Which axis of the stored [rows, cols] matrix indexes output channels: 1 for projections [in, out], 0 for the embedding table. */
  channelAxis: 0 | 1;
  /** NF4 only: quantize the block scales too (QLoRA's double quantization). */
  doubleQuant?: boolean;
}

/** Block scales, plain (f32) or double-quantized (int8 codes, one f32 scale per 256, and the mean). */
type Scales = { kind: 'f32'; values: Float32Array } | { kind: 'int8'; codes: Int8Array; scales: Float32Array; offset: number };

/**
 * One quantized matrix of the stored shape [rows, cols]. Immutable: models cloned from a quantized model
 * share it. {@link dequantize} returns the float32 matrix in the stored layout.
 */
export class QuantizedMatrix {
  /** @internal use {@link quantizeMatrix} */
  constructor(
    readonly format: QuantFormat,
    readonly shape: readonly [number, number],
    readonly channelAxis: 0 | 1,
    /** In the stored layout. int8: one two's-complement byte per value; nf4: two 4-bit code indices per byte (low nibble first). */
    private readonly codes: Uint8Array,
    /** int8: one per channel; nf4: one per 64-value block. */
    private readonly scales: Scales,
  ) {}

  /** Number of values. */
  get size(): number {
    return this.shape[0] * this.shape[1];
  }

  /** Whether the NF4 block scales are themselves quantized. */
  get doubleQuant(): boolean {
    return this.scales.kind === 'int8';
  }

  /** Bytes this matrix holds: codes and scales (the memory a quantized base actually uses). */
  get bytes(): number {
    const s = this.scales;
    return this.codes.byteLength + (s.kind === 'f32' ? s.values.byteLength : s.codes.byteLength + s.scales.byteLength + 4);
  }

  /** The scale of each channel (int8) or block (nf4), decoded. */
  blockScales(): Float32Array {
    const s = this.scales;
    if (s.kind === 'f32') return s.values;
    const out = new Float32Array(s.codes.length);
    for (let b = 0; b < out.length; b++) out[b] = s.codes[b] * s.scales[Math.floor(b / NF4_SCALE_BLOCK)] + s.offset;
    return out;
  }

  /** The matrix as float32 [rows, cols] in the stored layout. */
  dequantize(): Float32Array {
    const [rows, cols] = this.shape;
    const out = new Float32Array(rows * cols);
    const scale = this.blockScales();
    const byCol = this.channelAxis === 1;
    if (this.format === 'int8') {
      decodeInt8(this.codes, scale, rows, cols, byCol, out);
      return out;
    }
    const q = this.codes as Uint8Array;
    const code = NF4_CODE;
    const n = rows * cols;
    // Block of element k: canonical index (channel · len + position) / 64 (NF4_BLOCK).
    if (!byCol) {
      // Rows are channels: the canonical index is the stored one. Two values per byte.
      for (let k = 0; k + 1 < n; k += 2) {
        const byte = q[k >> 1];
        out[k] = code[byte & 15] * scale[k >> 6];
        out[k + 1] = code[byte >> 4] * scale[(k + 1) >> 6];
      }
      if (n & 1) out[n - 1] = code[q[(n - 1) >> 1] & 15] * scale[(n - 1) >> 6];
    } else if (rows % NF4_BLOCK === 0 && cols % 2 === 0) {
      // Columns are channels: a band of 64 rows uses one scale per column (column c's block r/64).
      const perColumn = rows / NF4_BLOCK;
      const band = new Float32Array(cols);
      for (let r = 0, k = 0; r < rows; r++) {
        if (r % NF4_BLOCK === 0) for (let c = 0; c < cols; c++) band[c] = scale[c * perColumn + r / NF4_BLOCK];
        for (let c = 0; c < cols; c += 2, k += 2) {
          const byte = q[k >> 1];
          out[k] = code[byte & 15] * band[c];
          out[k + 1] = code[byte >> 4] * band[c + 1];
        }
      }
    } else {
      for (let r = 0, k = 0; r < rows; r++) {
        for (let c = 0; c < cols; c++, k++) out[k] = code[(q[k >> 1] >> ((k & 1) << 2)) & 15] * scale[Math.floor((c * rows + r) / NF4_BLOCK)];
      }
    }
    return out;
  }
}

/** Signed value of each int8 code byte (a table lookup decodes faster than sign-extending a read). */
const INT8_VALUE = Float32Array.from({ length: 256 }, (_, b) => (b << 24) >> 24);

/** int8 code bytes (stored layout) times their channel's scale, into `out`. */
function decodeInt8(q: Uint8Array, scale: Float32Array, rows: number, cols: number, byCol: boolean, out: Float32Array): void {
  for (let r = 0, k = 0; r < rows; r++) {
    if (byCol) for (let c = 0; c < cols; c++, k++) out[k] = INT8_VALUE[q[k]] * scale[c];
    else for (let c = 0, s = scale[r]; c < cols; c++, k++) out[k] = INT8_VALUE[q[k]] * s;
  }
}

/**
 * Quantizes a float32 matrix of stored shape `shape` (see the module comment for the formats).
 *
 * @example
 * const q = quantizeMatrix(w, [128, 384], { format: 'nf4', channelAxis: 1 });
 * q.bytes;          // 128·384/2 + 768·4
 * q.dequantize();   // Float32Array, error ≤ 0.152 · block absmax
 */
export function quantizeMatrix(data: Float32Array, shape: readonly [number, number], options: QuantizeOptions): QuantizedMatrix {
  const [rows, cols] = shape;
  if (data.length !== rows * cols) throw new Error(`quantizeMatrix: ${data.length} values do not fill shape [${rows}, ${cols}]`);
  if (!quantFormats.includes(options.format)) throw new Error(`quantizeMatrix: format must be ${quantFormats.map((f) => `"${f}"`).join(' or ')} (got ${JSON.stringify(options.format)})`);
  if (options.doubleQuant && options.format !== 'nf4') throw new Error('quantizeMatrix: doubleQuant applies to "nf4" block scales only');
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) throw new Error(`quantizeMatrix: value ${data[i]} at [${Math.floor(i / cols)}, ${i % cols}] is not finite`);
  }
  const channels = options.channelAxis === 1 ? cols : rows;
  const len = data.length / channels;
  const strideC = options.channelAxis === 1 ? 1 : cols;
  const strideL = options.channelAxis === 1 ? cols : 1;
  // Stored index of canonical index k (channel-major order).
  const stored = (k: number) => Math.floor(k / len) * strideC + (k % len) * strideL;
  const at = (k: number) => data[stored(k)];
  if (options.format === 'int8') {
    const q = new Int8Array(data.length);
    const scales = new Float32Array(channels);
    for (let c = 0; c < channels; c++) {
      let amax = 0;
      for (let l = 0; l < len; l++) amax = Math.max(amax, Math.abs(at(c * len + l)));
      const s = Math.fround(amax / 127);
      scales[c] = s;
      for (let l = 0; l < len; l++) q[stored(c * len + l)] = s ? Math.round(at(c * len + l) / s) : 0;
    }
    return new QuantizedMatrix('int8', [rows, cols], options.channelAxis, new Uint8Array(q.buffer), { kind: 'f32', values: scales });
  }
  const nBlocks = Math.ceil(data.length / NF4_BLOCK);
  const absmax = new Float32Array(nBlocks);
  for (let k = 0; k < data.length; k++) absmax[Math.floor(k / NF4_BLOCK)] = Math.max(absmax[Math.floor(k / NF4_BLOCK)], Math.abs(at(k)));
  const scales = options.doubleQuant ? quantizeScales(absmax) : { kind: 'f32' as const, values: absmax };
  // Codes are chosen against the scales the decoder will use (after double quantization, if any).
  const used = scales.kind === 'f32' ? absmax : new QuantizedMatrix('nf4', [1, 1], 1, new Uint8Array(0), scales).blockScales();
  const q = new Uint8Array(Math.ceil(data.length / 2));
  for (let k = 0; k < data.length; k++) {
    const s = used[Math.floor(k / NF4_BLOCK)];
    const idx = s > 0 ? nf4Index(Math.max(-1, Math.min(1, at(k) / s))) : 7;
    const i = stored(k);
    q[i >> 1] |= idx << ((i & 1) << 2);
  }
  return new QuantizedMatrix('nf4', [rows, cols], options.channelAxis, q, scales);
}

/** Double quantization of block scales: (s − mean) as int8 with an absmax scale per 256. */
function quantizeScales(absmax: Float32Array): Scales {
  let mean = 0;
  for (const s of absmax) mean += s;
  mean = Math.fround(mean / absmax.length);
  const nb = Math.ceil(absmax.length / NF4_SCALE_BLOCK);
  const codes = new Int8Array(absmax.length);
  const scales = new Float32Array(nb);
  for (let b = 0; b < nb; b++) {
    let amax = 0;
    const end = Math.min(absmax.length, (b + 1) * NF4_SCALE_BLOCK);
    for (let i = b * NF4_SCALE_BLOCK; i < end; i++) amax = Math.max(amax, Math.abs(absmax[i] - mean));
    const s = Math.fround(amax / 127);
    scales[b] = s;
    for (let i = b * NF4_SCALE_BLOCK; i < end; i++) codes[i] = s ? Math.round((absmax[i] - mean) / s) : 0;
  }
  return { kind: 'int8', codes, scales, offset: mean };
}
