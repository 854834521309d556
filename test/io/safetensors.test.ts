import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  parseSafetensors,
  readSafetensors,
  readShardedSafetensors,
  serializeSafetensors,
  writeSafetensors,
  type TensorData,
  type TensorInput,
} from '../../src/io/safetensors';

/** A safetensors file from a raw header (string or JSON value) and data bytes; no padding, no checks. */
function craft(header: unknown, data: Uint8Array | number = 0): Buffer {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([length, json, typeof data === 'number' ? Buffer.alloc(data) : Buffer.from(data)]);
}

/** Little-endian u16 words, for hand-written F16/BF16 bit patterns. */
function u16le(words: number[]): Uint8Array {
  const out = Buffer.alloc(words.length * 2);
  words.forEach((w, i) => out.writeUInt16LE(w, i * 2));
  return out;
}

function u16words(bytes: Uint8Array): number[] {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return Array.from({ length: b.length / 2 }, (_, i) => b.readUInt16LE(i * 2));
}

function thrown(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof Error, 'expected an Error instance');
    return err.message;
  }
  return assert.fail('expected a throw');
}

const SRC = 'bad.safetensors';
const parseError = (bytes: Uint8Array): string => thrown(() => parseSafetensors(bytes, SRC));

/** Element-wise equality that tells -0 from 0 and accepts NaN = NaN. */
function assertSameValues(actual: ArrayLike<number>, expected: number[]): void {
  assert.equal(actual.length, expected.length, 'length');
  for (let i = 0; i < expected.length; i++) {
    assert.ok(Object.is(actual[i], expected[i]), `element ${i}: got ${Object.is(actual[i], -0) ? '-0' : actual[i]}, want ${expected[i]}`);
  }
}

function only(bytes: Uint8Array, name = 'x'): TensorData {
  const entry = parseSafetensors(bytes).tensors.get(name);
  assert.ok(entry, `tensor ${name} present`);
  return entry.read();
}

describe('io/safetensors', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-st-'));
  });
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  describe('round trip', () => {
    it('keeps dtypes, shapes, values and metadata, including a scalar and zero-size tensors', () => {
      const inputs: Record<string, TensorInput & { expect: { ctor: unknown; values: number[] } }> = {
        f32: { shape: [2, 3], data: new Float32Array([1, -2.5, 3e-8, 1e30, -0, 7]), expect: { ctor: Float32Array, values: [1, -2.5, Math.fround(3e-8), Math.fround(1e30), -0, 7] } },
        f64: { shape: [2], data: new Float64Array([1.5, -1e10]), expect: { ctor: Float32Array, values: [1.5, -1e10] } },
        f16: { shape: [2, 2], data: new Float32Array([1, -0.5, 65504, 2 ** -24]), dtype: 'F16', expect: { ctor: Float32Array, values: [1, -0.5, 65504, 2 ** -24] } },
        bf16: { shape: [3], data: new Float32Array([1, -3.140625, 2 ** 100]), dtype: 'BF16', expect: { ctor: Float32Array, values: [1, -3.140625, 2 ** 100] } },
        i64: { shape: [3], data: new Int32Array([-1, 2 ** 31 - 1, -(2 ** 31)]), dtype: 'I64', expect: { ctor: Int32Array, values: [-1, 2 ** 31 - 1, -(2 ** 31)] } },
        i64big: { shape: [2], data: new BigInt64Array([-5n, 6n]), expect: { ctor: Int32Array, values: [-5, 6] } },
        i32: { shape: [1, 2], data: new Int32Array([-7, 8]), expect: { ctor: Int32Array, values: [-7, 8] } },
        i16: { shape: [2], data: new Int16Array([-32768, 32767]), expect: { ctor: Int32Array, values: [-32768, 32767] } },
        i8: { shape: [2], data: new Int8Array([-128, 127]), expect: { ctor: Int32Array, values: [-128, 127] } },
        u16: { shape: [1], data: new Uint16Array([65535]), expect: { ctor: Int32Array, values: [65535] } },
        u32: { shape: [1], data: new Uint32Array([2 ** 31 - 1]), expect: { ctor: Int32Array, values: [2 ** 31 - 1] } },
        u8: { shape: [4], data: new Uint8Array([0, 1, 128, 255]), expect: { ctor: Uint8Array, values: [0, 1, 128, 255] } },
        bool: { shape: [2], data: new Uint8Array([1, 0]), dtype: 'BOOL', expect: { ctor: Uint8Array, values: [1, 0] } },
        scalar: { shape: [], data: new Float32Array([3.5]), expect: { ctor: Float32Array, values: [3.5] } },
        empty: { shape: [0, 4], data: new Float32Array(0), expect: { ctor: Float32Array, values: [] } },
        empty2: { shape: [3, 0], data: new Int32Array(0), dtype: 'I64', expect: { ctor: Int32Array, values: [] } },
      };
      const expectedDtype: Record<string, string> = {
        f32: 'F32', f64: 'F64', f16: 'F16', bf16: 'BF16', i64: 'I64', i64big: 'I64', i32: 'I32', i16: 'I16', i8: 'I8',
        u16: 'U16', u32: 'U32', u8: 'U8', bool: 'BOOL', scalar: 'F32', empty: 'F32', empty2: 'I64',
      };
      const file = path.join(dir, 'all.safetensors');
      writeSafetensors(file, inputs, { format: 'pt', note: 'ünïcode' });
      const st = readSafetensors(file);
      assert.deepEqual(st.metadata, { format: 'pt', note: 'ünïcode' });
      assert.deepEqual([...st.tensors.keys()].sort(), Object.keys(inputs).sort());
      for (const [name, input] of Object.entries(inputs)) {
        const t = st.tensors.get(name)!.read();
        assert.equal(t.dtype, expectedDtype[name], `${name} dtype`);
        assert.deepEqual(t.shape, [...input.shape], `${name} shape`);
        assert.equal(t.data.constructor, input.expect.ctor, `${name} array type`);
        assertSameValues(t.data, input.expect.values);
      }
      // Same bytes from memory as from the file.
      const fromMemory = parseSafetensors(fs.readFileSync(file));
      assert.deepEqual([...fromMemory.tensors.get('bf16')!.bytes()], [...st.tensors.get('bf16')!.bytes()]);
    });

    it('writes a read tensor back to identical bytes (F16, BF16, I64 decoded and re-encoded)', () => {
      const original = serializeSafetensors({
        h: { shape: [3], data: new Float32Array([0.1, -7, 1e-6]), dtype: 'F16' },
        b: { shape: [2], data: new Float32Array([0.1, -7]), dtype: 'BF16' },
        n: { shape: [2], data: new Int32Array([-3, 4]), dtype: 'I64' },
      });
      const parsed = parseSafetensors(original);
      const again = serializeSafetensors(Object.fromEntries([...parsed.tensors].map(([k, v]) => [k, v.read()])));
      assert.deepEqual(Buffer.from(again), Buffer.from(original));
    });

    it('reads back a tensor as a copy: changing it does not change the next read', () => {
      const st = parseSafetensors(serializeSafetensors({ x: { shape: [2], data: new Float32Array([1, 2]) } }));
      const first = st.tensors.get('x')!.read();
      first.data[0] = 99;
      assert.equal(st.tensors.get('x')!.read().data[0], 1);
    });
  });

  describe('layout', () => {
    it('matches a hand-written byte layout: u64 length, compact JSON, space padding, HF tensor order', () => {
      const bytes = serializeSafetensors(
        {
          b: { shape: [2], data: new Float32Array([1, -2]) },
          a: { shape: [3], data: new Uint8Array([1, 2, 3]) },
          c: { shape: [1], data: new Int32Array([-1]), dtype: 'I64' },
        },
        { format: 'pt' },
      );
      // HF's writer: __metadata__ first, then tensors by descending dtype alignment (I64, F32, U8), then name.
      const json =
        '{"__metadata__":{"format":"pt"},' +
        '"c":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},' +
        '"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},' +
        '"a":{"dtype":"U8","shape":[3],"data_offsets":[16,19]}}';
      const expected = [
        ...[200, 0, 0, 0, 0, 0, 0, 0], // 193 bytes of JSON + 7 spaces = 200
        ...Buffer.from(json + '       ', 'ascii'),
        ...[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], // c: I64 -1
        ...[0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0], // b: F32 1.0, -2.0
        ...[1, 2, 3], // a: U8
      ];
      assert.deepEqual([...bytes], expected);
    });

    it('writes an empty file as HF does (the Rust test vector)', () => {
      assert.deepEqual([...serializeSafetensors({})], [8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32]);
      assert.equal(parseSafetensors(serializeSafetensors({})).tensors.size, 0);
    });

    it('pads the header with spaces to a multiple of 8 and aligns each tensor to its element size', () => {
      for (let len = 1; len <= 9; len++) {
        const bytes = serializeSafetensors({
          ['n'.repeat(len)]: { shape: [1], data: new Uint8Array([7]) },
          d: { shape: [1], data: new Float64Array([2]) },
          h: { shape: [3], data: new Float32Array(3), dtype: 'F16' },
          f: { shape: [1], data: new Float32Array([1]) },
        });
        const n = Number(Buffer.from(bytes).readBigUInt64LE(0));
        assert.equal(n % 8, 0, `header length ${n} for name length ${len}`);
        const header = Buffer.from(bytes.subarray(8, 8 + n)).toString('utf8');
        const jsonEnd = header.lastIndexOf('}') + 1;
        assert.match(header.slice(jsonEnd), /^ {0,7}$/);
        const parsed = JSON.parse(header) as Record<string, { dtype: string; data_offsets: [number, number] }>;
        const sizes: Record<string, number> = { U8: 1, F16: 2, F32: 4, F64: 8 };
        for (const info of Object.values(parsed)) assert.equal(info.data_offsets[0] % sizes[info.dtype], 0);
      }
    });

    it('orders names by UTF-8 bytes like Rust, and keeps integer-like names in that order in the JSON', () => {
      const one = (v: number): TensorInput => ({ shape: [1], data: new Float32Array([v]) });
      const bytes = serializeSafetensors({ a: one(1), '9': one(2), '10': one(3), '\u{1F600}': one(4), '\uFF5E': one(5) });
      const n = Number(Buffer.from(bytes).readBigUInt64LE(0));
      const header = Buffer.from(bytes.subarray(8, 8 + n)).toString('utf8');
      const order = [...header.matchAll(/"([^"]+)":\{"dtype"/g)].map((m) => m[1]);
      // U+FF5E is EF BD 9E in UTF-8, U+1F600 is F0 9F 98 80: byte order puts U+FF5E first (UTF-16 order would not).
      assert.deepEqual(order, ['10', '9', 'a', '\uFF5E', '\u{1F600}']);
      assert.deepEqual([...parseSafetensors(bytes).tensors.keys()], order);
      assert.deepEqual(Array.from(parseSafetensors(bytes).tensors.get('10')!.read().data), [3]);
    });
  });

  describe('half-precision and 8-bit floats', () => {
    it('decodes F16 bit patterns to the hand-computed values', () => {
      const bits = [0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001, 0x03ff, 0x0400, 0x7c00, 0xfc00, 0x7e00, 0x8000, 0x3555];
      const t = only(craft({ x: { dtype: 'F16', shape: [bits.length], data_offsets: [0, bits.length * 2] } }, u16le(bits)));
      assert.ok(t.data instanceof Float32Array);
      assertSameValues(t.data, [
        1, -2, 0.5, 65504,
        5.960464477539063e-8, // smallest subnormal, 2^-24
        6.097555160522461e-5, // largest subnormal, 1023 * 2^-24
        6.103515625e-5, // smallest normal, 2^-14
        Infinity, -Infinity, NaN, -0,
        0.333251953125, // 0x3555 = (1 + 341/1024) / 4
      ]);
    });

    it('decodes BF16 bit patterns to the hand-computed values', () => {
      const bits = [0x3f80, 0xc049, 0x3f00, 0x7f80, 0xff80, 0x7fc0, 0x0001, 0x7f7f, 0x8000, 0x4049];
      const t = only(craft({ x: { dtype: 'BF16', shape: [bits.length], data_offsets: [0, bits.length * 2] } }, u16le(bits)));
      assertSameValues(t.data, [
        1, -3.140625, 0.5, Infinity, -Infinity, NaN,
        9.183549615799121e-41, // smallest subnormal, 2^-133
        3.3895313892515355e38, // largest finite, (2 - 2^-7) * 2^127
        -0, 3.140625,
      ]);
    });

    it('encodes F16 with round-to-nearest-even, overflow to infinity and subnormals', () => {
      const values = [1, 65504, 65519, 65520, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 2 ** -25, 3 * 2 ** -25, 2 ** -24 * 1.5, 1e-10, -0, NaN, -Infinity, 2 ** -14];
      const bytes = serializeSafetensors({ x: { shape: [values.length], data: new Float32Array(values), dtype: 'F16' } });
      const words = u16words(parseSafetensors(bytes).tensors.get('x')!.bytes());
      assert.deepEqual(words.slice(0, 11).concat(words.slice(12)), [
        0x3c00, 0x7bff, 0x7bff, 0x7c00, // 65519 rounds down, 65520 (halfway to 2^16) rounds to infinity
        0x3c00, 0x3c02, // ties go to the even mantissa
        0x0000, 0x0002, 0x0002, 0x0000, 0x8000, // subnormal ties to even; too small → 0; -0 kept
        0xfc00, 0x0400,
      ]);
      assert.equal(words[11] & 0x7c00, 0x7c00, 'NaN exponent');
      assert.notEqual(words[11] & 0x03ff, 0, 'NaN mantissa');
    });

    it('encodes BF16 with round-to-nearest-even, overflow to infinity, NaN kept', () => {
      const values = [1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, Math.PI, -3.140625, 3.4e38, NaN, -0];
      const bytes = serializeSafetensors({ x: { shape: [values.length], data: new Float64Array(values), dtype: 'BF16' } });
      const words = u16words(parseSafetensors(bytes).tensors.get('x')!.bytes());
      assert.deepEqual(words, [0x3f80, 0x3f80, 0x3f82, 0x4049, 0xc049, 0x7f80, 0x7fc0, 0x8000]);
    });

    it('decodes F8_E5M2 and F8_E4M3 (fn) bytes', () => {
      const e5 = only(craft({ x: { dtype: 'F8_E5M2', shape: [4], data_offsets: [0, 4] } }, new Uint8Array([0x3c, 0xc0, 0x7c, 0x01]))); 
      assertSameValues(e5.data, [1, -2, Infinity, 2 ** -16]);
      const e4 = only(craft({ x: { dtype: 'F8_E4M3', shape: [5], data_offsets: [0, 5] } }, new Uint8Array([0x38, 0x7e, 0x7f, 0x01, 0xb8])));
      assertSameValues(e4.data, [1, 448, NaN, 2 ** -9, -1]);
    });
  });

  describe('integers', () => {
    it('decodes I64/U64/U32 within int32 and rejects larger values naming tensor, element and value', () => {
      const i64 = Buffer.alloc(24);
      i64.writeBigInt64LE(-2n, 0);
      i64.writeBigInt64LE(2n ** 31n - 1n, 8);
      i64.writeBigInt64LE(2n ** 31n, 16);
      const header = (dtype: string, n: number, size: number): unknown => ({ ids: { dtype, shape: [n], data_offsets: [0, n * size] } });
      const ok = parseSafetensors(craft(header('I64', 2, 8), i64.subarray(0, 16)), SRC).tensors.get('ids')!.read();
      assertSameValues(ok.data, [-2, 2 ** 31 - 1]);
      const st = parseSafetensors(craft(header('I64', 3, 8), i64), SRC);
      assert.equal(
        thrown(() => st.tensors.get('ids')!.read()),
        `${SRC}: tensor "ids" (I64) element 2 is 2147483648, outside the int32 range integers are decoded to`,
      );
      const u64 = Buffer.alloc(8);
      u64.writeBigUInt64LE(2n ** 64n - 1n);
      assert.match(
        thrown(() => parseSafetensors(craft(header('U64', 1, 8), u64), SRC).tensors.get('ids')!.read()),
        /^bad\.safetensors: tensor "ids" \(U64\) element 0 is 18446744073709551615, outside the int32 range/,
      );
      const u32 = Buffer.alloc(4);
      u32.writeUInt32LE(2 ** 32 - 1);
      assert.match(
        thrown(() => parseSafetensors(craft(header('U32', 1, 4), u32), SRC).tensors.get('ids')!.read()),
        /^bad\.safetensors: tensor "ids" \(U32\) element 0 is 4294967295/,
      );
    });

    it('decodes lazily: a bad tensor does not stop reading the others', () => {
      const data = Buffer.alloc(12);
      data.writeBigInt64LE(2n ** 40n, 0);
      data.writeFloatLE(0.25, 8);
      const st = parseSafetensors(
        craft({ big: { dtype: 'I64', shape: [1], data_offsets: [0, 8] }, ok: { dtype: 'F32', shape: [], data_offsets: [8, 12] } }, data),
      );
      assertSameValues(st.tensors.get('ok')!.read().data, [0.25]);
      assert.throws(() => st.tensors.get('big')!.read(), /element 0 is 1099511627776/);
    });
  });

  describe('header errors', () => {
    it('file shorter than 8 bytes', () => {
      assert.equal(parseError(new Uint8Array(3)), `${SRC}: file is only 3 bytes; a safetensors file starts with an 8-byte header length`);
      const file = path.join(dir, 'tiny.safetensors');
      fs.writeFileSync(file, Buffer.from([1, 2]));
      assert.equal(thrown(() => readSafetensors(file)), `${file}: file is only 2 bytes; a safetensors file starts with an 8-byte header length`);
    });

    it('header length over 100 MB', () => {
      const bytes = Buffer.alloc(16);
      bytes.writeBigUInt64LE(100_000_001n);
      assert.equal(parseError(bytes), `${SRC}: header length 100000001 exceeds the 100000000-byte limit (corrupt or not a safetensors file)`);
      bytes.writeBigUInt64LE(2n ** 64n - 1n);
      assert.match(parseError(bytes), /^bad\.safetensors: header length 18446744073709551615 exceeds the 100000000-byte limit/);
    });

    it('header length larger than the rest of the file (the 100 MB limit itself is allowed)', () => {
      const bytes = Buffer.alloc(28);
      bytes.writeBigUInt64LE(50n);
      assert.equal(parseError(bytes), `${SRC}: header length 50 is larger than the 20 bytes that follow it (truncated file?)`);
      bytes.writeBigUInt64LE(100_000_000n);
      assert.equal(parseError(bytes), `${SRC}: header length 100000000 is larger than the 20 bytes that follow it (truncated file?)`);
    });

    it('header not valid UTF-8 or JSON', () => {
      assert.equal(parseError(craft(Buffer.from([0x7b, 0xff, 0x7d]).toString('latin1'))), `${SRC}: header is not valid JSON (${thrown(() => JSON.parse('{\u00ff}'))})`);
      const invalidUtf8 = Buffer.concat([Buffer.from([3, 0, 0, 0, 0, 0, 0, 0]), Buffer.from([0x7b, 0xff, 0x7d])]);
      assert.equal(parseError(invalidUtf8), `${SRC}: header is not valid UTF-8`);
      assert.match(parseError(craft('{"x": ')), /^bad\.safetensors: header is not valid JSON \(.+\)$/);
    });

    it('header not a JSON object', () => {
      assert.equal(parseError(craft('[1,2]')), `${SRC}: header must be a JSON object, got an array`);
      assert.equal(parseError(craft('"hi"')), `${SRC}: header must be a JSON object, got a string`);
      assert.equal(parseError(craft('null')), `${SRC}: header must be a JSON object, got null`);
    });

    it('tensor entry missing dtype, shape or data_offsets', () => {
      const full = { dtype: 'F32', shape: [1], data_offsets: [0, 4] };
      for (const key of ['dtype', 'shape', 'data_offsets'] as const) {
        const entry: Record<string, unknown> = { ...full };
        delete entry[key];
        assert.equal(parseError(craft({ w: entry }, 4)), `${SRC}: tensor "w" is missing "${key}"`);
      }
      assert.equal(parseError(craft({ w: 'F32' }, 4)), `${SRC}: tensor "w" must be an object with dtype, shape and data_offsets, got a string`);
    });

    it('tensor entry with wrong types', () => {
      const err = (entry: unknown): string => parseError(craft({ w: entry }, 4));
      assert.equal(err({ dtype: 5, shape: [1], data_offsets: [0, 4] }), `${SRC}: tensor "w" has a "dtype" that is a number, not a string`);
      assert.equal(err({ dtype: 'F32', shape: '1', data_offsets: [0, 4] }), `${SRC}: tensor "w" has "shape" "1"; expected an array of non-negative integers`);
      assert.equal(err({ dtype: 'F32', shape: [-1], data_offsets: [0, 4] }), `${SRC}: tensor "w" has "shape" [-1]; expected an array of non-negative integers`);
      assert.equal(err({ dtype: 'F32', shape: [1.5], data_offsets: [0, 4] }), `${SRC}: tensor "w" has "shape" [1.5]; expected an array of non-negative integers`);
      assert.equal(err({ dtype: 'F32', shape: [1], data_offsets: [4] }), `${SRC}: tensor "w" has "data_offsets" [4]; expected [begin, end] of non-negative integers`);
      assert.equal(err({ dtype: 'F32', shape: [1], data_offsets: ['0', '4'] }), `${SRC}: tensor "w" has "data_offsets" ["0","4"]; expected [begin, end] of non-negative integers`);
      assert.equal(err({ dtype: 'F32', shape: [0], data_offsets: [4, 0] }), `${SRC}: tensor "w" has data_offsets [4,0] that end before they begin`);
    });

    it('unknown dtype names tensor and dtype', () => {
      assert.equal(parseError(craft({ w: { dtype: 'F128', shape: [1], data_offsets: [0, 16] } }, 16)), `${SRC}: tensor "w" has unknown dtype "F128"`);
      // Names are case-sensitive in the format: "f32" is not F32.
      assert.equal(parseError(craft({ w: { dtype: 'f32', shape: [1], data_offsets: [0, 4] } }, 4)), `${SRC}: tensor "w" has unknown dtype "f32"`);
    });

    it('byte length not matching shape × dtype size', () => {
      assert.equal(
        parseError(craft({ w: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 20] } }, 20)),
        `${SRC}: tensor "w" has shape [2,3] and dtype F32, which need 24 bytes, but its data_offsets [0,20] span 20 bytes`,
      );
      assert.equal(
        parseError(craft({ s: { dtype: 'BF16', shape: [], data_offsets: [0, 4] } }, 4)),
        `${SRC}: tensor "s" has shape [] and dtype BF16, which need 2 bytes, but its data_offsets [0,4] span 4 bytes`,
      );
    });

    it('offsets past the end: names the tensor and the missing byte count', () => {
      const header = {
        a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
        w: { dtype: 'F32', shape: [4], data_offsets: [8, 24] },
      };
      assert.equal(
        parseError(craft(header, 10)),
        `${SRC}: tensor "w" needs bytes [8,24) of the data section, which has only 10 bytes: 14 bytes missing (truncated file?)`,
      );
      // A real file cut short.
      const file = path.join(dir, 'cut.safetensors');
      writeSafetensors(file, { a: { shape: [2], data: new Float32Array(2) }, w: { shape: [4], data: new Float32Array(4) } });
      fs.truncateSync(file, fs.statSync(file).size - 5);
      assert.match(thrown(() => readSafetensors(file)), new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: tensor "w" needs bytes \\[8,24\\) of the data section, which has only 19 bytes: 5 bytes missing`));
    });

    it('overlapping offsets name both tensors', () => {
      const header = {
        a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] },
        b: { dtype: 'F32', shape: [4], data_offsets: [8, 24] },
      };
      assert.equal(parseError(craft(header, 24)), `${SRC}: tensors "a" [0,16) and "b" [8,24) overlap`);
      const same = { a: { dtype: 'U8', shape: [4], data_offsets: [0, 4] }, b: { dtype: 'I32', shape: [], data_offsets: [0, 4] } };
      assert.equal(parseError(craft(same, 4)), `${SRC}: tensors "a" [0,4) and "b" [0,4) overlap`);
    });

    it('holes between tensors, before the first and after the last are rejected, naming the gap', () => {
      const gap = {
        a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
        b: { dtype: 'F32', shape: [2], data_offsets: [16, 24] },
      };
      assert.equal(
        parseError(craft(gap, 24)),
        `${SRC}: 8 unused bytes between tensor "a" (ends at 8) and tensor "b" (starts at 16); tensor data must be contiguous`,
      );
      assert.equal(
        parseError(craft({ b: { dtype: 'U8', shape: [2], data_offsets: [4, 6] } }, 6)),
        `${SRC}: 4 unused bytes at the start of the data section, before tensor "b" (starts at 4); tensor data must be contiguous`,
      );
      assert.equal(
        parseError(craft({ a: { dtype: 'U8', shape: [2], data_offsets: [0, 2] } }, 5)),
        `${SRC}: 3 unused bytes in the 5-byte data section after the last tensor "a" (ends at 2)`,
      );
      assert.equal(parseError(craft({}, 2)), `${SRC}: 2 unused bytes in the 2-byte data section but the header lists no tensors`);
    });

    it('__metadata__ must map strings to strings (null means none)', () => {
      assert.equal(
        parseError(craft({ __metadata__: { format: 'pt', epoch: 3 } })),
        `${SRC}: "__metadata__" must map strings to strings, but "epoch" is a number`,
      );
      assert.equal(parseError(craft({ __metadata__: ['pt'] })), `${SRC}: "__metadata__" must be an object of strings, got an array`);
      assert.deepEqual(parseSafetensors(craft({ __metadata__: null })).metadata, {});
      assert.deepEqual(parseSafetensors(craft({ __metadata__: { a: 'b' } })).metadata, { a: 'b' });
      const proto = parseSafetensors(craft('{"__metadata__":{"__proto__":"x"}}')).metadata;
      assert.deepEqual(Object.entries(proto), [['__proto__', 'x']]);
      assert.equal(Object.getPrototypeOf(proto), Object.prototype);
    });

    it('accepts headers in any tensor order with zero-size tensors anywhere', () => {
      const data = Buffer.alloc(8);
      data.writeFloatLE(1, 0);
      data.writeFloatLE(2, 4);
      const st = parseSafetensors(
        craft(
          {
            second: { dtype: 'F32', shape: [1], data_offsets: [4, 8] },
            nothing: { dtype: 'F32', shape: [0, 3], data_offsets: [4, 4] },
            first: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
          },
          data,
        ),
      );
      assert.deepEqual([...st.tensors.keys()], ['first', 'nothing', 'second']);
      assertSameValues(st.tensors.get('second')!.read().data, [2]);
      assert.deepEqual(st.tensors.get('nothing')!.read().shape, [0, 3]);
    });
  });

  describe('write errors', () => {
    it('data length not matching the shape names the tensor', () => {
      assert.equal(
        thrown(() => serializeSafetensors({ 'h.0.w': { shape: [2, 3], data: new Float32Array(5) } })),
        'serializeSafetensors: tensor "h.0.w" has shape [2,3] (6 elements) but 5 data values',
      );
      const file = path.join(dir, 'x.safetensors');
      assert.equal(
        thrown(() => writeSafetensors(file, { w: { shape: [4], data: new Float32Array(3) } })),
        `${file}: tensor "w" has shape [4] (4 elements) but 3 data values`,
      );
      assert.deepEqual(fs.readdirSync(dir), []);
    });

    it('rejects values outside the dtype, mismatched array kinds, bad shapes and the reserved name', () => {
      assert.equal(
        thrown(() => serializeSafetensors({ t: { shape: [2], data: new Int32Array([1, 200]), dtype: 'I8' } })),
        'serializeSafetensors: tensor "t" element 1 is 200, outside the range of I8 [-128, 127]',
      );
      assert.match(thrown(() => serializeSafetensors({ t: { shape: [1], data: new Uint8Array([2]), dtype: 'BOOL' } })), /element 0 is 2, outside the range of BOOL \[0, 1\]/);
      assert.match(thrown(() => serializeSafetensors({ t: { shape: [1], data: new Int32Array([-1]), dtype: 'U64' } })), /element 0 is -1, outside the range of U64/);
      assert.equal(
        thrown(() => serializeSafetensors({ t: { shape: [1], data: new Int32Array([1]), dtype: 'F32' } })),
        'serializeSafetensors: tensor "t": dtype F32 needs a Float32Array or Float64Array, got Int32Array',
      );
      assert.equal(
        thrown(() => serializeSafetensors({ t: { shape: [1], data: new Float32Array([1]), dtype: 'I32' } })),
        'serializeSafetensors: tensor "t": dtype I32 needs an integer typed array, got Float32Array',
      );
      assert.match(thrown(() => serializeSafetensors({ t: { shape: [-2], data: new Float32Array(0) } })), /tensor "t" has shape \[-2\]/);
      assert.match(thrown(() => serializeSafetensors({ __metadata__: { shape: [0], data: new Float32Array(0) } })), /"__metadata__" is reserved/);
      assert.match(thrown(() => serializeSafetensors({ t: { shape: [1], data: new Uint8Array(1), dtype: 'F8_E4M3' } })), /writing F8_E4M3 is not supported/);
    });
  });

  describe('files', () => {
    it('writeSafetensors is atomic: replaces the file and leaves no temp files', () => {
      const file = path.join(dir, 'model.safetensors');
      writeSafetensors(file, { w: { shape: [1], data: new Float32Array([1]) } });
      writeSafetensors(file, { w: { shape: [1], data: new Float32Array([2]) } });
      assert.deepEqual(fs.readdirSync(dir), ['model.safetensors']);
      assertSameValues(readSafetensors(file).tensors.get('w')!.read().data, [2]);
    });

    it('a failed write leaves the existing file intact', () => {
      const file = path.join(dir, 'model.safetensors');
      writeSafetensors(file, { w: { shape: [1], data: new Float32Array([1]) } });
      const before = fs.readFileSync(file);
      assert.throws(() => writeSafetensors(file, { w: { shape: [1], data: new Int32Array([300]), dtype: 'U8' } }), /outside the range of U8/);
      assert.deepEqual(fs.readFileSync(file), before);
      assert.deepEqual(fs.readdirSync(dir), ['model.safetensors']);
    });

    it('readSafetensors reads tensors on demand and refuses a file changed since its header was read', () => {
      const file = path.join(dir, 'm.safetensors');
      writeSafetensors(file, { a: { shape: [2], data: new Float32Array([1, 2]) }, b: { shape: [1], data: new Float32Array([3]) } });
      const st = readSafetensors(file);
      assert.equal(st.dataStart, 8 + Number(fs.readFileSync(file).readBigUInt64LE(0)));
      assertSameValues(st.tensors.get('b')!.read().data, [3]);
      writeSafetensors(file, { a: { shape: [2], data: new Float32Array([5, 6]) }, b: { shape: [2], data: new Float32Array([7, 8]) } });
      assert.equal(thrown(() => st.tensors.get('a')!.read()), `${file}: file changed since its header was read; read it again`);
    });

    it('readSafetensors names the file when it cannot be opened', () => {
      const file = path.join(dir, 'nope.safetensors');
      assert.match(thrown(() => readSafetensors(file)), new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: cannot open: ENOENT`));
    });
  });

  describe('sharded', () => {
    function writeShards(weightMap: Record<string, string>): void {
      writeSafetensors(path.join(dir, 'model-00001-of-00002.safetensors'), {
        'model.embed_tokens.weight': { shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) },
        'model.norm.weight': { shape: [2], data: new Float32Array([0.5, 0.25]), dtype: 'BF16' },
      }, { format: 'pt' });
      writeSafetensors(path.join(dir, 'model-00002-of-00002.safetensors'), {
        'lm_head.weight': { shape: [1, 2], data: new Float32Array([-1, -2]) },
      }, { format: 'pt' });
      fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 28 }, weight_map: weightMap }));
    }

    it('follows model.safetensors.index.json across two files', () => {
      writeShards({
        'model.embed_tokens.weight': 'model-00001-of-00002.safetensors',
        'lm_head.weight': 'model-00002-of-00002.safetensors',
        'model.norm.weight': 'model-00001-of-00002.safetensors',
      });
      const ck = readShardedSafetensors(dir);
      assert.equal(ck.indexFile, path.join(dir, 'model.safetensors.index.json'));
      assert.deepEqual(ck.files.map((f) => path.basename(f.source)), ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
      assert.deepEqual([...ck.tensors.keys()].sort(), ['lm_head.weight', 'model.embed_tokens.weight', 'model.norm.weight']);
      assertSameValues(ck.tensors.get('lm_head.weight')!.read().data, [-1, -2]);
      assertSameValues(ck.tensors.get('model.embed_tokens.weight')!.read().data, [1, 2, 3, 4]);
      assertSameValues(ck.tensors.get('model.norm.weight')!.read().data, [0.5, 0.25]);
      assert.deepEqual(ck.files[1].metadata, { format: 'pt' });
    });

    it('accepts shard paths in a subfolder', () => {
      fs.mkdirSync(path.join(dir, 'shards'));
      writeSafetensors(path.join(dir, 'shards', 'a.safetensors'), { w: { shape: [1], data: new Float32Array([4]) } });
      fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { w: 'shards/a.safetensors' } }));
      assertSameValues(readShardedSafetensors(dir).tensors.get('w')!.read().data, [4]);
    });

    it('falls back to model.safetensors, and names the folder when neither file exists', () => {
      assert.equal(thrown(() => readShardedSafetensors(dir)), `${dir}: no model.safetensors.index.json or model.safetensors in this folder`);
      writeSafetensors(path.join(dir, 'model.safetensors'), { 'wte.weight': { shape: [1], data: new Float32Array([9]) } });
      const ck = readShardedSafetensors(dir);
      assert.equal(ck.indexFile, undefined);
      assertSameValues(ck.tensors.get('wte.weight')!.read().data, [9]);
    });

    it('rejects an index naming a tensor its shard lacks, a bad weight_map, or a path outside the folder', () => {
      const index = path.join(dir, 'model.safetensors.index.json');
      writeShards({ 'lm_head.weight': 'model-00001-of-00002.safetensors' });
      assert.equal(
        thrown(() => readShardedSafetensors(dir)),
        `${index}: weight_map maps "lm_head.weight" to "model-00001-of-00002.safetensors", which has no tensor "lm_head.weight"`,
      );
      fs.writeFileSync(index, JSON.stringify({ weight_map: { x: '../elsewhere.safetensors' } }));
      assert.equal(thrown(() => readShardedSafetensors(dir)), `${index}: weight_map entry "x" points to "../elsewhere.safetensors", outside the checkpoint folder`);
      fs.writeFileSync(index, JSON.stringify({ weights: {} }));
      assert.equal(thrown(() => readShardedSafetensors(dir)), `${index}: "weight_map" must be an object mapping tensor names to file names`);
      fs.writeFileSync(index, '{not json');
      assert.match(thrown(() => readShardedSafetensors(dir)), /model\.safetensors\.index\.json: cannot read index: /);
    });
  });
});
