/**
 * Checks of a run's output folder before step 1: a file in the way, a folder that cannot be written, or a
 * disk without room for a checkpoint would otherwise surface only at the first save, after the steps were
 * paid for.
 */
import * as fs from 'fs';
import * as path from 'path';
import type { CausalLM } from '../model/transformer';
import { formatBytes } from '../io/recover';

/** Bytes per stored number: tunelab writes f32 weights and f32 AdamW moments. */
const F32 = 4;

/**
 * Estimated size of one training checkpoint of `trainer`: weights, adapter/head weights, the two AdamW
 * moments of every trainable parameter, `tokenizer.json` (`tokenizerBytes`) and the JSON beside them
 * (trainer state grows with the history: about 300 bytes a step).
 */
export function checkpointBytes(trainer: { model: CausalLM; config: { maxSteps: number } }, tokenizerBytes = 0): number {
  const m = trainer.model;
  let adapters = 0;
  for (const p of m.adapterParams.values()) adapters += p.variable.size;
  let trainable = 0;
  for (const v of m.trainableParams().values()) trainable += v.size;
  const json = 64 * 1024 + 300 * trainer.config.maxSteps;
  return F32 * (m.paramCount() + adapters + 2 * trainable) + tokenizerBytes + json;
}

/** Options of {@link checkOutputPlace}. */
export interface OutputPlaceOptions {
  /** Bytes the first save needs (e.g. {@link checkpointBytes}); 0 skips the free-space check. */
  bytesNeeded?: number;
  /** How the place was given, for errors: `--out`, `TrainConfig.outDir`. */
  option?: string;
  /** Free-space source (tests substitute it); `fs.statfsSync` by default. */
  statfs?: (p: string) => { bavail: number | bigint; bsize: number | bigint };
}

/**
 * Throws an error naming the option and the path when `dir` cannot hold the run's saves: a file at `dir`
 * or at one of its parents, no write and search permission on the nearest existing folder (what the
 * operating system says for this user: root passes permission bits but not a read-only mount), or less
 * free space there than `bytesNeeded`. Creates nothing. Returns the free bytes.
 *
 * @example
 * checkOutputPlace('runs/x', { bytesNeeded: checkpointBytes(trainer), option: '--out' });
 */
export function checkOutputPlace(dir: string, options: OutputPlaceOptions = {}): { freeBytes: number } {
  const { bytesNeeded = 0, option = 'output folder', statfs = fs.statfsSync } = options;
  const where = `${option} ${dir}`;
  const abs = path.resolve(dir);
  // The nearest part of the path that exists: the folder itself, or the parent the save would create it in.
  let base = abs;
  let st: fs.Stats | undefined;
  for (;;) {
    try {
      st = fs.statSync(base);
      break;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOTDIR') {
        base = path.dirname(base);
        continue;
      }
      if (code !== 'ENOENT') throw new Error(`${where}: cannot check ${base} (${code}: ${(e as Error).message})`);
      const up = path.dirname(base);
      if (up === base) throw new Error(`${where}: no part of the path exists`);
      base = up;
    }
  }
  if (!st.isDirectory()) {
    throw new Error(base === abs ? `${where}: is a file, not a folder` : `${where}: ${base} is a file, so no folder can be made under it`);
  }
  try {
    fs.accessSync(base, fs.constants.W_OK | fs.constants.X_OK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    const why = code === 'EROFS' ? 'read-only file system' : code === 'EACCES' || code === 'EPERM' ? 'permission denied' : (e as Error).message;
    throw new Error(`${where}: cannot write in ${base} (${code}: ${why})`);
  }
  const s = statfs(base);
  const freeBytes = Number(s.bavail) * Number(s.bsize);
  if (bytesNeeded > freeBytes) {
    throw new Error(`${where}: ${formatBytes(freeBytes)} free on its disk, but one checkpoint of this model needs about ${formatBytes(bytesNeeded)}`);
  }
  return { freeBytes };
}
