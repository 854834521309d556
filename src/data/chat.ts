/**
 * Chat templates: conversations (`messages`) → text, plus where the assistant's words are in it.
 *
 * A template renders a list of {@link ChatMessage}s to one string and splits that string into
 * {@link ChatSegment}s, each flagged when it is assistant content followed by its end-of-turn token
 * (the part a model should learn to produce). Tokenizing segment by segment (`encodeChat` in
 * `tokenize.ts`) turns those flags into an exact token mask — no guessing from token offsets.
 *
 * Two kinds of template:
 * - {@link chatml}: ChatML (`<|im_start|>{role}\n{content}<|im_end|>\n` per turn). Segments are known by
 *   construction, and message content is marked `literal` so a user typing "<|im_end|>" cannot forge
 *   a turn boundary.
 * - {@link jinjaTemplate}: a Hugging Face `chat_template` (Jinja) run through the optional package
 *   `@huggingface/jinja`. Spans are found by rendering incrementally (see {@link jinjaTemplate}).
 */
import { withDefaults } from '../util/options';

/** Who speaks a turn. */
export type ChatRole = 'system' | 'user' | 'assistant' | 'tool';

/**
 * One turn of a conversation (HF's `messages` rows). Other fields (`tool_calls`, `name`, …) reach Jinja
 * templates unchanged; {@link chatml} renders `content` only.
 */
export interface ChatMessage {
  role: ChatRole;
  content: string;
  [field: string]: unknown;
}

/** A piece of rendered text. Concatenating a chat's segments gives its `text`. */
export interface ChatSegment {
  readonly text: string;
  /** Assistant content or the end-of-turn token right after it: what assistant-only loss counts. */
  readonly assistant: boolean;
  /** Message content that must be tokenized as plain text (special-token strings inside stay text). */
  readonly literal: boolean;
  /** Index of the assistant message an `assistant` segment belongs to; -1 for other text. */
  readonly message: number;
}

/** Characters [start, end) of `text` holding assistant message `message`'s content and end-of-turn token. */
export interface CharSpan {
  readonly start: number;
  readonly end: number;
  /** Index of the assistant message in the rendered list. */
  readonly message: number;
}

/** A rendered conversation. */
export interface RenderedChat {
  readonly text: string;
  readonly segments: readonly ChatSegment[];
  readonly assistantSpans: readonly CharSpan[];
}

/** Options of {@link ChatTemplate.render}. */
export interface RenderOptions {
  /** Append the header of a new assistant turn (`<|im_start|>assistant\n`), for generation. Default false. */
  addGenerationPrompt?: boolean;
}

/** Renders conversations; see {@link chatml} and {@link jinjaTemplate}. */
export interface ChatTemplate {
  /** A short description for error messages, e.g. "chatml". */
  readonly name: string;
  /** The string that closes an assistant turn (counted with the assistant's content), if known. */
  readonly endOfTurn?: string;
  render(messages: readonly ChatMessage[], options?: RenderOptions): RenderedChat;
}

const roles: readonly ChatRole[] = ['system', 'user', 'assistant', 'tool'];

/**
 * Checks that `messages` is a list of `{role, content}` with a known role and string content (an
 * assistant turn with `tool_calls` may leave content out: it becomes ''); errors name the index.
 * Returns shallow copies, so templates never see the caller's objects.
 *
 * @example
 * validateMessages([{ role: 'user', content: 'Hi' }]);
 */
export function validateMessages(messages: unknown, source = 'messages'): ChatMessage[] {
  if (!Array.isArray(messages)) throw new TypeError(`${source}: expected an array of {role, content}, got ${typeof messages}`);
  return messages.map((m: unknown, i) => {
    if (typeof m !== 'object' || m === null || Array.isArray(m)) throw new TypeError(`${source}[${i}]: expected an object with role and content`);
    const msg = m as Record<string, unknown>;
    if (typeof msg.role !== 'string' || !roles.includes(msg.role as ChatRole)) {
      throw new TypeError(`${source}[${i}].role must be one of ${roles.join(', ')} (got ${JSON.stringify(msg.role)})`);
    }
    const toolCall = msg.role === 'assistant' && Array.isArray(msg.tool_calls) && (msg.content === undefined || msg.content === null);
    if (typeof msg.content !== 'string' && !toolCall) throw new TypeError(`${source}[${i}].content must be a string (got ${msg.content === null ? 'null' : typeof msg.content})`);
    return { ...msg, role: msg.role as ChatRole, content: toolCall ? '' : (msg.content as string) };
  });
}

/** Merges neighbouring segments with the same flags and message and drops empty ones (canonical output). */
function normalize(segments: ChatSegment[]): ChatSegment[] {
  const out: ChatSegment[] = [];
  for (const s of segments) {
    if (s.text === '') continue;
    const last = out[out.length - 1];
    if (last && last.assistant === s.assistant && last.literal === s.literal && last.message === s.message) out[out.length - 1] = { ...last, text: last.text + s.text };
    else out.push(s);
  }
  return out;
}

function rendered(segments: ChatSegment[]): RenderedChat {
  const segs = normalize(segments).map((s) => Object.freeze(s));
  const spans: CharSpan[] = [];
  let pos = 0;
  for (const s of segs) {
    const last = spans[spans.length - 1];
    // A turn's content and its end-of-turn token are separate segments (literal vs markup): one span.
    if (s.assistant && last && last.message === s.message && last.end === pos) spans[spans.length - 1] = { ...last, end: pos + s.text.length };
    else if (s.assistant) spans.push({ start: pos, end: pos + s.text.length, message: s.message });
    pos += s.text.length;
  }
  return Object.freeze({
    text: segs.map((s) => s.text).join(''),
    segments: Object.freeze(segs),
    assistantSpans: Object.freeze(spans.map((x) => Object.freeze(x))),
  });
}

/** Turn delimiters of {@link chatml}. */
export interface ChatmlOptions {
  imStart: string;
  imEnd: string;
}

/**
 * Default ChatML delimiters, as the project's trained tokenizers have them. Frozen.
 *
 * @example
 * chatml({ ...chatmlDefaults, imEnd: '<|end|>' });
 */
export const chatmlDefaults: Readonly<ChatmlOptions> = Object.freeze({ imStart: '<|im_start|>', imEnd: '<|im_end|>' });

/**
 * The ChatML template: `<|im_start|>{role}\n{content}<|im_end|>\n` per turn, and `<|im_start|>assistant\n`
 * as generation prompt. Assistant spans are the content plus `<|im_end|>` (not the newline after it,
 * which generation never produces since it stops at `<|im_end|>`).
 *
 * @example
 * const chat = chatml().render([{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello!' }]);
 * chat.text; // '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n'
 * chat.text.slice(chat.assistantSpans[0].start, chat.assistantSpans[0].end); // 'Hello!<|im_end|>'
 */
export function chatml(options: Partial<ChatmlOptions> = {}): ChatTemplate {
  const { imStart, imEnd } = withDefaults(chatmlDefaults, options, 'chatml');
  return Object.freeze({
    name: 'chatml',
    endOfTurn: imEnd,
    render(list: readonly ChatMessage[], opts: RenderOptions = {}): RenderedChat {
      const messages = validateMessages(list);
      const bad = messages.findIndex((m) => m.tool_calls !== undefined);
      if (bad >= 0) throw new Error(`chatml: messages[${bad}] has tool_calls, which ChatML has no syntax for; use the model's Jinja chat template`);
      const segs: ChatSegment[] = [];
      const markup = (text: string, message = -1) => segs.push({ text, assistant: message >= 0, literal: false, message });
      messages.forEach((m, i) => {
        const turn = m.role === 'assistant' ? i : -1;
        markup(`${imStart}${m.role}\n`);
        segs.push({ text: m.content, assistant: turn >= 0, literal: true, message: turn });
        markup(imEnd, turn);
        markup('\n');
      });
      if (opts.addGenerationPrompt) markup(`${imStart}assistant\n`);
      return rendered(segs);
    },
  });
}

/**
 * {@link chatml} as a Hugging Face Jinja `chat_template` (written to `tokenizer_config.json`, so
 * `transformers`' `apply_chat_template` and llama.cpp render the same text). Assistant content and its
 * `<|im_end|>` sit inside `{% generation %}` … `{% endgeneration %}`: transformers'
 * `return_assistant_tokens_mask` (what TRL's `assistant_only_loss` uses) masks exactly those characters,
 * the same tokens {@link chatml}'s assistant spans give; without the markers it masks nothing.
 * `generationMarkers: false` leaves them out (same rendered text).
 *
 * @example
 * jinjaTemplate(chatmlJinja()).render(messages).text === chatmlTemplate.render(messages).text;
 */
export function chatmlJinja(options: Partial<ChatmlOptions> = {}, generationMarkers = true): string {
  const { imStart, imEnd } = withDefaults(chatmlDefaults, options, 'chatmlJinja');
  // Inference-only consumers (GGUF for llama.cpp, whose Jinja engine may not know the tag) can leave them out.
  const [gen, endGen] = generationMarkers ? ['{% generation %}', '{% endgeneration %}'] : ['', ''];
  return `{% for message in messages %}{% if message['role'] == 'assistant' %}`
    + `{{ '${imStart}assistant\n' }}${gen}{{ message['content'] + '${imEnd}' }}${endGen}{{ '\n' }}`
    + `{% else %}{{ '${imStart}' + message['role'] + '\n' + message['content'] + '${imEnd}' + '\n' }}{% endif %}{% endfor %}`
    + `{% if add_generation_prompt %}{{ '${imStart}assistant\n' }}{% endif %}`;
}

/** A `{% generation %}` / `{% endgeneration %}` tag with its whitespace-control dashes (TRL's `has_generation_markers` pattern). */
const generationTag = /\{%(-?)\s*(end)?generation\s*(-?)%\}/g;
/** Private-use characters that mark where a generation block's output starts and ends while rendering. */
const genOpen = '\uE000';
const genClose = '\uE001';

/**
 * Character spans of the `{% generation %}` blocks in a rendered text whose tags were turned into
 * {@link genOpen}/{@link genClose} marks (transformers' `AssistantTracker` records the same spans), and the
 * text without the marks. Undefined when the marks do not pair up.
 */
function generationSpans(marked: string): { text: string; spans: [number, number][] } | undefined {
  let text = '';
  const spans: [number, number][] = [];
  let open = -1;
  for (const ch of marked) {
    if (ch === genOpen) {
      if (open >= 0) return undefined;
      open = text.length;
    } else if (ch === genClose) {
      if (open < 0) return undefined;
      spans.push([open, text.length]);
      open = -1;
    } else text += ch;
  }
  return open >= 0 ? undefined : { text, spans };
}

/**
 * The default template: {@link chatml} with {@link chatmlDefaults}.
 *
 * @example
 * chatmlTemplate.render(messages, { addGenerationPrompt: true }).text; // ends with '<|im_start|>assistant\n'
 */
export const chatmlTemplate: ChatTemplate = chatml();

/** What {@link jinjaTemplate} needs from `@huggingface/jinja`. */
export interface JinjaModule {
  Template: new (source: string) => { render(items?: Record<string, unknown>): string };
}

/**
 * Loads the optional peer `@huggingface/jinja` (a guarded require, so the rest of tunelab works without
 * it). `load` is replaceable for tests.
 *
 * @example
 * const { Template } = loadJinja();
 */
export function loadJinja(load: (id: string) => unknown = require): JinjaModule {
  let mod: unknown;
  try {
    mod = load('@huggingface/jinja');
  } catch (e) {
    const code = (e as { code?: unknown })?.code;
    if (code === 'MODULE_NOT_FOUND' || code === 'ERR_MODULE_NOT_FOUND') {
      throw new Error('Jinja chat templates need the optional package @huggingface/jinja (npm install @huggingface/jinja); the built-in chatml template works without it', { cause: e });
    }
    throw e;
  }
  if (typeof (mod as Partial<JinjaModule>)?.Template !== 'function') throw new Error('@huggingface/jinja: the installed package has no Template class');
  return mod as JinjaModule;
}

/** Options of {@link jinjaTemplate}. */
export interface JinjaTemplateOptions {
  /** Value of `bos_token` in the template. Default ''. */
  bosToken: string;
  /** Value of `eos_token` in the template. Default ''. */
  eosToken: string;
  /**
   * The string closing an assistant turn. Default: `<|im_end|>` when the template mentions it, else
   * `eosToken` when set, else none (then a span is the whole rendered turn minus trailing whitespace).
   */
  endOfTurn?: string;
  /** Name for error messages. Default 'jinja chat template'. */
  name: string;
}

/**
 * Defaults of {@link jinjaTemplate}. Frozen.
 *
 * @example
 * jinjaTemplate(source, { ...jinjaTemplateDefaults, bosToken: '<s>', eosToken: '</s>' });
 */
export const jinjaTemplateDefaults: Readonly<JinjaTemplateOptions> = Object.freeze({ bosToken: '', eosToken: '', name: 'jinja chat template' });

/**
 * A Hugging Face chat template (Jinja source, as in `tokenizer_config.json`'s `chat_template`), rendered
 * with `Template(source).render({messages, add_generation_prompt, bos_token, eos_token})`.
 *
 * A template with `{% generation %}` blocks (TRL's training templates, {@link chatmlJinja}) gets its
 * assistant spans from them, as transformers' `return_assistant_tokens_mask` does: the k-th block is the
 * k-th assistant message's span. Otherwise spans are found by rendering incrementally: for assistant message i, render messages[0..i)
 * with the generation prompt (P) and messages[0..i] without it (Q). The turn's content starts at
 * P.length (the generation prompt is exactly the header the template writes before an assistant turn)
 * and runs through the last `endOfTurn` in Q's tail. This needs a prefix-stable template: P must be a
 * prefix of Q and Q of the full rendering. Templates that render earlier turns differently once later
 * ones exist (e.g. ones that drop past reasoning) fail with an error naming the message. Unlike {@link chatml}, special-token strings inside
 * content are parsed as special tokens, as `apply_chat_template` does.
 *
 * @example
 * const t = jinjaTemplate(config.chat_template, { ...jinjaTemplateDefaults, eosToken: '</s>' });
 * t.render(messages, { addGenerationPrompt: true }).text;
 */
export function jinjaTemplate(source: string, options: Partial<JinjaTemplateOptions> = {}): ChatTemplate {
  if (typeof source !== 'string' || source === '') throw new TypeError('jinjaTemplate: source must be a non-empty template string');
  const opts = withDefaults(jinjaTemplateDefaults, options, 'jinjaTemplate', ['endOfTurn']);
  const { Template } = loadJinja();
  let template: InstanceType<JinjaModule['Template']>;
  try {
    template = new Template(source);
  } catch (e) {
    throw new Error(`${opts.name}: cannot parse: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  const endOfTurn = opts.endOfTurn ?? (source.includes('<|im_end|>') ? '<|im_end|>' : opts.eosToken || undefined);
  // The same template with each generation tag turned into an output mark (same whitespace control).
  let marked: InstanceType<JinjaModule['Template']> | undefined;
  if (new RegExp(generationTag.source).test(source)) {
    try {
      marked = new Template(source.replace(generationTag, (_, l: string, end: string | undefined, r: string) => `{{${l} '${end ? genClose : genOpen}' ${r}}}`));
    } catch (e) {
      throw new Error(`${opts.name}: cannot parse its {% generation %} blocks: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
  }
  const run = (messages: readonly ChatMessage[], addGenerationPrompt: boolean, t = template): string => {
    try {
      // Copies: the template must not see (or mutate) the caller's objects.
      return t.render({
        messages: messages.map((m) => ({ ...m })),
        add_generation_prompt: addGenerationPrompt,
        bos_token: opts.bosToken,
        eos_token: opts.eosToken,
      });
    } catch (e) {
      throw new Error(`${opts.name}: rendering failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
  };
  return Object.freeze({
    name: opts.name,
    endOfTurn,
    render(list: readonly ChatMessage[], renderOptions: RenderOptions = {}): RenderedChat {
      const messages = validateMessages(list);
      const full = run(messages, renderOptions.addGenerationPrompt === true);
      const segs: ChatSegment[] = [];
      let pos = 0;
      const assistants = messages.flatMap((m, i) => (m.role === 'assistant' ? [i] : []));
      const hasMark = messages.some((m) => {
        const json = JSON.stringify(m);
        return json.includes(genOpen) || json.includes(genClose);
      });
      const tracked = marked && !hasMark ? generationSpans(run(messages, renderOptions.addGenerationPrompt === true, marked)) : undefined;
      if (marked && !hasMark && tracked?.text !== full) throw new Error(`${opts.name}: its {% generation %} blocks do not pair up or change the rendered text`);
      if (tracked) {
        if (tracked.spans.length !== assistants.length) {
          throw new Error(`${opts.name}: renders ${tracked.spans.length} {% generation %} blocks for ${assistants.length} assistant messages; one block per assistant message is needed to assign spans`);
        }
        tracked.spans.forEach(([start, end], k) => {
          segs.push({ text: full.slice(pos, start), assistant: false, literal: false, message: -1 });
          segs.push({ text: full.slice(start, end), assistant: true, literal: false, message: assistants[k] });
          pos = end;
        });
        segs.push({ text: full.slice(pos), assistant: false, literal: false, message: -1 });
        return rendered(segs);
      }
      messages.forEach((m, i) => {
        if (m.role !== 'assistant') return;
        const before = run(messages.slice(0, i), true);
        const upTo = run(messages.slice(0, i + 1), false);
        if (!upTo.startsWith(before) || !full.startsWith(upTo) || before.length < pos) {
          throw new Error(`${opts.name}: not prefix-stable at message ${i}: rendering messages[0..${i}) with the generation prompt ` +
            `is not a prefix of rendering messages[0..${i}], or that is not a prefix of the whole conversation, so assistant spans cannot be located`);
        }
        const tail = upTo.slice(before.length);
        const cut = endOfTurn ? tail.lastIndexOf(endOfTurn) : -1;
        const end = before.length + (cut >= 0 ? cut + endOfTurn!.length : tail.trimEnd().length);
        segs.push({ text: full.slice(pos, before.length), assistant: false, literal: false, message: -1 });
        segs.push({ text: full.slice(before.length, end), assistant: true, literal: false, message: i });
        pos = end;
      });
      segs.push({ text: full.slice(pos), assistant: false, literal: false, message: -1 });
      return rendered(segs);
    },
  });
}

/** The fields of a HF `tokenizer_config.json` that chat templating reads. */
export interface TokenizerConfigJson {
  chat_template?: string | readonly { name: string; template: string }[];
  bos_token?: string | { content: string } | null;
  eos_token?: string | { content: string } | null;
}

function tokenString(t: TokenizerConfigJson['bos_token']): string {
  return typeof t === 'string' ? t : t && typeof t.content === 'string' ? t.content : '';
}

/**
 * The chat template of a parsed HF `tokenizer_config.json` (its `chat_template`, or the entry named
 * `name` — default "default" — when it lists several), with its `bos_token`/`eos_token`.
 *
 * @example
 * const config = JSON.parse(fs.readFileSync('models/x/tokenizer_config.json', 'utf8'));
 * const template = chatTemplateFromConfig(config, 'models/x/tokenizer_config.json');
 */
export function chatTemplateFromConfig(config: TokenizerConfigJson, source = 'tokenizer_config.json', name = 'default'): ChatTemplate {
  const t = config?.chat_template;
  let src: string | undefined;
  if (typeof t === 'string') src = t;
  else if (Array.isArray(t)) src = t.find((e) => e?.name === name)?.template;
  if (typeof src !== 'string' || src === '') {
    throw new Error(`${source}: no chat_template${Array.isArray(t) ? ` named "${name}" (have: ${t.map((e) => e?.name).join(', ')})` : ''}`);
  }
  return jinjaTemplate(src, { bosToken: tokenString(config.bos_token), eosToken: tokenString(config.eos_token), name: `${source} chat_template` });
}
