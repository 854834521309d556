/**
 * The OpenAI wire format of the server: request validation (errors name the offending field, as
 * OpenAI's do) and the error body. Responses are built in `server.ts`.
 */
import type { ChatMessage } from '../data/chat';

/** An error answered as OpenAI's `{error: {message, type, param, code}}` with an HTTP status. */
export class ApiError extends Error {
  constructor(readonly status: number, message: string, readonly param: string | null = null, readonly code: string | null = null,
    readonly type = status >= 500 ? 'server_error' : 'invalid_request_error') {
    super(message);
  }

  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

const bad = (param: string, message: string) => new ApiError(400, message, param, 'invalid_value');

/** Sampling and length settings shared by both endpoints, after validation. */
export interface SamplingRequest {
  /** `model` as sent (undefined: the base model). */
  model?: string;
  /** Explicit `adapter` field (tunelab extension; null/undefined: from `model`). */
  adapter?: string;
  /** undefined: the endpoint's default (16 for completions, the rest of the context for chat). */
  maxTokens?: number;
  /** Which field gave `maxTokens` (`max_tokens` or `max_completion_tokens`), for error messages. */
  maxTokensParam: string;
  temperature: number;
  topP: number;
  /** tunelab / vLLM extension: keep the k most likely tokens (0 = off). */
  topK: number;
  stop: string[];
  seed?: number;
  stream: boolean;
  includeUsage: boolean;
}

/** A validated `/v1/completions` body. */
export interface CompletionRequest extends SamplingRequest {
  prompt: string;
}

/** A validated `/v1/chat/completions` body. */
export interface ChatRequest extends SamplingRequest {
  messages: ChatMessage[];
}

type Body = Record<string, unknown>;

function isObject(v: unknown): v is Body {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A field that may be absent or null (OpenAI clients send explicit nulls for defaults). */
function given(body: Body, key: string): boolean {
  return body[key] !== undefined && body[key] !== null;
}

function number(body: Body, key: string, fallback: number, min: number, max: number): number {
  if (!given(body, key)) return fallback;
  const v = body[key];
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) throw bad(key, `${key} must be a number in [${min}, ${max}] (got ${JSON.stringify(v)})`);
  return v;
}

function integer(body: Body, key: string, min: number): number | undefined {
  if (!given(body, key)) return undefined;
  const v = body[key];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) throw bad(key, `${key} must be an integer ≥ ${min} (got ${JSON.stringify(v)})`);
  return v;
}

function stopList(body: Body): string[] {
  if (!given(body, 'stop')) return [];
  const v = body.stop;
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || list.length > 4 || !list.every((s) => typeof s === 'string' && s.length > 0)) {
    throw bad('stop', 'stop must be a non-empty string or an array of at most 4 non-empty strings');
  }
  return list as string[];
}

/** Parameters whose non-default values would change the result in ways this server does not implement. */
const unsupported: [string, (v: unknown) => boolean][] = [
  ['n', (v) => v !== 1], ['best_of', (v) => v !== 1], ['logprobs', (v) => v !== false && v !== 0], ['top_logprobs', (v) => v !== 0],
  ['echo', (v) => v !== false], ['suffix', (v) => v !== ''], ['presence_penalty', (v) => v !== 0], ['frequency_penalty', (v) => v !== 0],
  ['logit_bias', (v) => !isObject(v) || Object.keys(v).length > 0], ['tools', (v) => !Array.isArray(v) || v.length > 0],
  ['functions', (v) => !Array.isArray(v) || v.length > 0], ['response_format', (v) => !isObject(v) || v.type !== 'text'],
];

function sampling(body: unknown, maxTokensKeys: string[]): SamplingRequest {
  if (!isObject(body)) throw new ApiError(400, 'request body must be a JSON object', null, 'invalid_body');
  for (const [key, differs] of unsupported) {
    if (given(body, key) && differs(body[key])) throw bad(key, `${key}=${JSON.stringify(body[key])} is not supported by this server`);
  }
  for (const key of ['model', 'adapter']) {
    if (given(body, key) && typeof body[key] !== 'string') throw bad(key, `${key} must be a string`);
  }
  if (given(body, 'stream') && typeof body.stream !== 'boolean') throw bad('stream', 'stream must be a boolean');
  const so = body.stream_options;
  if (given(body, 'stream_options') && (!isObject(so) || (so.include_usage !== undefined && typeof so.include_usage !== 'boolean'))) {
    throw bad('stream_options', 'stream_options must be an object like {"include_usage": true}');
  }
  let maxTokens: number | undefined;
  let maxTokensParam = 'max_tokens';
  for (const key of maxTokensKeys) {
    if (maxTokens !== undefined) break;
    maxTokens = integer(body, key, 1);
    if (maxTokens !== undefined) maxTokensParam = key;
  }
  return {
    model: body.model as string | undefined ?? undefined,
    adapter: body.adapter as string | undefined ?? undefined,
    maxTokens,
    maxTokensParam,
    temperature: number(body, 'temperature', 1, 0, 2),
    topP: number(body, 'top_p', 1, 0, 1),
    topK: integer(body, 'top_k', 0) ?? 0,
    stop: stopList(body),
    seed: integer(body, 'seed', Number.MIN_SAFE_INTEGER),
    stream: body.stream === true,
    includeUsage: body.stream === true && isObject(so) && so.include_usage === true,
  };
}

/**
 * Validates a `/v1/completions` body. `prompt` is a string or an array holding one string.
 *
 * @example
 * parseCompletion({ model: 'tiny-llama', prompt: 'Once', max_tokens: 8 }).maxTokens; // 8
 */
export function parseCompletion(body: unknown): CompletionRequest {
  const s = sampling(body, ['max_tokens']);
  const p = (body as Body).prompt;
  const prompt = Array.isArray(p) && p.length === 1 ? p[0] : p;
  if (typeof prompt !== 'string') {
    throw bad('prompt', Array.isArray(p) && p.length > 1 ? 'prompt arrays of more than one string (batches) are not supported' : 'prompt must be a string or an array of one string');
  }
  return { ...s, prompt };
}

/**
 * Validates a `/v1/chat/completions` body. Message `content` may be a string or OpenAI's list of
 * `{type: 'text', text}` parts (joined); `developer` messages count as `system`.
 *
 * @example
 * parseChat({ messages: [{ role: 'user', content: 'Hi' }], max_completion_tokens: 8 }).maxTokens; // 8
 */
export function parseChat(body: unknown): ChatRequest {
  const s = sampling(body, ['max_completion_tokens', 'max_tokens']);
  const list = (body as Body).messages;
  if (!Array.isArray(list) || list.length === 0) throw bad('messages', 'messages must be a non-empty array of {role, content}');
  const messages = list.map((m: unknown, i): ChatMessage => {
    if (!isObject(m)) throw bad(`messages[${i}]`, `messages[${i}] must be an object with role and content`);
    const role = m.role === 'developer' ? 'system' : m.role;
    if (role !== 'system' && role !== 'user' && role !== 'assistant') {
      throw bad(`messages[${i}].role`, `messages[${i}].role must be system, developer, user or assistant (got ${JSON.stringify(m.role)})`);
    }
    let content = m.content;
    if (Array.isArray(content)) {
      if (!content.every((c) => isObject(c) && c.type === 'text' && typeof c.text === 'string')) {
        throw bad(`messages[${i}].content`, `messages[${i}].content: only {type: "text", text} parts are supported`);
      }
      content = content.map((c) => (c as { text: string }).text).join('');
    }
    if (typeof content !== 'string') throw bad(`messages[${i}].content`, `messages[${i}].content must be a string`);
    return { role, content };
  });
  return { ...s, messages };
}
