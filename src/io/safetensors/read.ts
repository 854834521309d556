/**
 * Reading safetensors from memory or from a file. Reading is lazy: the header is parsed and checked up front,
 * each tensor is decoded only when `read()` is called (for files, only its bytes are read from disk).
 */
import * as fs from 'node:fs';
import { SafeTensorEntry, SafetensorsFile, TensorInfo, fail } from './format';
import { parseHeader, readHeaderLength } from './header';
import { decode } from './decode';

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
