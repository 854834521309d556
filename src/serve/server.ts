/**
 * An OpenAI-compatible HTTP server for a causal LM and its adapters (node:http, no dependencies):
 * `GET /v1/models`, `POST /v1/completions`, `POST /v1/chat/completions` (with server-sent-event
 * streaming), `GET /health`.
 *
 * Models: the base model is `<name>`; each adapter is `<name>:<adapter>` (OpenAI's fine-tuned model
 * naming). `model` may also be a bare adapter name, and a tunelab-only `adapter` field selects one too.
 * Requests run one at a time in arrival order (a FIFO queue; tfjs here runs one generation at a time);
 * generation yields to the event loop between tokens so streams and other sockets keep flowing.
 */
import * as http from 'http';
import * as path from 'path';
import { randomBytes } from 'crypto';
import type { AddressInfo } from 'net';
import type { CausalLM } from '../model/transformer';
import type { Tokenizer } from '../tokenizer/tokenizer';
import { ChatTemplate, chatmlTemplate } from '../data/chat';
import { encodeChat } from '../data/tokenize';
import { loadModel } from '../io/checkpoint';
import { peft } from '../peft/peft';
import { loadAdapter } from '../peft/io';
import { TextAssembler } from './decode';
import { TokenStepper } from '../model/generate';
import { ApiError, ChatRequest, CompletionRequest, SamplingRequest, parseChat, parseCompletion } from './openai';
import { JobQueue } from './queue';

/** Options of {@link createServer}. */
export interface ServerOptions {
  model: CausalLM;
  tokenizer: Tokenizer;
  /** Id of the base model in `/v1/models` and responses (default `model`). */
  modelName?: string;
  /** Adapter folders to load, by name (`{ faq: 'runs/faq-lora' }`); removed again on close. Adapters already on the model are served too. */
  adapters?: Record<string, string>;
  /** Template for chat messages (default ChatML); generation stops at its end-of-turn token. */
  chatTemplate?: ChatTemplate;
  /** Requests that may wait behind the running one before new ones get 429 (default unbounded). */
  maxQueue?: number;
  /** Largest request body in bytes (default 1 MiB); larger ones get 413. */
  maxBodyBytes?: number;
  /** Called with one line per answered request (e.g. `line => process.stderr.write(line + '\n')`). */
  log?: (line: string) => void;
}

/** A server from {@link createServer} or {@link serve}. */
export interface ModelServer {
  /** The underlying node:http server. */
  readonly http: http.Server;
  /** `http://host:port` once listening. */
  readonly url: string | undefined;
  /** Ids `/v1/models` lists: the base model, then `<base>:<adapter>` for each adapter. */
  modelIds(): string[];
  /** Starts listening (port 0: any free port); resolves to the URL. */
  listen(port?: number, host?: string): Promise<string>;
  /** Stops accepting connections, lets queued and running requests finish, then resolves. */
  close(): Promise<void>;
}

const MiB = 1024 * 1024;
const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));
const now = () => Math.floor(Date.now() / 1000);
const routes: Record<string, string> = { '/v1/models': 'GET', '/v1/completions': 'POST', '/v1/chat/completions': 'POST', '/health': 'GET' };

/** Where one request's output goes: a JSON answer at the end, or SSE chunks as tokens arrive. */
interface Sink {
  /** The client went away: stop generating. */
  aborted(): boolean;
  /** Validation passed and generation begins (streams send headers and the first chunk here). */
  start(): void;
  delta(text: string): void;
}

interface GenerationResult {
  text: string;
  finishReason: 'stop' | 'length';
  promptTokens: number;
  completionTokens: number;
}

/**
 * Builds an OpenAI-compatible server around a loaded model; call `listen` to start it. The model and
 * tokenizer stay the caller's: `close` disposes nothing of theirs (it removes only the adapters it
 * loaded and restores the adapter selection it found).
 *
 * @example
 * const { model, tokenizer } = await base('tiny-llama');
 * const server = createServer({ model, tokenizer, modelName: 'tiny-llama', adapters: { faq: 'runs/faq-lora' } });
 * const url = await server.listen(8000);
 * // curl $url/v1/completions -d '{"model": "tiny-llama:faq", "prompt": "Q: What is", "max_tokens": 16}'
 * await server.close();
 */
export function createServer(options: ServerOptions): ModelServer {
  const { model, tokenizer } = options;
  const baseName = options.modelName ?? 'model';
  const template = options.chatTemplate ?? chatmlTemplate;
  const maxBody = options.maxBodyBytes ?? MiB;
  const queue = new JobQueue(options.maxQueue ?? Infinity);
  const registry = peft(model);
  const before = registry.activeNames;
  const loaded: string[] = [];
  try {
    for (const [name, dir] of Object.entries(options.adapters ?? {})) {
      loadAdapter(model, dir, name);
      loaded.push(name);
    }
  } catch (e) {
    for (const n of loaded) registry.remove(n);
    throw e;
  }
  const created = now();
  const eos = tokenizer.specialTokens.eos?.id;
  // Chat turns end at the template's end-of-turn token; when it is not one token, as a stop string.
  const eot = template.endOfTurn === undefined ? [] : tokenizer.encode(template.endOfTurn);
  const chatStopTokens = new Set([...(eos === undefined ? [] : [eos]), ...(eot.length === 1 ? eot : [])]);
  const chatStopStrings = eot.length > 1 && template.endOfTurn ? [template.endOfTurn] : [];

  const modelIds = () => [baseName, ...registry.names.map((n) => `${baseName}:${n}`)];
  const modelCard = (id: string) => ({ id, object: 'model', created, owned_by: 'tunelab', ...(id === baseName ? {} : { parent: baseName, root: baseName }) });

  /** `model` / `adapter` fields → the response's model id and the adapter to run (undefined: base). */
  function resolveModel(r: SamplingRequest): { id: string; adapter?: string } {
    let adapter: string | undefined;
    const m = r.model;
    if (m !== undefined && m !== baseName) {
      const name = m.startsWith(`${baseName}:`) ? m.slice(baseName.length + 1) : m;
      if (!registry.has(name)) throw new ApiError(404, `The model \`${m}\` does not exist (models: ${modelIds().join(', ')})`, 'model', 'model_not_found');
      adapter = name;
    }
    if (r.adapter !== undefined) {
      if (adapter !== undefined && adapter !== r.adapter) throw new ApiError(400, `adapter "${r.adapter}" contradicts model "${m}"`, 'adapter', 'invalid_value');
      if (!registry.has(r.adapter)) throw new ApiError(404, `no adapter "${r.adapter}" (adapters: ${registry.names.join(', ') || 'none'})`, 'adapter', 'model_not_found');
      adapter = r.adapter;
    }
    return { id: adapter === undefined ? baseName : `${baseName}:${adapter}`, adapter };
  }

  /** One generation, inside the queue: select the adapter, check the lengths, then step token by token. */
  async function generateFor(r: SamplingRequest, adapter: string | undefined, prompt: number[], promptParam: string, defaultMax: number | undefined,
    stopTokens: ReadonlySet<number>, stopStrings: string[], sink: Sink): Promise<GenerationResult | undefined> {
    if (sink.aborted()) return undefined;
    if (adapter !== undefined) registry.use(adapter);
    else if (registry.names.length > 0) registry.disable();
    // Prefix / prompt-tuning adapters take positions, so the room depends on the adapter.
    const window = model.config.contextLength - model.reservedPositions();
    const room = window - prompt.length;
    if (room < 1) {
      throw new ApiError(400, `This model's maximum context length is ${window} tokens; the ${promptParam} has ${prompt.length}, leaving no room for a completion`, promptParam, 'context_length_exceeded');
    }
    if (r.maxTokens !== undefined && r.maxTokens > room) {
      throw new ApiError(400, `This model's maximum context length is ${window} tokens. However, you requested ${prompt.length + r.maxTokens} tokens `
        + `(${prompt.length} in the ${promptParam}, ${r.maxTokens} in the completion). Please reduce the length of the ${promptParam} or completion.`, r.maxTokensParam, 'context_length_exceeded');
    }
    const maxTokens = r.maxTokens ?? Math.min(defaultMax ?? room, room);
    // temperature 0 means greedy (OpenAI); otherwise sample, with a fresh seed unless one is given.
    const stepper = new TokenStepper(model, prompt, {
      doSample: r.temperature > 0, temperature: r.temperature, topK: r.topK, topP: r.topP, seed: r.seed ?? randomBytes(4).readUInt32LE(0),
    });
    const text = new TextAssembler(tokenizer, [...r.stop, ...stopStrings]);
    sink.start();
    let finishReason: 'stop' | 'length' = 'length';
    let count = 0;
    try {
      while (count < maxTokens && !sink.aborted()) {
        const id = stepper.next();
        count++;
        if (stopTokens.has(id)) { finishReason = 'stop'; break; }
        const { delta, stopped } = text.push(id);
        if (delta) sink.delta(delta);
        if (stopped) { finishReason = 'stop'; break; }
        // Let sockets flush and other requests' I/O run between tokens.
        await yieldToEventLoop();
      }
    } finally {
      stepper.dispose();
    }
    const rest = text.finish();
    if (rest) sink.delta(rest);
    return { text: text.text, finishReason, promptTokens: prompt.length, completionTokens: count };
  }

  function promptIds(r: CompletionRequest): number[] {
    const ids = tokenizer.encode(r.prompt);
    // An empty prompt starts from bos, as OpenAI's models start from <|endoftext|>.
    const bos = tokenizer.specialTokens.bos?.id;
    if (ids.length === 0 && bos !== undefined) return [bos];
    if (ids.length === 0) throw new ApiError(400, 'prompt must not be empty (the tokenizer has no bos token to start from)', 'prompt', 'invalid_value');
    return ids;
  }

  function chatIds(r: ChatRequest): number[] {
    try {
      return encodeChat(tokenizer, template.render(r.messages, { addGenerationPrompt: true })).ids;
    } catch (e) {
      throw new ApiError(400, (e as Error).message, 'messages', 'invalid_value');
    }
  }

  async function completions(req: http.IncomingMessage, res: http.ServerResponse, chat: boolean): Promise<string> {
    const body = parseJson(await readBody(req, maxBody));
    const r = chat ? parseChat(body) : parseCompletion(body);
    const { id: modelId, adapter } = resolveModel(r);
    const prompt = chat ? chatIds(r as ChatRequest) : promptIds(r as CompletionRequest);
    const id = `${chat ? 'chatcmpl' : 'cmpl'}-${randomBytes(12).toString('hex')}`;
    const head = { id, object: chat ? 'chat.completion.chunk' : 'text_completion', created: now(), model: modelId };
    let closed = false;
    res.on('close', () => { closed = !res.writableFinished; });
    const send = (obj: unknown) => res.write(`data: ${JSON.stringify(obj)}\n\n`);
    const choice = (fields: Record<string, unknown>, finish: string | null) => chat
      ? { index: 0, delta: fields, logprobs: null, finish_reason: finish }
      : { text: fields.content ?? '', index: 0, logprobs: null, finish_reason: finish };
    const sink: Sink = {
      aborted: () => closed || res.destroyed,
      start: () => {
        if (!r.stream) return;
        res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache', Connection: 'keep-alive' });
        if (chat) send({ ...head, choices: [choice({ role: 'assistant', content: '' }, null)] });
      },
      delta: (content) => { if (r.stream) send({ ...head, choices: [choice({ content }, null)] }); },
    };
    const out = await queue.run(() => generateFor(r, adapter, prompt, chat ? 'messages' : 'prompt', chat ? undefined : 16,
      chat ? chatStopTokens : new Set(eos === undefined ? [] : [eos]), chat ? chatStopStrings : [], sink));
    if (!out) return 'client gone';
    const usage = { prompt_tokens: out.promptTokens, completion_tokens: out.completionTokens, total_tokens: out.promptTokens + out.completionTokens };
    if (r.stream) {
      if (res.destroyed) return 'client gone';
      send({ ...head, choices: [choice({}, out.finishReason)] });
      if (r.includeUsage) send({ ...head, choices: [], usage });
      res.end('data: [DONE]\n\n');
    } else {
      const c = chat
        ? { index: 0, message: { role: 'assistant', content: out.text }, logprobs: null, finish_reason: out.finishReason }
        : { text: out.text, index: 0, logprobs: null, finish_reason: out.finishReason };
      json(res, 200, { id, object: chat ? 'chat.completion' : 'text_completion', created: head.created, model: modelId, choices: [c], usage });
    }
    return `${modelId} ${usage.prompt_tokens}+${usage.completion_tokens} tokens ${out.finishReason}`;
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const t0 = Date.now();
    // While closing, answer and hang up, so keep-alive connections do not hold close() open.
    res.on('finish', () => { if (closing) setImmediate(() => server.closeIdleConnections()); });
    const url = (req.url ?? '/').split('?')[0].replace(/\/+$/, '') || '/';
    let note = '';
    try {
      const modelPath = url.startsWith('/v1/models/') ? decodeURIComponent(url.slice('/v1/models/'.length)) : undefined;
      const allowed = modelPath !== undefined ? 'GET' : routes[url];
      if (allowed === undefined) throw new ApiError(404, `Invalid URL (${req.method} ${url})`, null, 'unknown_url');
      if (req.method !== allowed) {
        res.setHeader('Allow', allowed);
        throw new ApiError(405, `${url} accepts ${allowed}, not ${req.method}`, null, 'method_not_allowed');
      }
      if (url === '/health') json(res, 200, { status: 'ok', queued: queue.size });
      else if (modelPath !== undefined) {
        if (!modelIds().includes(modelPath)) throw new ApiError(404, `The model \`${modelPath}\` does not exist`, 'model', 'model_not_found');
        json(res, 200, modelCard(modelPath));
      } else if (url === '/v1/models') json(res, 200, { object: 'list', data: modelIds().map(modelCard) });
      else note = await completions(req, res, url === '/v1/chat/completions');
    } catch (e) {
      const err = e instanceof ApiError ? e : new ApiError(500, `internal error: ${(e as Error)?.message ?? String(e)}`, null, 'internal_error');
      note = err.message;
      if (!res.headersSent) {
        // An unread body (e.g. after 413) would be parsed as the next request: close the connection.
        if (!req.complete) res.setHeader('Connection', 'close');
        json(res, err.status, err.body());
      } else if (!res.writableEnded) {
        // Mid-stream: OpenAI's streams report errors as a data line.
        res.end(`data: ${JSON.stringify(err.body())}\n\n`);
      }
    }
    options.log?.(`${req.method} ${url} ${res.statusCode} ${Date.now() - t0}ms ${note}`.trimEnd());
  }

  const server = http.createServer({ noDelay: true }, (req, res) => { void handle(req, res); });
  // `Expect: 100-continue` (curl's large uploads): refuse an oversized body before it is sent.
  server.on('checkContinue', (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (Number(req.headers['content-length']) > maxBody) void handle(req, res);
    else {
      res.writeContinue();
      void handle(req, res);
    }
  });

  let url: string | undefined;
  let closing: Promise<void> | undefined;
  return {
    http: server,
    get url() { return url; },
    modelIds,
    listen(port = 0, host = '127.0.0.1') {
      return new Promise<string>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          const a = server.address() as AddressInfo;
          url = `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
          resolve(url);
        });
      });
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        // Resolves once every connection has ended, so queued and running requests finish first.
        if (!server.listening) resolve();
        else server.close(() => resolve());
        server.closeIdleConnections();
      }).then(() => {
        for (const n of loaded) if (registry.has(n)) registry.remove(n);
        const keep = before.filter((n) => registry.has(n));
        if (keep.length) registry.use(keep);
        else if (registry.names.length) registry.disable();
      });
      return closing;
    },
  };
}

/** Options of {@link serve}. */
export interface ServeOptions extends Omit<ServerOptions, 'model' | 'tokenizer'> {
  /** Model folder (config.json, model.safetensors, tokenizer.json), e.g. `models/tiny-llama`. */
  checkpoint: string;
  /** Default 8000; 0 picks a free port. */
  port?: number;
  /** Default 127.0.0.1 (loopback only). */
  host?: string;
}

/**
 * Loads a checkpoint and serves it (what `tunelab serve` runs). The model is the server's: `close`
 * disposes it. `modelName` defaults to the checkpoint folder's name.
 *
 * @example
 * const server = await serve({ checkpoint: 'models/tiny-llama', adapters: { faq: 'runs/faq-lora' }, port: 8000 });
 * console.log(server.url, server.modelIds()); // http://127.0.0.1:8000 ['tiny-llama', 'tiny-llama:faq']
 * await server.close();
 */
export async function serve(options: ServeOptions): Promise<ModelServer> {
  const { model, tokenizer } = await loadModel(options.checkpoint);
  try {
    if (!tokenizer) throw new Error(`${path.join(options.checkpoint, 'tokenizer.json')}: missing (needed to turn text into tokens)`);
    const server = createServer({ ...options, model, tokenizer, modelName: options.modelName ?? path.basename(path.resolve(options.checkpoint)) });
    await server.listen(options.port ?? 8000, options.host ?? '127.0.0.1').catch(async (e) => {
      await server.close();
      throw e;
    });
    const close = server.close;
    return Object.assign(server, { close: () => close().then(() => model.dispose()) });
  } catch (e) {
    model.dispose();
    throw e;
  }
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

function parseJson(buf: Buffer): unknown {
  try {
    return JSON.parse(buf.toString('utf8'));
  } catch (e) {
    throw new ApiError(400, `We could not parse the JSON body of your request: ${(e as Error).message}`, null, 'invalid_json');
  }
}

/** Reads the body, refusing (413) as soon as it is known to exceed `limit` — never buffering more. */
function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer> {
  const tooLarge = () => new ApiError(413, `request body exceeds ${limit} bytes`, null, 'request_too_large');
  if (Number(req.headers['content-length']) > limit) {
    req.resume(); // discard, so the answer can be written while the client still sends
    return Promise.reject(tooLarge());
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (c: Buffer) => {
      if (over) return;
      size += c.length;
      if (size > limit) {
        over = true;
        chunks.length = 0;
        reject(tooLarge());
      } else chunks.push(c);
    });
    req.on('end', () => { if (!over) resolve(Buffer.concat(chunks)); });
    req.on('error', reject);
  });
}
