/**
 * Crash-safe file writes: readers see either the old file or the complete new one, never a partial file.
 *
 * The data goes to a temp file in the target's own folder (rename is only atomic within one file system),
 * is fsynced, then renamed over the target; the folder is fsynced afterwards so the rename itself survives
 * a power cut. Synchronous on purpose: checkpoints are written rarely and callers want "done" to mean durable.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tempName } from './writers';

/** An Error that keeps the `code` (ENOENT, EISDIR, ...) of the system error that caused it. */
export function wrapError(file: string, action: string, err: unknown): Error {
  const cause = err instanceof Error ? err : new Error(String(err));
  const wrapped = new Error(`${file}: ${action}: ${cause.message}`, { cause });
  const code = (cause as NodeJS.ErrnoException).code;
  if (code !== undefined) (wrapped as NodeJS.ErrnoException).code = code;
  return wrapped;
}

/** Best effort: makes a completed rename durable. Some platforms (Windows) cannot open or fsync folders. */
export function fsyncFolder(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // The new file is already in place; failing here would report an error for a write that succeeded.
  } finally {
    if (fd !== undefined) {
      try {
        fs.closeSync(fd);
      } catch {
        // Nothing useful to do: the descriptor is gone either way.
      }
    }
  }
}

/**
 * Writes `data` to `file` atomically: via a temp file `.<name>.tmp-<host>-<pid>-<random>` in the same folder
 * (see `writers.ts`: a later save removes it if this process dies),
 * fsynced and renamed over the target. An existing target keeps its permission bits. On any failure the
 * temp file is removed, the target is left as it was, and the error is rethrown naming `file`
 * (with the original error as `cause` and its `code`).
 *
 * @example
 * writeFileAtomic('runs/demo/step.txt', '300\n');
 * writeFileAtomic('runs/demo/weights.bin', new Uint8Array([1, 2, 3]));
 */
export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  const target = path.resolve(file);
  const dir = path.dirname(target);
  const tmp = path.join(dir, tempName(path.basename(target), 'tmp'));
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  let fd: number | undefined;
  let created = false;
  try {
    // 'wx': fail rather than share a temp file with another writer, however unlikely the name clash.
    fd = fs.openSync(tmp, 'wx', 0o666);
    created = true;
    const mode = existingFileMode(target);
    if (mode !== undefined) fs.fchmodSync(fd, mode);
    // writeSync may write fewer bytes than asked (large buffers, some file systems): loop until done.
    let written = 0;
    while (written < bytes.byteLength) {
      written += fs.writeSync(fd, bytes, written, bytes.byteLength - written);
    }
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(tmp, target);
    created = false;
  } catch (err) {
    if (fd !== undefined) {
      try {
        fs.closeSync(fd);
      } catch {
        // Already failing; the original error is the one worth reporting.
      }
    }
    if (created) {
      try {
        fs.unlinkSync(tmp);
      } catch {
        // Already failing; a leftover temp file is harmless (hidden, never read back).
      }
    }
    throw wrapError(file, 'atomic write failed', err);
  }
  fsyncFolder(dir);
}

/**
 * Flushes every file and folder under `dir` (and `dir` itself) to disk, so that a folder renamed into place
 * afterwards survives a power cut whole. Files written by {@link writeFileAtomic} are flushed already;
 * this also covers files written any other way. Throws naming the file when a file cannot be flushed.
 */
export function fsyncTree(dir: string): void {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) fsyncTree(p);
    else if (entry.isFile()) {
      let fd: number | undefined;
      try {
        fd = fs.openSync(p, 'r');
        fs.fsyncSync(fd);
      } catch (err) {
        throw wrapError(p, 'cannot flush to disk', err);
      } finally {
        if (fd !== undefined) fs.closeSync(fd);
      }
    }
  }
  fsyncFolder(dir);
}

/** Permission bits of an existing regular file, so a rewrite does not silently change them. */
function existingFileMode(file: string): number | undefined {
  try {
    const st = fs.statSync(file);
    return st.isFile() ? st.mode & 0o7777 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Writes `value` as 2-space-indented JSON with a trailing newline, atomically (see {@link writeFileAtomic}).
 * Throws naming `file` when `value` cannot be represented as JSON (undefined, a function, a BigInt, a cycle).
 *
 * @example
 * writeJsonAtomic('runs/demo/config.json', { steps: 300, lr: 3e-4 });
 */
export function writeJsonAtomic(file: string, value: unknown): void {
  let text: string | undefined;
  try {
    text = JSON.stringify(value, null, 2);
  } catch (err) {
    throw wrapError(file, 'value is not JSON-serializable', err);
  }
  // JSON.stringify returns undefined (not a string) for undefined, functions and symbols.
  if (text === undefined) throw new Error(`${file}: value is not JSON-serializable (got ${typeof value})`);
  writeFileAtomic(file, text + '\n');
}

/** Reads a JSON object from a file; errors name the file and say whether it was unreadable, not JSON or not an object. */
export function readJson(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: invalid JSON (${(e as Error).message})`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error(`${file}: not a JSON object`);
  return v as Record<string, unknown>;
}
