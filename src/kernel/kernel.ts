/**
 * The "TypeScript (tunelab)" Jupyter kernel: tslab's TypeScript compiler and executor behind a protocol layer
 * of our own, so that the kernel behaves where stock tslab 1.0.22 does not (nothing in node_modules is edited):
 *
 * - output floods arrive whole: sockets never refuse a send (no high-water mark, no send timeout) and
 *   stream writes are batched into few messages (tslab sent one unawaited message per write, and zeromq
 *   threw "Socket is busy writing" after ~512 of them);
 * - sockets are bound before any message is read (tslab read while binding: EBUSY, a hung start now and then);
 * - failures are Jupyter errors (an `error` message, execute_reply status 'error' with ename/evalue/traceback),
 *   the last expression is an `execute_result`, kernel_info and history replies follow the protocol, and only
 *   requests already queued when a cell fails are aborted, and only if the client asked (`stop_on_error`);
 * - `tunelab`, `arquero` and danfo are importable from any folder (see {@link enablePackageFallbacks});
 * - a cell's last value and `display(x)` show an object's own mime bundle (`Symbol.for('tunelab.mimeBundle')`);
 * - a failed cell keeps its imports for later cells, as in IPython.
 *
 * Started by Jupyter through the kernelspec that `tunelab kernel install` writes: `node kernel/kernel.js <connection file>`.
 * Everything heavy (tslab, TypeScript, zeromq) loads lazily, so importing this module costs nothing.
 */
import * as fs from 'fs';
import Module from 'module';
import * as path from 'path';
import * as util from 'util';
import type * as Zmq from 'zeromq';
import type { ConverterSet, Executor } from 'tslab/dist/executor';
import type { Converter } from 'tslab/dist/converter';
import { MimeBundle, mimeBundleOf } from '../viz/display';
import { requestStop } from '../train/interrupt';
import { drainKeptSigint, isInterruption } from './sigint';
import { hooksKey, type KernelHooks } from './hooks';

export { clearOutput } from './hooks'; // the kernel module's own API for cells that require it directly
import { enablePackageFallbacks, packageRoot, type TsSystem } from './resolve';
import { PROTOCOL_VERSION, Sender, Wire, type ConnectionInfo, type Json, type JsonObject, type Message } from './wire';
import { bool, codePointToIndex, globRegExp, indexToCodePoint, int, str, toJupyterError } from './content';

interface HistoryEntry {
  line: number;
  input: string;
  output: string | null;
}

type SocketName = 'shell' | 'control';
interface Queued {
  socket: SocketName;
  msg: Message;
}

/** How long the kernel waits idle after starting before compiling TypeScript's lib files (ms; 0 turns it off). */
const WARM_AFTER_MS = Number(process.env.TUNELAB_KERNEL_WARM_MS ?? 1000);
/** Stream writes: up to STREAM_BURST messages per STREAM_INTERVAL_MS go out at once, then text is batched. */
const STREAM_INTERVAL_MS = 50;
const STREAM_BURST = 8;
const STREAM_MAX_CHARS = 1 << 16;
/** History covers this kernel process only; IPython numbers sessions across restarts, ours is always 1. */
const HISTORY_SESSION = 1;

/** Options for {@link startKernel}. */
export interface KernelOptions {
  /** Path of the connection file Jupyter wrote. */
  connectionFile: string;
  /** Folder cells run in and resolve modules from (default: the process's working directory). */
  cwd?: string;
}

/** A running kernel (returned for tests). */
export interface RunningKernel {
  /** Resolves when the kernel has shut down and closed its sockets. */
  closed: Promise<void>;
}

/**
 * Starts the kernel: binds the five sockets of the connection file, then serves requests until a
 * shutdown_request. Cell output goes to the notebook; the kernel's own log goes to the real stderr.
 */
export async function startKernel(options: KernelOptions): Promise<RunningKernel> {
  const kernel = new Kernel(options);
  await kernel.start();
  return { closed: kernel.closed };
}

class Kernel {
  private readonly cwd: string;
  private readonly conn: ConnectionInfo;
  private readonly wire: Wire;
  private readonly log: (s: string) => void;
  private sockets!: { shell: Zmq.Router; control: Zmq.Router; stdin: Zmq.Router; iopub: Zmq.Publisher; hb: Zmq.Reply };
  private senders!: { shell: Sender; control: Sender; iopub: Sender };
  private queue: Queued[] = [];
  private wake: (() => void) | null = null;
  private executionCount = 0;
  private readonly history: HistoryEntry[] = [];
  private executor: Executor | null = null;
  private convs: (ConverterSet & { created(): boolean }) | null = null;
  private warmTimer: NodeJS.Timeout | null = null;
  /** The request whose cell receives output (the running one, or the last one for late async output). */
  private parent: Message | null = null;
  private capture: { value: unknown; hasValue: boolean; errors: unknown[][] } = { value: undefined, hasValue: false, errors: [] };
  private stream = { name: '', text: '', parent: null as Message | null, windowStart: 0, sentInWindow: 0, scheduled: false };
  private shuttingDown = false;
  private resolveClosed!: () => void;
  readonly closed = new Promise<void>((r) => { this.resolveClosed = r; });

  constructor(options: KernelOptions) {
    this.cwd = options.cwd ?? process.cwd();
    this.conn = JSON.parse(fs.readFileSync(options.connectionFile, 'utf8')) as ConnectionInfo;
    this.wire = new Wire(this.conn.key ?? '', this.conn.signature_scheme || 'hmac-sha256');
    const stderr = process.stderr.write.bind(process.stderr);
    this.log = (s: string) => { stderr(`[tunelab kernel] ${s}\n`); };
  }

  async start(): Promise<void> {
    const zmq = tslabRequire('zeromq') as typeof Zmq;
    // Never refuse a send: a flood of output must queue, not throw "busy writing" or drop.
    const opts = { sendHighWaterMark: 0, sendTimeout: 0, linger: 1000 };
    this.sockets = {
      shell: new zmq.Router(opts), control: new zmq.Router(opts), stdin: new zmq.Router(opts),
      iopub: new zmq.Publisher(opts), hb: new zmq.Reply(opts),
    };
    const s = this.sockets;
    const addr = (port: number) => `${this.conn.transport}://${this.conn.ip}:${port}`;
    // Bind everything before the first receive: reading a socket that is still binding fails with EBUSY.
    await Promise.all([s.shell.bind(addr(this.conn.shell_port)), s.control.bind(addr(this.conn.control_port)),
      s.stdin.bind(addr(this.conn.stdin_port)), s.iopub.bind(addr(this.conn.iopub_port)), s.hb.bind(addr(this.conn.hb_port))]);
    this.senders = { shell: new Sender(s.shell, this.log), control: new Sender(s.control, this.log), iopub: new Sender(s.iopub, this.log) };
    this.installProcessHooks();
    void this.receive('shell');
    void this.receive('control');
    void this.heartbeat();
    void this.serveShell();
    this.scheduleWarm();
    this.watchParent();
  }

  /** Exits when the Jupyter process that started us is gone (ipykernel's parent poller), so no kernel is orphaned. */
  private watchParent(): void {
    const parent = Number(process.env.JPY_PARENT_PID);
    if (!Number.isInteger(parent) || parent <= 1) return;
    setInterval(() => {
      try {
        process.kill(parent, 0);
      } catch {
        this.log(`parent process ${parent} is gone; exiting`);
        process.exit(0);
      }
    }, 2000).unref();
  }

  // -- sockets ------------------------------------------------------------------------------------------------

  private async receive(name: SocketName): Promise<void> {
    try {
      for await (const frames of this.sockets[name]) {
        const msg = this.wire.parse(frames);
        if (!msg) { this.log(`dropped a malformed or unsigned message on ${name}`); continue; }
        // Control requests (shutdown, interrupt) must not wait behind a running cell.
        if (name === 'control') void this.handle('control', msg);
        else { this.queue.push({ socket: name, msg }); this.wake?.(); }
      }
    } catch (e) {
      if (!this.shuttingDown) this.log(`${name} receive failed: ${String(e)}`);
    }
  }

  private async heartbeat(): Promise<void> {
    try {
      for await (const frames of this.sockets.hb) await this.sockets.hb.send(frames);
    } catch (e) {
      if (!this.shuttingDown) this.log(`heartbeat failed: ${String(e)}`);
    }
  }

  /** Shell requests run one at a time, in arrival order, like ipykernel. */
  private async serveShell(): Promise<void> {
    while (!this.shuttingDown) {
      const next = this.queue.shift();
      if (!next) { await new Promise<void>((r) => { this.wake = r; }); this.wake = null; continue; }
      await this.handle(next.socket, next.msg);
    }
  }

  private reply(socket: SocketName, req: Message, type: string, content: object): void {
    this.senders[socket].send(this.wire.frames(type, content, req, req.identities));
  }

  private publish(type: string, content: object, parent: Message | null): void {
    if (type !== 'stream') this.flushStream();
    this.senders.iopub.send(this.wire.frames(type, content, parent, [Buffer.from(`kernel.${this.wire.session}.${type}`)]));
  }

  // -- requests -----------------------------------------------------------------------------------------------

  private async handle(socket: SocketName, msg: Message): Promise<void> {
    const type = msg.header.msg_type;
    this.publish('status', { execution_state: 'busy' }, msg);
    try {
      switch (type) {
        case 'kernel_info_request': this.reply(socket, msg, 'kernel_info_reply', this.kernelInfo()); break;
        case 'execute_request': await this.execute(socket, msg); break;
        case 'complete_request': this.reply(socket, msg, 'complete_reply', this.guard(() => this.complete(msg.content))); break;
        case 'inspect_request': this.reply(socket, msg, 'inspect_reply', this.guard(() => this.inspect(msg.content))); break;
        case 'is_complete_request': this.reply(socket, msg, 'is_complete_reply', this.isComplete(msg.content)); break;
        case 'history_request': this.reply(socket, msg, 'history_reply', { status: 'ok', history: this.historyReply(msg.content) }); break;
        case 'comm_info_request': this.reply(socket, msg, 'comm_info_reply', { status: 'ok', comms: {} }); break;
        case 'interrupt_request': if (!requestStop()) this.executor?.interrupt(); this.reply(socket, msg, 'interrupt_reply', { status: 'ok' }); break;
        case 'shutdown_request': {
          const restart = bool(msg.content, 'restart', false);
          this.reply(socket, msg, 'shutdown_reply', { status: 'ok', restart });
          this.publish('status', { execution_state: 'idle' }, msg);
          this.shutdown();
          return;
        }
        case 'comm_open': case 'comm_msg': case 'comm_close': break; // no comm targets
        default: this.log(`unsupported message type ${type}`);
      }
    } catch (e) {
      this.log(`${type} failed: ${e instanceof Error ? e.stack : String(e)}`);
    } finally {
      if (!this.shuttingDown) this.publish('status', { execution_state: 'idle' }, msg);
      this.scheduleWarm();
    }
  }

  private guard(fn: () => object): object {
    try {
      return fn();
    } catch (e) {
      const err = toJupyterError([[e]]);
      return { status: 'error', ...err };
    }
  }

  private kernelInfo(): object {
    const version = (file: string) => {
      try { return (JSON.parse(fs.readFileSync(file, 'utf8')) as { version: string }).version; } catch { return ''; }
    };
    const tslabDir = path.dirname(require.resolve('tslab/package.json'));
    const typescript = version(path.join(path.dirname(tslabRequire.resolve('@tslab/typescript-for-tslab')), '..', 'package.json'));
    const tunelab = version(path.join(packageRoot, 'package.json'));
    return {
      status: 'ok', protocol_version: PROTOCOL_VERSION, implementation: 'tunelab', implementation_version: tunelab,
      language_info: {
        name: 'typescript', version: typescript, mimetype: 'text/typescript', file_extension: '.ts', pygments_lexer: 'typescript',
        // tslab's codemirror mode: TypeScript highlighting in classic notebook and JupyterLab.
        codemirror_mode: { name: 'javascript', mode: 'typescript', typescript: true },
      },
      banner: `TypeScript ${typescript} (tunelab ${tunelab}, tslab ${version(path.join(tslabDir, 'package.json'))}, Node.js ${process.version})`,
      help_links: [{ text: 'tunelab', url: 'https://www.npmjs.com/package/tunelab' }, { text: 'tslab', url: 'https://github.com/yunabe/tslab' }],
    };
  }

  // -- execution ----------------------------------------------------------------------------------------------

  private async execute(socket: SocketName, msg: Message): Promise<void> {
    if (this.aborted.delete(msg)) return this.reply(socket, msg, 'execute_reply', { status: 'aborted' });
    const code = str(msg.content, 'code');
    const silent = bool(msg.content, 'silent', false);
    const storeHistory = silent ? false : bool(msg.content, 'store_history', true);
    if (storeHistory) this.executionCount++;
    const count = this.executionCount;
    if (!silent) this.publish('execute_input', { code, execution_count: count }, msg);
    this.parent = msg;
    // IPython's help syntax (`name?`, `?name`): the type and docs in the pager instead of running anything.
    const help = /^\s*\?*\s*([\p{L}_$][\p{L}\p{N}_$.]*)\s*\?*\s*$/u.exec(code);
    if (help && /\?/.test(code)) {
      const info = this.inspect({ code: help[1], cursor_pos: Array.from(help[1]).length });
      const text = info.found ? info.data['text/plain'] : `No information about ${help[1]}.`;
      const payload = [{ source: 'page', data: { 'text/plain': text }, start: 0 }];
      this.reply(socket, msg, 'execute_reply', { status: 'ok', execution_count: count, payload, user_expressions: {} });
      if (storeHistory) this.history.push({ line: count, input: code, output: null });
      return;
    }
    this.capture = { value: undefined, hasValue: false, errors: [] };
    let ok: boolean;
    try {
      ok = await this.getExecutor().execute(code);
    } catch (e) {
      this.capture.errors.push([e]);
      ok = false;
    }
    const { value, hasValue, errors } = this.capture;
    let output: string | null = null;
    if (ok) {
      // Module cells (//%module) report type errors as warnings and still succeed.
      for (const r of errors) process.stderr.write(`${util.format(...r)}\n`);
      if (hasValue) {
        const data = this.resultBundle(value);
        output = String(data['text/plain']);
        if (!silent) this.publish('execute_result', { execution_count: count, data, metadata: {} }, msg);
      }
      this.flushStream();
      this.reply(socket, msg, 'execute_reply', { status: 'ok', execution_count: count, payload: [], user_expressions: {} });
    } else {
      const err = toJupyterError(errors);
      // A second interrupt can be kept by Node for a later cell: clear it while this one is still failing.
      if (errors.some((args) => args.some(isInterruption))) drainKeptSigint();
      await this.keepImports(code);
      this.publish('error', { ...err, execution_count: count }, msg);
      if (bool(msg.content, 'stop_on_error', true)) await this.abortQueued();
      this.reply(socket, msg, 'execute_reply', { status: 'error', execution_count: count, ...err, user_expressions: {}, payload: [] });
    }
    if (storeHistory) this.history.push({ line: count, input: code, output });
  }

  /**
   * A cell's last value as Jupyter data: its own mime bundle when it implements `Symbol.for('tunelab.mimeBundle')`
   * (charts, tables), else the text `console.log` prints. A failing bundle method is reported on stderr and the
   * text is shown instead, as IPython does with a failing `_repr_html_`.
   */
  private resultBundle(value: unknown): MimeBundle {
    try {
      return mimeBundleOf(value);
    } catch (e) {
      process.stderr.write(`rich display failed, showing text: ${e instanceof Error ? e.message : String(e)}\n`);
      return { 'text/plain': util.format(value) };
    }
  }

  /**
   * After a failed cell, runs its import declarations alone (silently), so that they stay declared for later
   * cells, as in IPython, where the imports before a failing line have run. tslab otherwise drops every
   * declaration of a failed cell; its modules are cached, so importing again costs no side effects.
   */
  private async keepImports(code: string): Promise<void> {
    const ts = tslabRequire('@tslab/typescript-for-tslab') as typeof import('typescript');
    const file = ts.createSourceFile('cell.ts', code, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
    const imports = file.statements.filter((st) => ts.isImportDeclaration(st) || ts.isImportEqualsDeclaration(st));
    if (imports.length === 0 || imports.length === file.statements.length) return;
    const saved = this.capture;
    this.capture = { value: undefined, hasValue: false, errors: [] };
    try {
      await this.getExecutor().execute(imports.map((st) => st.getText(file)).join('\n'));
    } catch {
      // Imports that fail on their own stay undeclared, as before.
    } finally {
      this.capture = saved;
    }
  }

  /** Execute requests to answer with status 'aborted' when their turn comes. */
  private readonly aborted = new Set<Message>();

  /**
   * Jupyter's stop_on_error: execute requests that had already arrived when a cell failed are aborted (a
   * frontend's "run all"); ones sent later run. One event-loop turn first lets already-delivered messages in.
   */
  private async abortQueued(): Promise<void> {
    await new Promise((r) => setImmediate(r));
    for (const q of this.queue) if (q.msg.header.msg_type === 'execute_request') this.aborted.add(q.msg);
  }

  private getExecutor(): Executor {
    if (this.executor) return this.executor;
    const converter = tslabRequire('tslab/dist/converter') as typeof import('tslab/dist/converter');
    const { createExecutor } = tslabRequire('tslab/dist/executor') as typeof import('tslab/dist/executor');
    const ts = tslabRequire('@tslab/typescript-for-tslab') as { sys: TsSystem };
    enablePackageFallbacks(ts, this.cwd);
    const tslabJupyter = tslabRequire('tslab/dist/jupyter') as { lastWriteDisplayData: unknown };
    // tslab.display / tslab.newDisplay() call this with a display_data bundle.
    tslabJupyter.lastWriteDisplayData = (data: object, update: boolean) => this.publish(update ? 'update_display_data' : 'display_data', data, this.parent);
    let node: Converter | null = null;
    let browser: Converter | null = null;
    this.convs = {
      get node() { return (node ??= converter.createConverter({ isJS: false, isBrowser: false })); },
      get browser() { return (browser ??= converter.createConverter({ isJS: false, isBrowser: true })); },
      close() { node?.close(); browser?.close(); },
      created: () => node !== null,
    };
    // tslab reports the last expression with console.log and failures with console.error: capture both.
    this.executor = createExecutor(this.cwd, this.convs, {
      log: (value: unknown) => { this.capture.value = value; this.capture.hasValue = true; },
      error: (...args: unknown[]) => { this.capture.errors.push(args); },
    });
    return this.executor;
  }

  /** Compiles TypeScript's lib files once the kernel has sat idle a moment, so the first cell starts sooner. */
  private scheduleWarm(): void {
    if (this.warmTimer) clearTimeout(this.warmTimer);
    if (WARM_AFTER_MS <= 0 || this.shuttingDown || this.convs?.created()) return;
    this.warmTimer = setTimeout(() => {
      this.warmTimer = null;
      if (this.queue.length > 0 || this.shuttingDown) return;
      this.getExecutor();
      void this.convs?.node;
    }, WARM_AFTER_MS);
    this.warmTimer.unref();
  }

  private complete(content: JsonObject): object {
    const code = str(content, 'code');
    const pos = codePointToIndex(code, int(content, 'cursor_pos', Array.from(code).length));
    const info = this.getExecutor().complete(code, pos);
    return {
      status: 'ok', matches: info.candidates, metadata: {},
      cursor_start: indexToCodePoint(code, info.start), cursor_end: indexToCodePoint(code, info.end),
    };
  }

  private inspect(content: JsonObject): { status: string; found: boolean; data: JsonObject; metadata: JsonObject } {
    const code = str(content, 'code');
    const pos = codePointToIndex(code, int(content, 'cursor_pos', Array.from(code).length));
    const info = this.getExecutor().inspect(code, pos);
    if (!info) return { status: 'ok', found: false, data: {}, metadata: {} };
    const { printQuickInfo } = tslabRequire('tslab/dist/inspect') as typeof import('tslab/dist/inspect');
    return { status: 'ok', found: true, data: { 'text/plain': printQuickInfo(info) }, metadata: {} };
  }

  private isComplete(content: JsonObject): object {
    try {
      const { isCompleteCode } = tslabRequire('tslab/dist/converter') as typeof import('tslab/dist/converter');
      const r = isCompleteCode(str(content, 'code'));
      return r.completed ? { status: 'complete' } : { status: 'incomplete', indent: r.indent ?? '' };
    } catch {
      return { status: 'unknown' };
    }
  }

  /** history_request over this session's cells (tail, range and glob search, as IPython answers them). */
  private historyReply(content: JsonObject): Json[] {
    const withOutput = bool(content, 'output', false);
    const row = (h: HistoryEntry): Json => [HISTORY_SESSION, h.line, withOutput ? [h.input, h.output] : h.input];
    const n = int(content, 'n', -1);
    const last = (list: HistoryEntry[]) => (n >= 0 ? list.slice(Math.max(0, list.length - n)) : list);
    switch (str(content, 'hist_access_type')) {
      case 'tail': return last(this.history).map(row);
      case 'range': {
        const session = int(content, 'session', 0);
        if (session !== 0 && session !== HISTORY_SESSION) return [];
        const start = int(content, 'start', 0);
        const stop = int(content, 'stop', Number.MAX_SAFE_INTEGER);
        return this.history.filter((h) => h.line >= start && h.line < stop).map(row);
      }
      case 'search': {
        const re = globRegExp(str(content, 'pattern', '*'));
        let found = this.history.filter((h) => re.test(h.input));
        if (bool(content, 'unique', false)) found = found.filter((h, i) => !found.slice(i + 1).some((g) => g.input === h.input));
        return last(found).map(row);
      }
      default: return [];
    }
  }

  // -- output -------------------------------------------------------------------------------------------------

  /** Cell output to the notebook, tslab.display and clearOutput() to iopub, SIGINT to an interrupt. */
  private installProcessHooks(): void {
    const writer = (name: 'stdout' | 'stderr') => ((chunk: string | Uint8Array, enc?: BufferEncoding | ((e?: Error | null) => void), cb?: (e?: Error | null) => void) => {
      const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString(typeof enc === 'string' ? enc : 'utf8');
      this.writeStream(name, text);
      const done = typeof enc === 'function' ? enc : cb;
      if (done) process.nextTick(done);
      return true;
    }) as typeof process.stdout.write;
    process.stdout.write = writer('stdout');
    process.stderr.write = writer('stderr');
    const hooks: KernelHooks = {
      clearOutput: (wait) => this.publish('clear_output', { wait }, this.parent),
      display: (data, o = {}) => this.publish(o.update ? 'update_display_data' : 'display_data', {
        data, metadata: {}, transient: o.displayId ? { display_id: o.displayId } : {},
      }, this.parent),
    };
    Reflect.set(globalThis, hooksKey, hooks);
    // A running trainer stops at its step boundary and the cell goes on; a second interrupt aborts the cell.
    process.on('SIGINT', () => { if (!requestStop()) this.executor?.interrupt(); });
    // Async failures after a cell finished: report in the notebook instead of killing the kernel.
    process.on('uncaughtException', (e) => process.stderr.write(`Uncaught ${util.inspect(e)}\n`));
    process.on('unhandledRejection', (e) => process.stderr.write(`Unhandled promise rejection: ${util.inspect(e)}\n`));
  }

  /**
   * Sends writes at once, except in a flood: past a few messages in 50 ms, text is batched and sent by the next
   * write after the 50 ms (so synchronous loops still stream) or on the next event-loop turn. Sending the first
   * ones at once matters: a line printed just before long synchronous work must not wait for it.
   */
  private writeStream(name: string, text: string): void {
    const s = this.stream;
    if (s.text && (s.name !== name || s.parent !== this.parent)) this.flushStream();
    s.name = name;
    s.parent = this.parent;
    s.text += text;
    const now = Date.now();
    if (now - s.windowStart >= STREAM_INTERVAL_MS) { s.windowStart = now; s.sentInWindow = 0; }
    if (s.sentInWindow < STREAM_BURST || s.text.length >= STREAM_MAX_CHARS) this.flushStream();
    else if (!s.scheduled) {
      s.scheduled = true;
      setImmediate(() => { s.scheduled = false; this.flushStream(); });
    }
  }

  private flushStream(): void {
    const s = this.stream;
    if (!s.text || this.shuttingDown) return;
    const text = s.text;
    s.text = '';
    s.sentInWindow++;
    this.publish('stream', { name: s.name, text }, s.parent);
  }

  private shutdown(): void {
    this.shuttingDown = true;
    if (this.warmTimer) clearTimeout(this.warmTimer);
    this.wake?.();
    try { this.convs?.close(); } catch { /* closing watchers only */ }
    // linger (1 s) lets the shutdown reply and the last status leave before the context terminates.
    for (const sock of Object.values(this.sockets)) sock.close();
    this.resolveClosed();
  }
}

/** `require` from tslab's folder, so that zeromq and TypeScript are the very instances tslab uses. */
const tslabRequire: NodeJS.Require = (() => {
  let req: NodeJS.Require | null = null;
  const get = () => (req ??= Module.createRequire(require.resolve('tslab/package.json')));
  const fn = ((id: string) => get()(id)) as NodeJS.Require;
  fn.resolve = ((id: string, o?: { paths?: string[] }) => get().resolve(id, o)) as NodeJS.RequireResolve;
  return fn;
})();

/** Command-line entry: `node kernel.js <connection file>` (what the kernelspec's argv runs). */
export async function main(argv: string[]): Promise<void> {
  const file = argv.filter((a) => !a.startsWith('-')).pop();
  if (!file) {
    process.stderr.write('usage: kernel <connection file>\n');
    process.exitCode = 2;
    return;
  }
  const k = await startKernel({ connectionFile: file });
  await k.closed;
  // Watchers of tslab's compiler would keep the process alive; the reply is out (sockets linger).
  setImmediate(() => process.exit(0));
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    process.stderr.write(`[tunelab kernel] failed to start: ${e instanceof Error ? e.stack : String(e)}\n`);
    process.exit(1);
  });
}
