/** Shared helpers of the test suites. */
import * as tf from '@tensorflow/tfjs';
import { initEngine } from '../src/engine';

/** Starts the default engine once (wasm here) and returns its backend name. */
export async function engineReady(): Promise<string> {
  return (await initEngine()).backend;
}

/** Largest absolute difference between two arrays. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} ≠ ${b.length}`);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

/** Ids tensor (B, T) from nested arrays. */
export function ids(rows: number[][]): tf.Tensor2D {
  return tf.tensor2d(rows, [rows.length, rows[0].length], 'int32');
}

/** Runs fn with the backend switched, then switches back to the default engine. */
export async function onBackend<T>(name: 'cpu' | 'wasm', fn: () => Promise<T> | T): Promise<T> {
  const before = tf.getBackend();
  await tf.setBackend(name);
  try {
    return await fn();
  } finally {
    await tf.setBackend(before);
  }
}
