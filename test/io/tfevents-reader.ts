/**
 * An event-file reader for the tests, written from the formats' specs and sharing no code with
 * src/io/tfevents.ts: TFRecord framing (u64 LE length, masked CRC-32C of the length, data, masked CRC-32C
 * of the data), the protobuf wire format (varint, 64-bit, length-delimited and 32-bit fields), and
 * TensorBoard's Event (1 wall_time double, 2 step int64, 3 file_version string, 5 summary) / Summary
 * (1 repeated value) / Summary.Value (1 tag string, 2 simple_value float) field numbers.
 */
import * as fs from 'fs';

/** CRC-32C bit by bit (Castagnoli, reflected polynomial 0x82F63B78), no table. */
export function crc32cBitwise(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const b of bytes) {
    crc ^= b;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return (~crc) >>> 0;
}

/** TFRecord's mask: rotate right 15, add 0xa282ead8, modulo 2^32. */
export function mask(crc: number): number {
  const rotated = ((crc >>> 15) | (crc << 17)) >>> 0;
  return (rotated + 0xa282ead8) % 2 ** 32;
}

/** The data of every record; throws naming the byte offset of a bad length, CRC or truncation. */
export function readRecords(bytes: Uint8Array, name = 'records'): Uint8Array[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: Uint8Array[] = [];
  let at = 0;
  while (at < bytes.length) {
    if (at + 12 > bytes.length) throw new Error(`${name}@${at}: truncated record header`);
    const len = Number(view.getBigUint64(at, true));
    if (view.getUint32(at + 8, true) !== mask(crc32cBitwise(bytes.subarray(at, at + 8)))) throw new Error(`${name}@${at}: length CRC mismatch`);
    if (at + 12 + len + 4 > bytes.length) throw new Error(`${name}@${at}: truncated record data`);
    const data = bytes.subarray(at + 12, at + 12 + len);
    if (view.getUint32(at + 12 + len, true) !== mask(crc32cBitwise(data))) throw new Error(`${name}@${at}: data CRC mismatch`);
    out.push(data);
    at += 12 + len + 4;
  }
  return out;
}

type Field = { no: number; wire: number; varint?: bigint; bytes?: Uint8Array; fixed64?: DataView; fixed32?: DataView };

/** The fields of one protobuf message, in order. */
export function wireFields(buf: Uint8Array): Field[] {
  const fields: Field[] = [];
  let at = 0;
  const varint = (): bigint => {
    let v = 0n;
    for (let shift = 0n; ; shift += 7n) {
      if (at >= buf.length) throw new Error('truncated varint');
      const b = buf[at++];
      v |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
  };
  const take = (n: number) => {
    if (at + n > buf.length) throw new Error('truncated field');
    const s = buf.subarray(at, at + n);
    at += n;
    return s;
  };
  while (at < buf.length) {
    const key = Number(varint());
    const f: Field = { no: key >>> 3, wire: key & 7 };
    if (f.wire === 0) f.varint = varint();
    else if (f.wire === 1) f.fixed64 = new DataView(take(8).slice().buffer);
    else if (f.wire === 2) f.bytes = take(Number(varint()));
    else if (f.wire === 5) f.fixed32 = new DataView(take(4).slice().buffer);
    else throw new Error(`unsupported wire type ${f.wire} (field ${f.no})`);
    fields.push(f);
  }
  return fields;
}

/** A decoded Event. */
export interface DecodedEvent {
  wallTime: number;
  step: number;
  fileVersion?: string;
  /** Summary values: tag and simple_value (a float32, widened). */
  values: { tag: string; value: number }[];
}

const utf8 = new TextDecoder();

export function decodeEvent(buf: Uint8Array): DecodedEvent {
  const e: DecodedEvent = { wallTime: 0, step: 0, values: [] };
  for (const f of wireFields(buf)) {
    if (f.no === 1 && f.fixed64) e.wallTime = f.fixed64.getFloat64(0, true);
    else if (f.no === 2 && f.varint !== undefined) e.step = Number(BigInt.asIntN(64, f.varint));
    else if (f.no === 3 && f.bytes) e.fileVersion = utf8.decode(f.bytes);
    else if (f.no === 5 && f.bytes) {
      for (const v of wireFields(f.bytes)) {
        if (v.no !== 1 || !v.bytes) continue;
        let tag = '';
        let value = NaN;
        for (const x of wireFields(v.bytes)) {
          if (x.no === 1 && x.bytes) tag = utf8.decode(x.bytes);
          else if (x.no === 2 && x.fixed32) value = x.fixed32.getFloat32(0, true);
        }
        e.values.push({ tag, value });
      }
    }
  }
  return e;
}

/** Every event of an event file. */
export function readEventFile(file: string): DecodedEvent[] {
  return readRecords(new Uint8Array(fs.readFileSync(file)), file).map(decodeEvent);
}
