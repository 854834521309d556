/**
 * Headless Chromium driven over the DevTools protocol through `--remote-debugging-pipe` (fds 3 and 4,
 * NUL-separated JSON): no WebSocket client and no network port needed.
 */
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Readable, Writable } from 'stream';

export const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => fs.existsSync(p));

type Json = Record<string, unknown>;

/** One browser with one page (a tab) attached. */
export class Browser {
  private next = 0;
  private readonly pending = new Map<number, { resolve(v: Json): void; reject(e: Error): void }>();
  private buffer = '';
  private session = '';

  private constructor(private readonly proc: ChildProcess, private readonly profile: string) {
    const input = proc.stdio[4] as Readable;
    input.setEncoding('utf8');
    input.on('data', (chunk: string) => {
      this.buffer += chunk;
      let end: number;
      while ((end = this.buffer.indexOf('\0')) >= 0) {
        const msg = JSON.parse(this.buffer.slice(0, end)) as { id?: number; result?: Json; error?: { message: string } };
        this.buffer = this.buffer.slice(end + 1);
        const p = msg.id === undefined ? undefined : this.pending.get(msg.id);
        if (!p) continue;
        this.pending.delete(msg.id!);
        if (msg.error) p.reject(new Error(msg.error.message));
        else p.resolve(msg.result ?? {});
      }
    });
  }

  /** Starts Chromium and opens a blank page. */
  static async launch(): Promise<Browser> {
    if (!CHROMIUM) throw new Error('no chromium');
    const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-chromium-'));
    const env = { ...process.env, HOME: profile, XDG_CONFIG_HOME: profile, XDG_CACHE_HOME: profile, XDG_DATA_HOME: profile };
    const proc = spawn(CHROMIUM, [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-breakpad', '--disable-crash-reporter', '--remote-debugging-pipe', `--user-data-dir=${profile}`, 'about:blank',
    ], { env, stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'pipe'] });
    const b = new Browser(proc, profile);
    const { targetId } = (await b.send('Target.createTarget', { url: 'about:blank' })) as { targetId: string };
    b.session = ((await b.send('Target.attachToTarget', { targetId, flatten: true })) as { sessionId: string }).sessionId;
    return b;
  }

  /** Sends a DevTools command (to the page once attached). */
  send(method: string, params: Json = {}): Promise<Json> {
    const id = ++this.next;
    const msg = JSON.stringify({ id, method, params, ...(this.session ? { sessionId: this.session } : {}) });
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      (this.proc.stdio[3] as Writable).write(`${msg}\0`);
    });
  }

  /** Evaluates an expression in the page (awaiting a promise) and returns its JSON value. */
  async eval<T = unknown>(expression: string): Promise<T> {
    const r = (await this.send('Runtime.evaluate', { expression, awaitPromise: true, returnByValue: true })) as {
      result: { value?: T }; exceptionDetails?: { text: string; exception?: { description?: string } };
    };
    if (r.exceptionDetails) throw new Error(`${r.exceptionDetails.text} ${r.exceptionDetails.exception?.description ?? ''}`);
    return r.result.value as T;
  }

  /** Polls `expression` until it is truthy; fails after `ms` with `what`. */
  async waitFor(expression: string, what: string, ms = 30_000): Promise<void> {
    const deadline = Date.now() + ms;
    for (;;) {
      let ok = false;
      try { ok = Boolean(await this.eval(expression)); } catch { /* the page is (re)loading */ }
      if (ok) return;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  async goto(url: string): Promise<void> {
    await this.send('Page.navigate', { url });
  }

  /** Ends Chromium (politely, then by signal) and removes its profile once it has exited. */
  async close(): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      const exited = new Promise((r) => this.proc.once('exit', r));
      this.session = '';
      this.send('Browser.close').catch(() => undefined);
      const wait = (ms: number) => Promise.race([exited, new Promise((r) => setTimeout(r, ms))]);
      await wait(5000);
      if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL');
      await wait(5000);
    }
    // Helper processes may still be writing into the profile for a moment.
    fs.rmSync(this.profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
  }
}
