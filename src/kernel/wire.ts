/**
 * Jupyter's wire protocol (messaging spec 5.3): HMAC-signed multipart messages, and a sender that never loses
 * a message to zeromq's "Socket is busy writing" (stock tslab did, after ~512 unawaited sends).
 */
import * as crypto from 'crypto';

/** A Jupyter connection file. */
export interface ConnectionInfo {
  transport: string;
  ip: string;
  key: string;
  signature_scheme: string;
  shell_port: number;
  iopub_port: number;
  stdin_port: number;
  control_port: number;
  hb_port: number;
}

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export interface Header {
  msg_id: string;
  session: string;
  username: string;
  date: string;
  msg_type: string;
  version: string;
}

export interface Message {
  identities: Buffer[];
  header: Header;
  parent: JsonObject;
  metadata: JsonObject;
  content: JsonObject;
  buffers: Buffer[];
}

const DELIM = '<IDS|MSG>';
/** The messaging-spec version this kernel speaks. */
export const PROTOCOL_VERSION = '5.3';

export class Wire {
  private readonly algorithm: string | null;
  readonly session = crypto.randomUUID();

  constructor(private readonly key: string, scheme: string) {
    this.algorithm = key ? scheme.replace(/^hmac-/, '') : null;
  }

  private sign(parts: (string | Buffer)[]): string {
    if (!this.algorithm) return '';
    const h = crypto.createHmac(this.algorithm, this.key);
    for (const p of parts) h.update(p);
    return h.digest('hex');
  }

  /** Parses and authenticates a multipart message; null for anything malformed or wrongly signed. */
  parse(frames: Buffer[]): Message | null {
    const d = frames.findIndex((f) => f.length === DELIM.length && f.toString() === DELIM);
    if (d < 0 || frames.length < d + 6) return null;
    const body = frames.slice(d + 2, d + 6);
    const expected = Buffer.from(this.sign(body));
    const given = frames[d + 1];
    if (this.algorithm && (given.length !== expected.length || !crypto.timingSafeEqual(given, expected))) return null;
    try {
      const [header, parent, metadata, content] = body.map((b) => JSON.parse(b.toString()) as JsonObject);
      if (typeof header?.msg_type !== 'string' || typeof content !== 'object' || content === null) return null;
      return { identities: frames.slice(0, d), header: header as unknown as Header, parent, metadata, content, buffers: frames.slice(d + 6) };
    } catch {
      return null;
    }
  }

  /** Builds the frames of a message of `type` in reply to (or caused by) `parent`. */
  frames(type: string, content: object, parent: Message | null, identities: Buffer[]): (Buffer | string)[] {
    const header: Header = {
      msg_id: crypto.randomUUID(), session: this.session, username: 'kernel',
      date: new Date().toISOString(), msg_type: type, version: PROTOCOL_VERSION,
    };
    const body = [JSON.stringify(header), JSON.stringify(parent?.header ?? {}), '{}', JSON.stringify(content)];
    return [...identities, DELIM, this.sign(body), ...body];
  }
}

export interface SendSocket {
  send(frames: (Buffer | string)[]): Promise<void>;
  readonly closed: boolean;
}

/**
 * Sends on one socket in call order, from synchronous code too (a cell's loop doesn't yield to the event loop):
 * with `sendTimeout: 0` and no high-water mark zeromq takes every send at once, and should it refuse one anyway
 * (EBUSY/EAGAIN) that and all later ones wait in a backlog drained with awaited sends, instead of being lost.
 */
export class Sender {
  private backlog: (Buffer | string)[][] = [];
  private draining = false;

  constructor(private readonly socket: SendSocket, private readonly log: (s: string) => void) {}

  send(frames: (Buffer | string)[]): void {
    if (this.backlog.length === 0 && !this.draining) {
      try {
        this.socket.send(frames).catch((e: unknown) => this.failed(frames, e));
        return;
      } catch (e) {
        if (!isBusy(e)) return this.log(`send failed: ${String(e)}`);
      }
    }
    this.backlog.push(frames);
    void this.drain();
  }

  private failed(frames: (Buffer | string)[], e: unknown): void {
    if (isBusy(e)) {
      this.backlog.unshift(frames);
      void this.drain();
    } else if (!this.socket.closed) this.log(`send failed: ${String(e)}`);
  }

  private async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    try {
      while (this.backlog.length > 0 && !this.socket.closed) {
        try {
          await this.socket.send(this.backlog[0]);
          this.backlog.shift();
        } catch (e) {
          if (!isBusy(e)) { this.log(`send failed: ${String(e)}`); this.backlog.shift(); }
          await new Promise((r) => setTimeout(r, 1));
        }
      }
    } finally {
      this.draining = false;
    }
  }
}

export const isBusy = (e: unknown) => ['EBUSY', 'EAGAIN'].includes((e as NodeJS.ErrnoException)?.code ?? '');
