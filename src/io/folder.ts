/**
 * Crash-safe folder saves. A folder is built beside its final place and renamed in, so readers see the
 * previous folder or the complete new one, and a crash at any step is repaired by the next load or save
 * ({@link recoverFolder}). The steps, each a point where a crash can be injected ({@link SaveStep}):
 *
 * 1. `.<name>.tmp-…` is created (permissions from the umask) and filled;                      → `created`, `filled`
 * 2. every file and folder in it is flushed, then it is renamed `.<name>.new-…` (complete);  → `complete`
 * 3. an existing `<name>` is renamed `.<name>.old-…`;                                        → `moved-aside`
 * 4. `.<name>.new-…` is renamed `<name>` and the parent folder flushed;                      → `installed`
 * 5. `.<name>.old-…` is deleted.                                                             → `removing-old`
 *
 * A crash before 3 leaves the previous folder in place; between 3 and 4 the next load or save renames the
 * complete new folder in; after 4 the new folder is in place. Temps of the dead writer are removed then.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fsyncFolder, fsyncTree } from './atomic';
import { recoverFolder } from './recover';
import { markAbandoned, tempName } from './writers';

/** Points of the save protocol where a crash can be injected (see the file comment). */
export const SAVE_STEPS = ['created', 'filled', 'complete', 'moved-aside', 'installed', 'removing-old'] as const;
export type SaveStep = (typeof SAVE_STEPS)[number];

/**
 * Environment variable for fault-injection tests: `TUNELAB_CRASH_AT=<step>` makes the next save at that
 * step throw a {@link SimulatedCrash} without any cleanup (as if the process had died there);
 * `TUNELAB_CRASH_AT=<step>:kill` kills the process with SIGKILL there.
 */
export const CRASH_ENV = 'TUNELAB_CRASH_AT';

/** Thrown at an injected crash point; the save leaves its temps exactly as a dead process would. */
export class SimulatedCrash extends Error {
  constructor(readonly step: SaveStep) {
    super(`simulated crash at save step "${step}" (${CRASH_ENV})`);
  }
}

function crashPoint(step: SaveStep, temps: string[]): void {
  const spec = process.env[CRASH_ENV];
  if (!spec) return;
  const [at, how] = spec.split(':');
  if (at !== step) return;
  if (how === 'kill') process.kill(process.pid, 'SIGKILL');
  for (const t of temps) markAbandoned(t);
  throw new SimulatedCrash(step);
}

/** Options of {@link writeFolderAtomic}. */
export interface WriteFolderOptions {
  /**
   * When the save fails with a system error (a full disk, no permission), fill a folder under the OS temp
   * folder instead and name it in the error, so the weights are not lost (default true).
   */
  rescue?: boolean;
}

/**
 * Writes folder `dir` by calling `fill` on an empty temp folder beside it and renaming that into place
 * (see the file comment for the steps and what survives a crash at each). An existing `dir` is replaced
 * only after the new folder is complete and flushed to disk. Folders are created with mode 0777 less the
 * umask, like `mkdir`. On failure `dir` is left as it was, the temps are removed and the error names
 * `dir`; with `rescue` the contents were written to a folder the error names.
 *
 * @example
 * await writeFolderAtomic('runs/x/final', async (tmp) => writeJsonAtomic(path.join(tmp, 'config.json'), config));
 */
export async function writeFolderAtomic(dir: string, fill: (tmp: string) => Promise<void>, options: WriteFolderOptions = {}): Promise<void> {
  const target = path.resolve(dir);
  const parent = path.dirname(target);
  const name = path.basename(target);
  fs.mkdirSync(parent, { recursive: true });
  recoverFolder(target);
  const tmp = path.join(parent, tempName(name, 'tmp'));
  const ready = path.join(parent, tempName(name, 'new'));
  const old = path.join(parent, tempName(name, 'old'));
  const temps = [tmp, ready, old];
  try {
    fs.mkdirSync(tmp, { mode: 0o777 }); // unlike mkdtemp (0700), honours the umask
    crashPoint('created', temps);
    await fill(tmp);
    crashPoint('filled', temps);
    fsyncTree(tmp);
    fs.renameSync(tmp, ready);
    fsyncFolder(parent);
    crashPoint('complete', temps);
    const replacing = fs.existsSync(target);
    if (replacing) {
      fs.renameSync(target, old);
      crashPoint('moved-aside', temps);
    }
    fs.renameSync(ready, target);
    fsyncFolder(parent);
    crashPoint('installed', temps);
    if (replacing) removeOld(old, temps);
  } catch (err) {
    if (err instanceof SimulatedCrash) throw err;
    // Put the previous folder back if it was moved aside, then drop whatever this save created.
    try {
      if (!fs.existsSync(target) && fs.existsSync(old)) fs.renameSync(old, target);
      for (const t of [tmp, ready]) fs.rmSync(t, { recursive: true, force: true });
    } catch {
      // What is left is a dead writer's once this process ends: the next load or save repairs it.
    }
    throw await saveError(target, dir, tmp, err, options.rescue !== false ? fill : undefined);
  }
}

/**
 * Deletes the previous folder. The save is done by then, so a failure here is not one: the backup is a
 * dead writer's temp once this process ends, and the next load or save removes it. The crash point sits
 * after the first file, to leave a half-deleted backup as a real crash would.
 */
function removeOld(old: string, temps: string[]): void {
  try {
    const first = fs.readdirSync(old)[0];
    if (first !== undefined) fs.rmSync(path.join(old, first), { recursive: true, force: true });
  } catch {
    // See above.
  }
  crashPoint('removing-old', temps);
  try {
    fs.rmSync(old, { recursive: true, force: true });
  } catch {
    // See above.
  }
}

/**
 * The error of a failed save: names the destination (not a file of the deleted temp folder), keeps `code`
 * and `cause`, and, for system errors, says where the rescued copy is.
 */
async function saveError(target: string, dir: string, tmp: string, err: unknown, fill?: (tmp: string) => Promise<void>): Promise<Error> {
  const cause = err instanceof Error ? err : new Error(String(err));
  const code = (cause as NodeJS.ErrnoException).code;
  const detail = cause.message.split(tmp).join(dir);
  const previous = fs.existsSync(target) ? `${dir} still holds the previous save` : `nothing was written to ${dir}`;
  let message = `${dir}: save failed: ${detail}; ${previous}`;
  // System errors only (ENOSPC, EDQUOT, EACCES, EIO…): a bug or bad input would fail the copy the same way.
  if (fill && typeof code === 'string' && /^E[A-Z]+$/.test(code)) message += `; ${await rescue(path.basename(target), fill)}`;
  const out = new Error(message, { cause });
  if (code !== undefined) (out as NodeJS.ErrnoException).code = code;
  return out;
}

/** Fills a folder under the OS temp folder (another disk, often) so a failed save does not lose the weights. */
async function rescue(name: string, fill: (tmp: string) => Promise<void>): Promise<string> {
  const where = path.join(os.tmpdir(), `tunelab-unsaved-${name}-${process.pid}-${Date.now()}`);
  try {
    fs.mkdirSync(where, { mode: 0o777 });
    await fill(where);
    fsyncTree(where);
    return `the files were written to ${where} instead (move that folder into place once there is room)`;
  } catch (e) {
    fs.rmSync(where, { recursive: true, force: true });
    return `keeping a copy in ${os.tmpdir()} failed too (${(e as Error).message})`;
  }
}
