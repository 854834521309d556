/**
 * Who wrote a temp file or folder. Every temp that tunelab's saves create is named
 * `.<target>.<kind>-<host>-<pid>-<random>`, so a later save or load can tell a crashed writer's leftovers
 * (its process is gone) from a live writer's (left alone), without lock files inside the saved folder.
 *
 * - `tmp`: being written (a file of {@link writeFileAtomic}, or a folder being filled);
 * - `new`: a folder written completely and flushed, not yet renamed in;
 * - `old`: the previous folder, moved aside while the new one is renamed in.
 *
 * `host` is a hash of the host name: a pid says nothing about a process on another machine sharing the
 * folder (or another container), so such leftovers are never judged dead.
 */
import { createHash, randomBytes } from 'node:crypto';
import * as os from 'node:os';

/** The three stages of a temp (see the file comment). */
export type TempKind = 'tmp' | 'new' | 'old';

/** What a temp's name says about it. */
export interface TempName {
  /** Name of the file or folder it stands for (beside it, in the same parent). */
  target: string;
  kind: TempKind;
  /** Hash of the writer's host name, or undefined for names of older tunelab versions. */
  host?: string;
  pid?: number;
}

/** Whether a temp's writer can still be writing it. */
export type WriterState = 'alive' | 'dead' | 'unknown';

/** This machine's tag in temp names. */
export const HOST_TAG = createHash('sha256').update(os.hostname()).digest('hex').slice(0, 8);

const NAME = /^\.(.+)\.(tmp|new|old)-([0-9a-f]{8})-(\d+)-[0-9a-f]{12}$/;
// Older tunelab: folders from mkdtemp (`.final.tmp-AbC123`, `.final.tmp-AbC123.old`), files `.f.tmp-<pid>-<hex>`.
const LEGACY_FOLDER = /^\.(.+)\.tmp-[A-Za-z0-9]{6}(\.old)?$/;
const LEGACY_FILE = /^\.(.+)\.tmp-(\d+)-[0-9a-f]{12}$/;

/**
 * A fresh temp name for `target` (a base name) of this process.
 *
 * @example
 * tempName('final', 'tmp'); // '.final.tmp-1a2b3c4d-4242-0123456789ab'
 */
export function tempName(target: string, kind: TempKind): string {
  return `.${target}.${kind}-${HOST_TAG}-${process.pid}-${randomBytes(6).toString('hex')}`;
}

/** Parses a name made by {@link tempName} (or by older tunelab versions); undefined for anything else. */
export function parseTempName(name: string): TempName | undefined {
  const m = NAME.exec(name);
  if (m) return { target: m[1], kind: m[2] as TempKind, host: m[3], pid: Number(m[4]) };
  const legacy = LEGACY_FOLDER.exec(name);
  if (legacy) return { target: legacy[1], kind: legacy[2] ? 'old' : 'tmp' };
  const file = LEGACY_FILE.exec(name);
  if (file) return { target: file[1], kind: 'tmp', pid: Number(file[2]) };
  return undefined;
}

/**
 * Temps this process abandoned on purpose (a simulated crash, see `folder.ts`): the only temps of this
 * process's own pid that count as dead. Everything else of our pid may be in use by this process.
 */
const abandoned = new Set<string>();

/** Marks a temp path of this process as left behind by a simulated crash. */
export function markAbandoned(file: string): void {
  abandoned.add(file);
}

/**
 * Whether the writer of temp `file` (named as `t` says) may still be using it: `dead` only when its host is
 * this one and no process has its pid (or it is this process's own, abandoned, temp).
 */
export function writerState(t: TempName, file: string): WriterState {
  if (t.host === undefined || t.pid === undefined || t.host !== HOST_TAG) return 'unknown';
  if (t.pid === process.pid) return abandoned.has(file) ? 'dead' : 'alive';
  try {
    process.kill(t.pid, 0);
    return 'alive';
  } catch (e) {
    // EPERM: the process exists but belongs to another user.
    return (e as NodeJS.ErrnoException).code === 'ESRCH' ? 'dead' : 'alive';
  }
}

/** Forgets a path marked by {@link markAbandoned} once it is gone. */
export function forgetAbandoned(file: string): void {
  abandoned.delete(file);
}
