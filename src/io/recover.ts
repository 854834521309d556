/**
 * Recovery after a crashed save. Every load and save of a folder calls {@link recoverFolder} first: a
 * folder whose replacement was interrupted is put back (the complete new one, else the previous one), and
 * the temps of writers that died are removed. A live writer's temps are never touched (see `writers.ts`).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fsyncFolder } from './atomic';
import { forgetAbandoned, parseTempName, TempName, writerState, WriterState } from './writers';

/** A temp file or folder found beside (or inside) a saved folder. */
export interface Leftover {
  path: string;
  temp: TempName;
  state: WriterState;
  isFolder: boolean;
  mtimeMs: number;
}

/** Age after which a temp of an older tunelab (no writer recorded in its name) counts as a dead writer's. */
export const LEGACY_STALE_MS = 60 * 60 * 1000;

/** The tunelab temps directly inside `folder` (none when it does not exist). */
export function leftoversIn(folder: string): Leftover[] {
  let names: string[];
  try {
    names = fs.readdirSync(folder);
  } catch {
    return [];
  }
  const out: Leftover[] = [];
  for (const name of names) {
    const temp = parseTempName(name);
    if (!temp) continue;
    const p = path.join(folder, name);
    let st: fs.Stats;
    try {
      st = fs.lstatSync(p);
    } catch {
      continue; // removed meanwhile (by its writer or another recovery)
    }
    let state = writerState(temp, p);
    // Older tunelab recorded no writer; its saves took seconds, so one untouched for an hour is dead.
    if (state === 'unknown' && temp.host === undefined && Date.now() - st.mtimeMs > LEGACY_STALE_MS) state = 'dead';
    out.push({ path: p, temp, state, isFolder: st.isDirectory(), mtimeMs: st.mtimeMs });
  }
  return out;
}

/** Bytes under `p` (a file or a folder), for reports. */
export function sizeOf(p: string): number {
  try {
    const st = fs.lstatSync(p);
    if (!st.isDirectory()) return st.size;
    return fs.readdirSync(p).reduce((sum, n) => sum + sizeOf(path.join(p, n)), 0);
  } catch {
    return 0;
  }
}

/** "13.2 MB", "840 B". */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} kB`;
  return `${(n / 1024 ** 2).toFixed(1)} MB`;
}

/** The leftover that should become its target when that is missing: a complete new save, else the previous one. */
export function replacement(group: Leftover[]): Leftover | undefined {
  const newest = (kind: 'new' | 'old', ok: (l: Leftover) => boolean) =>
    group.filter((l) => l.isFolder && l.temp.kind === kind && ok(l)).sort((a, b) => b.mtimeMs - a.mtimeMs)[0];
  // A `new` folder is only ever named so once written and flushed whole. Backups of older tunelab versions
  // (no writer recorded) are restored too: nothing else would bring the folder back.
  return newest('new', (l) => l.state === 'dead') ?? newest('old', (l) => l.state === 'dead' || l.temp.host === undefined);
}

/** Options of {@link recoverFolder}. */
export interface RecoverOptions {
  /** Where the one-line report of each repair goes (default: stderr). */
  log?: (line: string) => void;
}

/**
 * Repairs what crashed saves left beside `dir` (in its parent folder) and inside it:
 * - a folder whose replacement was cut between its two renames is missing, with its previous version
 *   moved aside: the complete new version is renamed in if there is one, else the previous one;
 * - temps (partial folders, complete but not installed ones, backups, files of `writeFileAtomic`)
 *   whose writer process is dead are removed.
 * Temps of live writers and of other hosts are left alone. Never throws: what cannot be repaired is
 * reported. Returns the report lines (one per repaired folder), which also go to `options.log`.
 *
 * @example
 * recoverFolder('runs/x/final'); // "tunelab: runs/x/final: restored from the previous save …" on stderr
 */
export function recoverFolder(dir: string, options: RecoverOptions = {}): string[] {
  const log = options.log ?? ((line: string) => process.stderr.write(line + '\n'));
  const target = path.resolve(dir);
  const parent = path.dirname(target);
  const groups = new Map<string, Leftover[]>();
  for (const l of leftoversIn(parent)) groups.set(l.temp.target, [...(groups.get(l.temp.target) ?? []), l]);
  const lines: string[] = [];
  for (const [name, group] of groups) {
    const dest = path.join(parent, name);
    const done: string[] = [];
    let installed: Leftover | undefined;
    if (!fs.existsSync(dest)) {
      const pick = replacement(group);
      if (pick) {
        const what = pick.temp.kind === 'new' ? 'installed the complete new save' : 'restored the previous save';
        const who = pick.temp.host !== undefined ? `writer pid ${pick.temp.pid} died` : 'an older tunelab crashed';
        try {
          fs.renameSync(pick.path, dest);
          fsyncFolder(parent);
          installed = pick;
          forgetAbandoned(pick.path);
          done.push(`${what} ${path.basename(pick.path)} (${who} while replacing it)`);
        } catch (e) {
          done.push(`could not restore it from ${path.basename(pick.path)}: ${(e as Error).message}`);
        }
      }
    }
    const stale = group.filter((l) => l !== installed && l.state === 'dead');
    const removed = removeAll(stale);
    if (removed.count > 0) done.push(`removed ${removed.count} stale temp${removed.count > 1 ? 's' : ''} of crashed saves (${formatBytes(removed.bytes)})`);
    if (done.length > 0) lines.push(`tunelab: ${dest}: ${done.join('; ')}`);
  }
  // Temp files of writeFileAtomic calls that wrote straight into the folder (adapters, tokenizers).
  const inside = removeAll(leftoversIn(target).filter((l) => !l.isFolder && l.state === 'dead'));
  if (inside.count > 0) lines.push(`tunelab: ${target}: removed ${inside.count} stale temp file${inside.count > 1 ? 's' : ''} of crashed writes (${formatBytes(inside.bytes)})`);
  for (const line of lines) log(line);
  return lines;
}

function removeAll(list: Leftover[]): { count: number; bytes: number } {
  let count = 0;
  let bytes = 0;
  for (const l of list) {
    const size = sizeOf(l.path);
    try {
      fs.rmSync(l.path, { recursive: true, force: true });
      forgetAbandoned(l.path);
      count++;
      bytes += size;
    } catch {
      // Reported by `tunelab doctor`; a leftover that cannot be removed does not stop a load or save.
    }
  }
  return { count, bytes };
}
