/**
 * TensorBoard event files (`events.out.tfevents.*`), the format TensorBoard, `tensorboard --logdir` and
 * `EventAccumulator` read. A file is a sequence of TFRecords, each framing one serialized `Event` proto:
 *
 *   u64 little-endian length · u32 masked CRC32C of those 8 bytes · data · u32 masked CRC32C of data
 *
 * where mask(c) = ((c >>> 15) | (c << 17)) + 0xa282ead8 (mod 2³²). The first record is the file-version
 * event `brain.Event:2`; each later one carries a `Summary` of scalar values.
 *
 * The message subset below follows TensorBoard's `event.proto` and `summary.proto` field numbers
 * (written here as protobufjs JSON, not copied): Event { double wall_time = 1; int64 step = 2;
 * oneof what { string file_version = 3; Summary summary = 5 } }, Summary { repeated Value value = 1 },
 * Summary.Value { string tag = 1; oneof value { float simple_value = 2 } }.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as protobuf from 'protobufjs';

const schema = protobuf.Root.fromJSON({
  nested: {
    tensorboard: {
      nested: {
        Event: {
          oneofs: { what: { oneof: ['fileVersion', 'summary'] } },
          fields: {
            wallTime: { type: 'double', id: 1 },
            step: { type: 'int64', id: 2 },
            fileVersion: { type: 'string', id: 3 },
            summary: { type: 'Summary', id: 5 },
          },
        },
        Summary: {
          fields: { value: { rule: 'repeated', type: 'Value', id: 1 } },
          nested: {
            Value: {
              oneofs: { value: { oneof: ['simpleValue'] } },
              fields: { tag: { type: 'string', id: 1 }, simpleValue: { type: 'float', id: 2 } },
            },
          },
        },
      },
    },
  },
});
const EventType = schema.lookupType('tensorboard.Event');

/** The version string of the first event of every file, as TensorFlow writes it. */
export const FILE_VERSION = 'brain.Event:2';

// CRC-32C (Castagnoli), reflected polynomial 0x82f63b78, as TFRecord uses.
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32C of `bytes` (crc32c("123456789") = 0xe3069283). */
export function crc32c(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** TFRecord's masked CRC: rotate right by 15 and add a constant, so CRCs of CRCs stay well mixed. */
export function maskedCrc32c(bytes: Uint8Array): number {
  const c = crc32c(bytes);
  return (((c >>> 15) | (c << 17)) + 0xa282ead8) >>> 0;
}

/** One TFRecord framing `data`. */
export function tfRecord(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(16 + data.length);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(data.length), true);
  view.setUint32(8, maskedCrc32c(out.subarray(0, 8)), true);
  out.set(data, 12);
  view.setUint32(12 + data.length, maskedCrc32c(data), true);
  return out;
}

/** A scalar of a run: `tag` at training step `step`, logged at `wallTime` (seconds since the epoch). */
export interface ScalarEvent {
  tag: string;
  step: number;
  /** Stored as float32, as TensorBoard's `simple_value`. */
  value: number;
  wallTime: number;
}

/** Serialized `Event` holding the file version. */
export function fileVersionEvent(wallTime: number): Uint8Array {
  return EventType.encode(EventType.fromObject({ wallTime, step: 0, fileVersion: FILE_VERSION })).finish();
}

/** Serialized `Event` with one `Summary` of scalars, all at the same step and time. */
export function scalarsEvent(step: number, wallTime: number, values: readonly { tag: string; value: number }[]): Uint8Array {
  if (!Number.isSafeInteger(step) || step < 0) throw new Error(`tfevents: step must be a non-negative integer (got ${step})`);
  for (const v of values) if (!v.tag) throw new Error(`tfevents: empty tag at step ${step}`);
  const summary = { value: values.map((v) => ({ tag: v.tag, simpleValue: v.value })) };
  return EventType.encode(EventType.fromObject({ wallTime, step, summary })).finish();
}

/** A whole event file: the file-version event at `wallTime`, then one event per scalar. */
export function eventFileBytes(scalars: readonly ScalarEvent[], wallTime: number): Uint8Array {
  const records = [tfRecord(fileVersionEvent(wallTime)), ...scalars.map((s) => tfRecord(scalarsEvent(s.step, s.wallTime, [s])))];
  const out = new Uint8Array(records.reduce((n, r) => n + r.length, 0));
  let at = 0;
  for (const r of records) {
    out.set(r, at);
    at += r.length;
  }
  return out;
}

/** `events.out.tfevents.<seconds>.<host>.<pid>.<n>`, the name `torch.utils.tensorboard` gives its files. */
export function eventFileName(wallTime: number, n = 0): string {
  return `events.out.tfevents.${String(Math.floor(wallTime)).padStart(10, '0')}.${os.hostname()}.${process.pid}.${n}`;
}

/**
 * Writes scalars to a new event file in `dir`, the way `torch.utils.tensorboard.SummaryWriter` does:
 * records are appended as they come, so TensorBoard shows a run while it trains, and a crash loses at most
 * the last record (readers stop at a truncated one).
 *
 * @example
 * const w = new SummaryWriter('runs/demo');
 * w.addScalar('train/loss', 2.31, 1);
 * w.close();
 */
export class SummaryWriter {
  /** The event file being written. */
  readonly file: string;
  private fd: number | undefined;

  constructor(readonly dir: string, wallTime = Date.now() / 1000) {
    fs.mkdirSync(dir, { recursive: true });
    let n = 0;
    while (fs.existsSync(path.join(dir, eventFileName(wallTime, n)))) n++;
    this.file = path.join(dir, eventFileName(wallTime, n));
    this.fd = fs.openSync(this.file, 'wx');
    this.append(fileVersionEvent(wallTime));
  }

  private append(event: Uint8Array): void {
    if (this.fd === undefined) throw new Error(`${this.file}: writer is closed`);
    const bytes = tfRecord(event);
    let written = 0;
    while (written < bytes.length) written += fs.writeSync(this.fd, bytes, written, bytes.length - written);
  }

  /** Appends one scalar. */
  addScalar(tag: string, value: number, step: number, wallTime = Date.now() / 1000): void {
    this.append(scalarsEvent(step, wallTime, [{ tag, value }]));
  }

  /** Appends several scalars of one step as one event (HF's TensorBoard callback writes one per tag; both read the same). */
  addScalars(step: number, values: Readonly<Record<string, number>>, wallTime = Date.now() / 1000): void {
    const list = Object.entries(values).map(([tag, value]) => ({ tag, value }));
    if (list.length) this.append(scalarsEvent(step, wallTime, list));
  }

  /** Makes what was written durable. */
  flush(): void {
    if (this.fd !== undefined) fs.fsyncSync(this.fd);
  }

  /** Flushes and closes the file (idempotent). */
  close(): void {
    if (this.fd === undefined) return;
    this.flush();
    fs.closeSync(this.fd);
    this.fd = undefined;
  }
}
