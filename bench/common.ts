/**
 * What every bench script shares: logging, rounding, the timed-step loop (median step after warm-up, tensor
 * count checked at each step) and the machine record with its load-average note. One place, so every script
 * times and reports the same way.
 */
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';

/** `log('…')` writes `[bench:<name>] …` to stderr (stdout carries the JSON result). */
export const logger = (name: string) => (msg: string) => process.stderr.write(`[${name}] ${msg}\n`);

/** Rounds to `digits` decimals. */
export const round = (x: number, digits = 1) => Math.round(x * 10 ** digits) / 10 ** digits;

/** The middle value (upper median for an even count), robust to a few slow steps on a busy machine. */
export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

/** The value after `--<name>` on the command line, or `fallback` when the flag is absent. */
export const argValue = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
};

/**
 * The positive number after `--<name>` (an integer unless `integer` is false), or `fallback` when the flag is
 * absent. Anything else ends the script with exit code 2 and one line naming the flag (as a CLI's usage
 * error), instead of becoming NaN downstream.
 */
export const numberArg = (name: string, fallback: number, integer = true): number => {
  if (!process.argv.includes(`--${name}`)) return fallback;
  const raw = argValue(name, '');
  const x = Number(raw);
  if (x > 0 && (!integer || Number.isInteger(x))) return x;
  process.stderr.write(`${path.basename(process.argv[1] ?? 'script')}: --${name} must be a positive ${integer ? 'integer' : 'number'} (got "${raw ?? ''}")\n`);
  process.exit(2);
};

/** Peak resident memory of this process so far, in MiB. */
export const peakRssMiB = () => round(process.resourceUsage().maxRSS / 1024);

/** What a timed loop measured. */
export interface StepTiming {
  /** Wall time of each timed step, ms. */
  times: number[];
  /** Tokens trained over the timed steps. */
  tokens: number;
  /** Loss of the last timed step. */
  lastLoss: number;
  /** Wall time of the whole timed loop, ms. */
  elapsedMs: number;
  tensorsBefore: number;
  tensorsAfter: number;
  /** Whether `tf.memory().numTensors` stayed at its starting value after every step (no leak). */
  tensorsFlat: boolean;
}

/**
 * Runs `step` until at least `minSteps` steps ran and `budgetMs` passed (warm-up is the caller's), timing each.
 *
 * @example
 * const t = await timeSteps(() => trainer.trainStep(), { minSteps: 8, budgetMs: 15_000 });
 * const tokensPerSec = (tokensPerStep * 1000) / median(t.times);
 */
export async function timeSteps(step: () => Promise<{ loss: number; tokens: number }>, o: { minSteps: number; budgetMs: number }): Promise<StepTiming> {
  const tensorsBefore = tf.memory().numTensors;
  const times: number[] = [];
  let flat = true;
  let tokens = 0;
  let lastLoss = NaN;
  const start = performance.now();
  let elapsedMs = 0;
  while (times.length < o.minSteps || elapsedMs < o.budgetMs) {
    const t0 = performance.now();
    const r = await step();
    times.push(performance.now() - t0);
    tokens += r.tokens;
    lastLoss = r.loss;
    flat &&= tf.memory().numTensors === tensorsBefore;
    elapsedMs = performance.now() - start;
  }
  return { times, tokens, lastLoss, elapsedMs, tensorsBefore, tensorsAfter: tf.memory().numTensors, tensorsFlat: flat };
}

/**
 * The machine a bench ran on, with a note when the 1-minute load average says other processes shared it
 * (the bench itself keeps about one core busy).
 */
export function machineRecord(loadBefore: number[], log: (msg: string) => void): Record<string, unknown> {
  const cores = os.cpus().length;
  const loadAfter = os.loadavg();
  const notes: string[] = [];
  if (loadBefore[0] > 1) notes.push(`1-minute load average was ${round(loadBefore[0], 2)} at the start: other processes were running during the measurement`);
  const busy = Math.max(loadBefore[0], loadAfter[0]);
  if (busy > cores + 0.5) notes.push(`1-minute load average reached ${round(busy, 2)} on ${cores} cores: timings are noisy; rerun on an idle machine`);
  for (const n of notes) log(n);
  return {
    cpu: os.cpus()[0]?.model, cores, memGiB: round(os.totalmem() / 2 ** 30), node: process.version,
    platform: `${os.platform()} ${os.release()}`, loadAvgBefore: loadBefore.map((x) => round(x, 2)), loadAvgAfter: loadAfter.map((x) => round(x, 2)),
    ...(notes.length ? { note: notes.join('; ') } : {}),
  };
}
