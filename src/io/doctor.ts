/**
 * `tunelab doctor <dir>`: what crashed saves left in a run or model folder, and whether its model,
 * checkpoint and adapter folders are whole. With `fix`, repairs what `recoverFolder` repairs (the same
 * thing the next load or save would do) and reports again.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readJson } from './atomic';
import { loadModelConfig } from './checkpoint';
import { formatBytes, Leftover, leftoversIn, recoverFolder, replacement, sizeOf } from './recover';
import { readSafetensors, readShardedSafetensors } from './safetensors';
import { parseTempName } from './writers';

/** One line of a {@link doctor} report. */
export interface DoctorFinding {
  path: string;
  /** `ok`: whole; `problem`: damaged or left by a dead writer (repaired by `fix` where possible); `note`: left alone on purpose. */
  level: 'ok' | 'problem' | 'note';
  message: string;
}

/** What {@link doctor} found. */
export interface DoctorReport {
  findings: DoctorFinding[];
  /** Lines of the repairs made (with `fix`). */
  repaired: string[];
  /** Number of `problem` findings (after repairs). */
  problems: number;
}

const KIND_TEXT = { tmp: 'partial save', new: 'complete save not yet renamed in', old: 'previous version moved aside' } as const;

function describeLeftover(l: Leftover, restores: boolean): DoctorFinding {
  const of = `${KIND_TEXT[l.temp.kind]} of ${path.join(path.dirname(l.path), l.temp.target)}`;
  const size = formatBytes(sizeOf(l.path));
  if (restores) return { path: l.path, level: 'problem', message: `${of} (${size}): the next save or load (or --fix) renames it back into place` };
  if (l.state === 'dead') {
    const who = l.temp.host !== undefined ? `writer pid ${l.temp.pid} is dead` : 'left by an older tunelab over an hour ago';
    return { path: l.path, level: 'problem', message: `${of} (${size}); ${who}: the next save or load (or --fix) removes it` };
  }
  if (l.state === 'alive') return { path: l.path, level: 'note', message: `${of} (${size}); writer pid ${l.temp.pid} is running: left alone` };
  const who = l.temp.host === undefined ? 'written by an older tunelab (no writer recorded)' : 'written on another host';
  return { path: l.path, level: 'note', message: `${of} (${size}), ${who}: delete it by hand once no save is running` };
}

/** Checks a model, checkpoint or adapter folder by reading its config and every weight file's header. */
function checkFolder(dir: string): DoctorFinding | undefined {
  try {
    if (fs.existsSync(path.join(dir, 'config.json'))) {
      const config = loadModelConfig(dir);
      const { tensors } = readShardedSafetensors(dir);
      const extra = ['optimizer.safetensors', 'adapter_params.safetensors'].filter((f) => fs.existsSync(path.join(dir, f)));
      for (const f of extra) readSafetensors(path.join(dir, f));
      if (fs.existsSync(path.join(dir, 'tokenizer.json'))) readJson(path.join(dir, 'tokenizer.json'));
      const kind = extra.includes('optimizer.safetensors') ? 'checkpoint' : 'model';
      return { path: dir, level: 'ok', message: `${kind} (${config.family}, ${tensors.size} tensors, ${formatBytes(sizeOf(dir))})` };
    }
    if (fs.existsSync(path.join(dir, 'adapter_config.json'))) {
      const config = readJson(path.join(dir, 'adapter_config.json'));
      const { tensors } = readSafetensors(path.join(dir, 'adapter_model.safetensors'));
      return { path: dir, level: 'ok', message: `adapter (${String(config.peft_type)}, ${tensors.size} tensors)` };
    }
  } catch (e) {
    return { path: dir, level: 'problem', message: `cannot be loaded: ${(e as Error).message}` };
  }
  return undefined;
}

function scan(dir: string): DoctorFinding[] {
  const target = path.resolve(dir);
  const parent = path.dirname(target);
  const name = path.basename(target);
  const findings: DoctorFinding[] = [];
  const subfolders = fs.existsSync(target) && fs.statSync(target).isDirectory()
    ? fs.readdirSync(target, { withFileTypes: true }).filter((e) => e.isDirectory() && !e.name.startsWith('.')).map((e) => path.join(target, e.name))
    : [];
  // Beside `dir` (its own temps), inside it (its subfolders' temps, file temps) and inside each subfolder.
  const leftovers = [
    ...leftoversIn(parent).filter((l) => l.temp.target === name),
    ...leftoversIn(target),
    ...subfolders.flatMap((s) => leftoversIn(s)),
  ];
  if (!fs.existsSync(target) && !leftovers.some((l) => l.temp.target === name)) findings.push({ path: target, level: 'problem', message: 'no such folder' });
  for (const d of [target, ...subfolders]) {
    const f = checkFolder(d);
    if (f) findings.push(f);
  }
  // Folders a crash left missing, with what would put them back.
  const groups = new Map<string, Leftover[]>();
  for (const l of leftovers) {
    const dest = path.join(path.dirname(l.path), l.temp.target);
    groups.set(dest, [...(groups.get(dest) ?? []), l]);
  }
  for (const [dest, group] of groups) {
    const pick = fs.existsSync(dest) ? undefined : replacement(group);
    if (!fs.existsSync(dest) && group.some((l) => l.isFolder)) {
      findings.push({ path: dest, level: 'problem', message: pick ? `missing: an interrupted save moved it aside (${path.basename(pick.path)})` : 'missing: an interrupted save left only partial copies' });
    }
    findings.push(...group.map((l) => describeLeftover(l, l === pick)));
  }
  return findings;
}

/**
 * Reports on `dir` (a run folder such as `runs/x`, or one model folder): each model, checkpoint and
 * adapter folder in it (whole or not, and why) and each temp of an interrupted save (whose, how big,
 * whether its writer is alive). With `fix`, first repairs `dir`, its subfolders and the folders their
 * temps belong to, as the next load or save would.
 *
 * @example
 * const { findings, problems } = doctor('runs/x', { fix: true });
 */
export function doctor(dir: string, options: { fix?: boolean } = {}): DoctorReport {
  const repaired: string[] = [];
  if (options.fix) {
    const log = (line: string) => repaired.push(line);
    const target = path.resolve(dir);
    const folders = new Set([target]);
    for (const f of scan(dir)) {
      const t = parseTempName(path.basename(f.path));
      folders.add(t ? path.join(path.dirname(f.path), t.target) : f.path);
    }
    for (const f of folders) recoverFolder(f, { log });
  }
  const findings = scan(dir);
  return { findings, repaired, problems: findings.filter((f) => f.level === 'problem').length };
}
