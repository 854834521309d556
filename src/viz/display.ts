/**
 * Where rich output goes. Inside a tslab kernel, outputs become Jupyter `display_data` /
 * `update_display_data` messages; in a script they become text on stdout (charts are saved with
 * `chart.save('x.html')`). Every viz function takes an optional {@link DisplaySink}, so tests pass a
 * {@link RecordingSink} and assert exactly what would be sent.
 */
import { randomBytes } from 'crypto';
import { inspect } from 'util';
import { hooksKey, type KernelHooks } from '../kernel/hooks';

export type { MimeBundle } from '../kernel/hooks';
import type { MimeBundle } from '../kernel/hooks';

/**
 * The rich display protocol: an object with a method under this key returns its Jupyter mime bundle
 * (`{ 'text/plain': …, 'text/html'?: …, … }`), which the tunelab kernel shows for a cell's last expression
 * and {@link display} shows anywhere. `Symbol.for`, so every copy of tunelab (and other libraries) agree.
 *
 * @example
 * class Greeting { [Symbol.for('tunelab.mimeBundle')]() { return { 'text/plain': 'hi', 'text/html': '<b>hi</b>' }; } }
 */
export const mimeBundleKey: unique symbol = Symbol.for('tunelab.mimeBundle');

/**
 * The mime bundle of any value: its {@link mimeBundleKey} method's bundle when it has one (checked: an
 * object with a string `text/plain`), else `text/plain` as `console.log` prints it (strings unquoted).
 */
export function mimeBundleOf(value: unknown): MimeBundle {
  const method = value !== null && (typeof value === 'object' || typeof value === 'function') ? (value as Record<symbol, unknown>)[mimeBundleKey] : undefined;
  if (typeof method !== 'function') return { 'text/plain': typeof value === 'string' ? value : inspect(value) };
  const bundle: unknown = method.call(value);
  const b = bundle as Record<string, unknown> | null;
  if (!b || typeof b !== 'object' || typeof b['text/plain'] !== 'string') {
    throw new TypeError(`[Symbol.for('tunelab.mimeBundle')]() must return an object with a string 'text/plain'; got ${inspect(bundle, { depth: 1 })}`);
  }
  return b as MimeBundle;
}

/** One output that can be redrawn in place (a Jupyter display id). */
export interface LiveDisplay {
  /** The Jupyter display id every render of this output carries. */
  readonly id: string;
  /** First call shows the output (`display_data`); later calls replace it (`update_display_data`). */
  render(data: MimeBundle): void;
}

/** A destination for rich outputs. */
export interface DisplaySink {
  /** `notebook`: HTML is rendered by a frontend; `terminal`: only text reaches a person. */
  readonly kind: 'notebook' | 'terminal';
  /** Shows a one-off output. */
  show(data: MimeBundle): void;
  /** Opens an output that can be updated in place. */
  live(): LiveDisplay;
}

/** Jupyter's preference when a frontend message can carry only one mime type (tslab's public API). */
const PREFERENCE = ['text/html', 'image/svg+xml', 'text/markdown', 'text/plain'];

function preferred(data: MimeBundle): [string, string] | undefined {
  for (const mime of PREFERENCE) {
    const v = data[mime];
    if (typeof v === 'string') return [mime, v];
  }
  return Object.entries(data).find((e): e is [string, string] => typeof e[1] === 'string');
}

/** What the tunelab kernel offers viz: the `display` of its hooks (see src/kernel/hooks.ts). */
type KernelDisplay = Pick<KernelHooks, 'display'>;

function kernelDisplay(): KernelDisplay | undefined {
  const hooks = Reflect.get(globalThis, hooksKey) as Partial<KernelDisplay> | undefined;
  return hooks && typeof hooks.display === 'function' ? (hooks as KernelDisplay) : undefined;
}

/** The parts of tslab's public module (`tslab/dist/public.d.ts`) used here. */
interface TslabDisplay {
  raw(contentType: string, b: string | Uint8Array): unknown;
}
interface TslabModule {
  display: TslabDisplay;
  newDisplay(): TslabDisplay;
}

function isTslabModule(m: unknown): m is TslabModule {
  const t = m as Partial<TslabModule> | null;
  return !!t && typeof t.newDisplay === 'function' && !!t.display && typeof t.display.raw === 'function';
}

/**
 * The running kernel's tslab module, or undefined outside a kernel. tslab's executor sets
 * `globalThis.__tslab__.require`, whose `require('tslab')` returns the kernel's own copy; requiring
 * `tslab` from here could load a second copy (a global install vs ours) whose display writer is never
 * connected. Scripts never load tslab (it pulls in a TypeScript compiler).
 */
function kernelTslab(): TslabModule | undefined {
  const g = globalThis as { __tslab__?: { require?: unknown } };
  const req = g.__tslab__?.require;
  if (typeof req !== 'function') return undefined;
  try {
    const m: unknown = (req as (id: string) => unknown)('tslab');
    return isTslabModule(m) ? m : undefined;
  } catch {
    return undefined;
  }
}

/** `tslab` inside a notebook kernel (the tunelab kernel or stock tslab), else `terminal`. */
export function detectEnvironment(): 'tslab' | 'terminal' {
  return kernelDisplay() || kernelTslab() ? 'tslab' : 'terminal';
}

/**
 * A sink that sends whole mime bundles through the tunelab kernel, so each front end picks the richest
 * form it renders (stock tslab sends one mime type per output: see {@link tslabSink}).
 */
export function kernelSink(kernel: KernelDisplay): DisplaySink {
  return {
    kind: 'notebook',
    show: (data) => kernel.display(data),
    live() {
      const id = randomBytes(8).toString('hex');
      let shown = false;
      return {
        id,
        render(data) {
          kernel.display(data, { displayId: id, update: shown });
          shown = true;
        },
      };
    },
  };
}

/**
 * A sink that sends outputs to a tslab kernel. tslab sends one mime type per message, so the richest
 * one present is sent (HTML first).
 */
export function tslabSink(tslab: TslabModule): DisplaySink {
  return {
    kind: 'notebook',
    show(data) {
      const p = preferred(data);
      if (p) tslab.display.raw(p[0], p[1]);
    },
    live() {
      const d = tslab.newDisplay();
      // tslab keeps the id private; it is only used here to name the display for callers.
      const id = (d as { id?: unknown }).id;
      return {
        id: typeof id === 'string' ? id : randomBytes(8).toString('hex'),
        render(data) {
          const p = preferred(data);
          if (p) d.raw(p[0], p[1]);
        },
      };
    },
  };
}

/**
 * A sink for scripts: writes each output's `text/plain` (if any) as a line to `out`; live displays
 * write nothing, because progress in a terminal is drawn by {@link TerminalProgress} instead.
 */
export function terminalSink(out: NodeJS.WritableStream = process.stdout): DisplaySink {
  return {
    kind: 'terminal',
    show(data) {
      const text = data['text/plain'];
      if (typeof text === 'string') out.write(`${text}\n`);
    },
    live() {
      return { id: randomBytes(8).toString('hex'), render() {} };
    },
  };
}

/** A Jupyter message a {@link RecordingSink} saw. */
export interface DisplayMessage {
  type: 'display_data' | 'update_display_data';
  data: MimeBundle;
  /** Set for live displays (both the first `display_data` and every update). */
  displayId?: string;
}

/**
 * Records what would be sent to a notebook, as Jupyter messages; for tests and for inspecting outputs.
 *
 * @example
 * const sink = new RecordingSink();
 * lossChart(result).show(sink);
 * sink.messages.length;      // 1: one output carrying every form of the chart
 */
export class RecordingSink implements DisplaySink {
  readonly messages: DisplayMessage[] = [];
  private next = 0;

  constructor(readonly kind: 'notebook' | 'terminal' = 'notebook') {}

  show(data: MimeBundle): void {
    this.messages.push({ type: 'display_data', data });
  }

  live(): LiveDisplay {
    const id = `display-${++this.next}`;
    let shown = false;
    return {
      id,
      render: (data) => {
        this.messages.push({ type: shown ? 'update_display_data' : 'display_data', data, displayId: id });
        shown = true;
      },
    };
  }

  /** The `text/html` of every message, in order. */
  html(): string[] {
    return this.messages.map((m) => m.data['text/html']).filter((h): h is string => typeof h === 'string');
  }
}

// The one piece of process state here: the auto-detected sink (so "plotly.js already sent" is tracked
// per kernel process) and an explicit override the caller can set.
let overrideSink: DisplaySink | undefined;
let detectedSink: DisplaySink | undefined;

/**
 * The sink used when a viz function is not given one: the one set by {@link setDisplaySink}, else a
 * tslab sink inside a kernel, else a terminal sink.
 */
export function displaySink(): DisplaySink {
  if (overrideSink) return overrideSink;
  if (!detectedSink) {
    const kernel = kernelDisplay();
    const tslab = kernel ? undefined : kernelTslab();
    detectedSink = kernel ? kernelSink(kernel) : tslab ? tslabSink(tslab) : terminalSink();
  }
  return detectedSink;
}

/**
 * Shows any value, like IPython's `display`: its rich form when it implements {@link mimeBundleKey}
 * (charts, tables), else the text `console.log` would print.
 *
 * @example
 * display(lossChart(result));
 * display(corpus);          // the data engineer's objects carry their own HTML
 */
export function display(value: unknown, sink: DisplaySink = displaySink()): void {
  sink.show(mimeBundleOf(value));
}

/**
 * Overrides the auto-detected sink (`undefined` restores auto-detection).
 *
 * @example
 * setDisplaySink(terminalSink());   // inside a kernel, print text instead of HTML
 */
export function setDisplaySink(sink: DisplaySink | undefined): void {
  overrideSink = sink;
}
