/**
 * The rich-display protocol shared with the kernel: an object with a method under {@link mimeBundleKey}
 * returns the Jupyter outputs for itself, which the kernel shows for a cell's last expression and for
 * `display(x)`. The key is a registered symbol (`Symbol.for`), so copies of tunelab loaded twice agree.
 */
import type { MimeBundle } from './display';

/** `Symbol.for('tunelab.mimeBundle')`: the method that returns an object's Jupyter mime bundle. */
export const mimeBundleKey: unique symbol = Symbol.for('tunelab.mimeBundle');

/** An object that shows itself in notebooks: at least `text/plain`, usually `text/html` too. */
export interface RichDisplay {
  [mimeBundleKey](): MimeBundle & { 'text/plain': string };
}

/**
 * The mime bundle of `x` when it follows the protocol, else undefined.
 *
 * @example
 * richBundle(corpus)?.['text/html'];   // the corpus summary and a preview table
 */
export function richBundle(x: unknown): MimeBundle | undefined {
  if ((typeof x !== 'object' && typeof x !== 'function') || x === null) return undefined;
  const f = (x as Partial<RichDisplay>)[mimeBundleKey];
  return typeof f === 'function' ? f.call(x) : undefined;
}
