/**
 * What the kernel offers the code it runs (cells, and tunelab's viz inside them): `clearOutput` and whole
 * mime bundles, on `globalThis` under one symbol, so that a notebook's own copy of tunelab finds them too.
 */
/**
 * One output: mime type → content, e.g. `{ 'text/html': '<b>hi</b>', 'text/plain': 'hi' }`. Text types
 * hold strings; JSON types (`application/…+json`) hold the JSON value itself, as Jupyter's messages do.
 */
export type MimeBundle = Readonly<Record<string, string | object>>;

/** Where the kernel puts its {@link KernelHooks} on `globalThis`. */
export const hooksKey = Symbol.for('tunelab.kernel');

/** What the kernel offers the code it runs, on `globalThis` under `Symbol.for('tunelab.kernel')`. */
export interface KernelHooks {
  clearOutput(wait: boolean): void;
  /** A whole mime bundle as display_data (update_display_data with `update`), e.g. from `tunelab.display`. */
  display(data: MimeBundle, opts?: { displayId?: string; update?: boolean }): void;
}

/**
 * Clears the output of the running notebook cell, like IPython's `clear_output`.
 * @param wait - keep the old output until new output arrives (avoids flicker in update loops)
 * @returns false outside the tunelab kernel (nothing to clear), true otherwise
 */
export function clearOutput(wait = false): boolean {
  const hooks = Reflect.get(globalThis, hooksKey) as KernelHooks | undefined;
  if (!hooks) return false;
  hooks.clearOutput(wait);
  return true;
}
