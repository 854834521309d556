/**
 * The project's tokenizer: a Hugging Face `tokenizer.json` (BPE) applied through @huggingface/tokenizers.
 *
 * The wrapper adds what the library leaves out: validation with errors naming the file, exact
 * round-trips (the library's default "clean up tokenization spaces" rewrites " ." to "." on decode,
 * and it throws on an empty id list), special-token roles, and atomic saving.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { writeJsonAtomic } from '../io/atomic';
import { validateTokenizerJson, type TokenizerJson } from './json';
import { resolveBpeOptions, specialRoleOfOption, trainBpe, type BpeOptions } from './train';
import { inspect } from 'util';
import { mimeBundleKey } from '../viz/display';
import { summaryBundle } from '../viz/summary';

/** The jobs a special token can have. `imStart`/`imEnd` are ChatML's turn delimiters. */
export type SpecialTokenRole = 'bos' | 'eos' | 'pad' | 'unk' | 'imStart' | 'imEnd';

/** A token string with its id. */
export interface SpecialToken {
  readonly token: string;
  readonly id: number;
}

/** Special tokens by role (absent when the tokenizer has none), plus every special added token. */
export type SpecialTokens = { readonly [R in SpecialTokenRole]?: SpecialToken } & {
  /** All added tokens flagged special, by id. */
  readonly all: readonly SpecialToken[];
};

/** Options of {@link Tokenizer.encode}. */
export interface EncodeOptions {
  /** Prepend the bos token (GPT-2-style files: eos). Default false. */
  addBos?: boolean;
  /** Append the eos token. Default false. */
  addEos?: boolean;
  /**
   * Whether special-token strings inside `text` become their special ids (default true, as in HF).
   * Set false for untrusted text, so that e.g. a literal "<|im_end|>" is encoded as ordinary bytes.
   */
  parseSpecial?: boolean;
}

/** Options of {@link Tokenizer.decode}. */
export interface DecodeOptions {
  /** Drop special tokens (eos, pad, …) from the output. Default false. */
  skipSpecialTokens?: boolean;
}

/** Options of {@link Tokenizer.load} / {@link Tokenizer.fromJSON}. */
export interface LoadOptions {
  /**
   * Which token plays which role, for names the built-in guesses miss (a tokenizer.json does not
   * record roles). `null` means "this tokenizer has none" and also disables the eos fallback.
   */
  specialTokens?: { [R in SpecialTokenRole]?: string | null };
}

/** Well-known spellings tried, in order, when a role is not given explicitly. */
const knownNames: Record<SpecialTokenRole, readonly string[]> = {
  eos: ['<|endoftext|>', '</s>', '<eos>', '<|end_of_text|>'],
  bos: ['<|startoftext|>', '<s>', '<bos>', '<|begin_of_text|>'],
  pad: ['<|pad|>', '<pad>', '[PAD]', '<|padding|>'],
  unk: ['<unk>', '[UNK]', '<|unk|>'],
  imStart: ['<|im_start|>'],
  imEnd: ['<|im_end|>'],
};
const roles = Object.keys(knownNames) as SpecialTokenRole[];

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * A BPE tokenizer backed by a Hugging Face `tokenizer.json`.
 *
 * @example
 * const tok = Tokenizer.train(texts, { vocabSize: 1024 });
 * const ids = tok.encode('Hello world', { addEos: true });
 * tok.decode(ids, { skipSpecialTokens: true }); // 'Hello world'
 * tok.save('runs/tok/tokenizer.json');
 * const same = Tokenizer.load('runs/tok/tokenizer.json');
 */
export class Tokenizer {
  /** One more than the largest id, i.e. the rows an embedding matrix needs. */
  readonly vocabSize: number;
  /** Special tokens by role. GPT-2's file has only `<|endoftext|>`, which serves as bos, eos and pad. */
  readonly specialTokens: SpecialTokens;
  /** Where this tokenizer came from (a file path, or a description); used in error messages. */
  readonly source: string;

  private readonly json: TokenizerJson;
  private readonly hf: HfTokenizer;

  private constructor(json: TokenizerJson, source: string, options: LoadOptions) {
    this.json = json;
    this.source = source;
    try {
      // clean_up_tokenization_spaces defaults to true in the library and breaks exact round-trips.
      this.hf = new HfTokenizer(json, { clean_up_tokenization_spaces: false });
    } catch (e) {
      throw new Error(`${source}: @huggingface/tokenizers cannot use it: ${message(e)}`, { cause: e });
    }
    let max = -1;
    for (const id of Object.values(json.model.vocab)) if (id > max) max = id;
    for (const t of json.added_tokens) if (t.id > max) max = t.id;
    this.vocabSize = max + 1;
    this.specialTokens = this.resolveRoles(options);
  }

  private resolveRoles(options: LoadOptions): SpecialTokens {
    const explicit = options.specialTokens ?? {};
    const added = new Map(this.json.added_tokens.map((t) => [t.content, t.id]));
    const found: { [R in SpecialTokenRole]?: SpecialToken } = {};
    for (const role of roles) {
      const name = explicit[role];
      if (name === null) continue;
      if (typeof name === 'string') {
        const id = this.tokenToId(name);
        if (id === undefined) throw new Error(`${this.source}: specialTokens.${role} ${JSON.stringify(name)} is not in the vocabulary`);
        found[role] = Object.freeze({ token: name, id });
        continue;
      }
      const known = knownNames[role].find((n) => added.has(n));
      if (known !== undefined) found[role] = Object.freeze({ token: known, id: added.get(known)! });
    }
    if (!found.unk && explicit.unk !== null && this.json.model.unk_token !== null) {
      const id = this.tokenToId(this.json.model.unk_token);
      if (id !== undefined) found.unk = Object.freeze({ token: this.json.model.unk_token, id });
    }
    // GPT-2 convention: one end-of-text token also starts and pads sequences.
    if (!found.bos && explicit.bos !== null && found.eos) found.bos = found.eos;
    if (!found.pad && explicit.pad !== null && found.eos) found.pad = found.eos;
    const all = this.json.added_tokens
      .filter((t) => t.special)
      .map((t) => Object.freeze({ token: t.content, id: t.id }))
      .sort((x, y) => x.id - y.id);
    return Object.freeze({ ...found, all: Object.freeze(all) });
  }

  /**
   * Text → ids. With a byte-level tokenizer (trained here, GPT-2) any string round-trips through
   * {@link decode} exactly, except lone UTF-16 surrogates (not representable in UTF-8; they become U+FFFD).
   *
   * @example
   * tok.encode('Hi<|endoftext|>');              // [..., eosId]: special strings are parsed
   * tok.encode('Hi', { addBos: true, addEos: true });
   */
  encode(text: string, options: EncodeOptions = {}): number[] {
    if (typeof text !== 'string') throw new TypeError(`encode: text must be a string, got ${typeof text}`);
    const ids = text === '' ? [] : options.parseSpecial === false ? this.encodePlain(text) : this.hf.encode(text, { add_special_tokens: false }).ids;
    for (let i = 0; i < ids.length; i++) {
      // The library yields undefined (or drops the piece) for tokens the vocab lacks; never pass that on.
      if (ids[i] === undefined) throw new Error(`encode: ${this.source} has no token for part of ${JSON.stringify(text.slice(0, 50))}`);
    }
    if (options.addBos) ids.unshift(this.required('bos', 'addBos').id);
    if (options.addEos) ids.push(this.required('eos', 'addEos').id);
    return ids;
  }

  /** Encodes without the added-token splitter, so special strings in `text` stay ordinary text. */
  private encodePlain(text: string): number[] {
    const { normalizer, pre_tokenizer, model } = this.hf;
    const normalized = normalizer ? normalizer(text) : text;
    const pieces = pre_tokenizer ? pre_tokenizer(normalized) : [normalized];
    const tokens = model ? model(pieces) : pieces;
    // Cast is safe: undefined ids are rejected by the caller.
    return tokens.map((t) => this.hf.token_to_id(t) as number);
  }

  /** The printed form (`console.log(tok)`, a notebook cell's value): source, vocabulary size and special tokens. */
  [mimeBundleKey](): { 'text/plain': string; 'text/html': string } {
    const specials = this.specialTokens.all.map((t) => `${t.token} (${t.id})`).join(', ');
    return summaryBundle('Tokenizer (byte-level BPE)', [
      ['source', this.source],
      ['vocabulary', this.vocabSize.toLocaleString('en-US')],
      ['special tokens', specials || 'none'],
    ]);
  }

  [inspect.custom](): string {
    return this[mimeBundleKey]()['text/plain'];
  }

  private required(role: SpecialTokenRole, option: string): SpecialToken {
    const t = this.specialTokens[role];
    if (!t) throw new Error(`encode: ${option} requested but ${this.source} has no ${role} token`);
    return t;
  }

  /**
   * Ids → text. Ids outside the vocabulary throw a RangeError. A slice that cuts a multi-byte
   * character decodes the partial bytes as U+FFFD.
   *
   * @example
   * tok.decode(tok.encode('naïve 🙂')); // 'naïve 🙂'
   * tok.decode([...ids, eosId], { skipSpecialTokens: true });
   */
  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    const list = Array.from(ids);
    for (let i = 0; i < list.length; i++) {
      if (this.idToToken(list[i]) === undefined) {
        throw new RangeError(`decode: ids[${i}] = ${list[i]} is not a token id of ${this.source} (vocabSize ${this.vocabSize})`);
      }
    }
    // The library throws on an empty list.
    if (list.length === 0) return '';
    return this.hf.decode(list, { skip_special_tokens: options.skipSpecialTokens === true, clean_up_tokenization_spaces: false });
  }

  /** The id of a token string (byte-level spelling, e.g. "Ġworld"), or undefined. */
  tokenToId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }

  /** The token string of an id, or undefined when the id is not in the vocabulary. */
  idToToken(id: number): string | undefined {
    return Number.isInteger(id) && id >= 0 ? this.hf.id_to_token(id) : undefined;
  }

  /** The complete HF `tokenizer.json` object (a copy; also what `JSON.stringify(tokenizer)` writes). */
  toJSON(): TokenizerJson {
    return structuredClone(this.json);
  }

  /**
   * Writes `tokenizer.json` atomically (see `writeJsonAtomic`), so a crash never leaves a half-written
   * tokenizer. Creates the parent folder.
   *
   * @example
   * tok.save('runs/demo/tokenizer.json');
   */
  save(file: string): void {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    writeJsonAtomic(file, this.json);
  }

  /**
   * Reads a HF `tokenizer.json` (BPE). Errors name the file and the problem.
   *
   * @example
   * const gpt2 = Tokenizer.load('models/gpt2/tokenizer.json');
   * const custom = Tokenizer.load('tok.json', { specialTokens: { eos: '[END]' } });
   */
  static load(file: string, options: LoadOptions = {}): Tokenizer {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (e) {
      throw new Error(`${file}: cannot read tokenizer file: ${message(e)}`, { cause: e });
    }
    let obj: unknown;
    try {
      obj = JSON.parse(text.replace(/^\uFEFF/, ''));
    } catch (e) {
      throw new Error(`${file}: not valid JSON: ${message(e)}`, { cause: e });
    }
    return new Tokenizer(validateTokenizerJson(obj, file), file, options);
  }

  /**
   * Builds a tokenizer from a parsed `tokenizer.json` object (copied, so later changes to `obj` do not
   * leak in). `source` names it in error messages.
   *
   * @example
   * const tok = Tokenizer.fromJSON(JSON.parse(text), 'tokenizer.json from the hub');
   */
  static fromJSON(obj: unknown, source = 'tokenizer JSON', options: LoadOptions = {}): Tokenizer {
    let copy: unknown;
    try {
      copy = structuredClone(obj);
    } catch (e) {
      throw new Error(`${source}: not a plain JSON value: ${message(e)}`, { cause: e });
    }
    return new Tokenizer(validateTokenizerJson(copy, source), source, options);
  }

  /**
   * Trains a byte-level BPE on `texts` (see {@link trainBpe} for the id layout and tie rule).
   *
   * @example
   * const tok = Tokenizer.train(texts, { ...bpeDefaults, vocabSize: 2048 });
   * tok.specialTokens.eos; // { token: '<|endoftext|>', id: 0 }
   */
  static train(texts: readonly string[], options: Partial<BpeOptions> = {}): Tokenizer {
    const json = trainBpe(texts, options);
    const { opts } = resolveBpeOptions(options);
    const specialTokens: LoadOptions['specialTokens'] = {};
    for (const [option, role] of Object.entries(specialRoleOfOption) as [keyof typeof specialRoleOfOption, SpecialTokenRole][]) {
      const name = opts[option];
      if (name !== null) specialTokens[role] = name;
    }
    return new Tokenizer(json, 'trained tokenizer', { specialTokens });
  }
}
