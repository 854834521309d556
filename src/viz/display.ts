/**
 * Where rich output goes. Inside a tslab kernel, outputs become Jupyter `display_data` /
 * `update_display_data` messages; in a script they become text on stdout (charts are saved with
 * `chart.save('x.html')`). Every viz function takes an optional {@link DisplaySink}, so tests pass a
 * {@link RecordingSink} and assert exactly what would be sent.
 */
import { randomBytes } from 'crypto';

/** One output: mime type → content, e.g. `{ 'text/html': '<b>hi</b>', 'text/plain': 'hi' }`. */
export type MimeBundle = Readonly<Record<string, string>>;

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
  for (const mime of PREFERENCE) if (data[mime] !== undefined) return [mime, data[mime]];
  const first = Object.entries(data)[0];
  return first;
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

/** `tslab` inside a tslab Jupyter kernel, else `terminal`. */
export function detectEnvironment(): 'tslab' | 'terminal' {
  return kernelTslab() ? 'tslab' : 'terminal';
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
      if (data['text/plain'] !== undefined) out.write(`${data['text/plain']}\n`);
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
 * sink.messages.length;      // 2: the plotly.js bundle (first chart only), then the chart
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
    return this.messages.map((m) => m.data['text/html']).filter((h): h is string => h !== undefined);
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
    const tslab = kernelTslab();
    detectedSink = tslab ? tslabSink(tslab) : terminalSink();
  }
  return detectedSink;
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
