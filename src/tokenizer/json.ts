/**
 * The Hugging Face `tokenizer.json` format: the types tunelab reads and writes, the builder for
 * byte-level BPE files, and the validator that turns malformed files into errors naming the file.
 *
 * Layout follows what the Rust `tokenizers` crate serialises (key order included), so files written
 * here load in Python `tokenizers`/`transformers` as well as in @huggingface/tokenizers.
 */
import { byteToUnicode } from './bytes';

/** A pipeline component (`normalizer`, `pre_tokenizer`, `post_processor`, `decoder`): a tagged object. */
export type ComponentJson = { type: string; [key: string]: unknown };

/** One entry of `added_tokens`. */
export type AddedTokenJson = {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
};

/** The `model` section of a BPE tokenizer. `merges` rank is the array index. */
export type BpeModelJson = {
  type: 'BPE';
  dropout: number | null;
  unk_token: string | null;
  continuing_subword_prefix: string | null;
  end_of_word_suffix: string | null;
  fuse_unk: boolean;
  byte_fallback: boolean;
  ignore_merges: boolean;
  vocab: Record<string, number>;
  /** `"left right"` strings (tokenizers < 0.20 style) or `[left, right]` pairs (newer style). */
  merges: string[] | [string, string][];
};

/** A whole `tokenizer.json` with a BPE model. */
export type TokenizerJson = {
  version: string;
  truncation: unknown;
  padding: unknown;
  added_tokens: AddedTokenJson[];
  normalizer: ComponentJson | null;
  pre_tokenizer: ComponentJson | null;
  post_processor: ComponentJson | null;
  decoder: ComponentJson | null;
  model: BpeModelJson;
};

/** A special token with its id, in the order it should appear in `added_tokens`. */
export interface IdToken {
  token: string;
  id: number;
}

/** The ByteLevel settings of a GPT-2-style tokenizer (no prefix space, GPT-2 regex). */
function byteLevel(): ComponentJson {
  return { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
}

/**
 * Builds a complete byte-level BPE `tokenizer.json` from a vocab, merges and special tokens.
 * Special tokens must already be in `vocab` with the given ids (HF keeps them in both places).
 *
 * @example
 * const json = byteLevelTokenizerJson({ ...vocab, '<|endoftext|>': 300 }, ['Ġ t'], [{ token: '<|endoftext|>', id: 300 }]);
 */
export function byteLevelTokenizerJson(
  vocab: Record<string, number>,
  merges: string[],
  specials: readonly IdToken[],
): TokenizerJson {
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: specials.map(({ token, id }) => ({
      id,
      content: token,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: byteLevel(),
    post_processor: byteLevel(),
    decoder: byteLevel(),
    model: {
      ...bpeModelDefaults,
      vocab,
      merges,
    },
  };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'string' ? `the string ${JSON.stringify(v).slice(0, 40)}` : `a ${typeof v}`;
}

function isId(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** True when a pre-tokenizer (possibly inside a Sequence) is ByteLevel, i.e. the vocab must cover all bytes. */
function usesByteLevel(c: unknown): boolean {
  if (!isObject(c)) return false;
  if (c.type === 'ByteLevel') return true;
  return c.type === 'Sequence' && Array.isArray(c.pretokenizers) && c.pretokenizers.some(usesByteLevel);
}

/**
 * Splits one merge entry into its two tokens, or returns undefined when it is malformed.
 *
 * @example
 * mergePair('Ġ t');        // ['Ġ', 't']
 * mergePair(['Ġ', 't']);   // ['Ġ', 't']
 * mergePair('a b c');      // undefined
 */
export function mergePair(m: unknown): [string, string] | undefined {
  if (typeof m === 'string') {
    // Rust tokenizers splits on ' ' and demands exactly two parts.
    const parts = m.split(' ');
    return parts.length === 2 && parts[0] !== '' && parts[1] !== '' ? [parts[0], parts[1]] : undefined;
  }
  if (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string' && m[0] && m[1]) {
    return [m[0], m[1]];
  }
  return undefined;
}

const bpeModelDefaults = {
  type: 'BPE',
  dropout: null,
  unk_token: null,
  continuing_subword_prefix: null,
  end_of_word_suffix: null,
  fuse_unk: false,
  byte_fallback: false,
  ignore_merges: false,
} as const;

/**
 * Checks a parsed `tokenizer.json` and returns it with absent optional keys filled with their HF
 * defaults (null / false / []), so the result has every key {@link TokenizerJson} promises.
 * Throws `Error("<source>: <problem>")` on the first problem found.
 *
 * @example
 * const json = validateTokenizerJson(JSON.parse(text), 'models/gpt2/tokenizer.json');
 */
export function validateTokenizerJson(obj: unknown, source: string): TokenizerJson {
  const fail = (problem: string): never => {
    throw new Error(`${source}: ${problem}`);
  };
  if (!isObject(obj)) return fail(`not a tokenizer.json: expected a JSON object, got ${describe(obj)}`);
  if (!('model' in obj) || obj.model === undefined) return fail('no "model" section');
  const model = obj.model;
  if (!isObject(model)) return fail(`"model" must be an object, got ${describe(model)}`);
  if (model.type === undefined) {
    // Very old files omit the type; a vocab plus merges can only be BPE.
    if (!('merges' in model)) fail('model has no "type" (expected "BPE")');
  } else if (model.type !== 'BPE') {
    fail(`model type ${JSON.stringify(model.type)} is not supported (only "BPE")`);
  }

  if (model.vocab === undefined) fail('model has no "vocab"');
  if (!isObject(model.vocab)) return fail(`model.vocab must be an object of token → id, got ${describe(model.vocab)}`);
  const vocab = model.vocab;
  const byId = new Map<number, string>();
  for (const [token, id] of Object.entries(vocab)) {
    if (!isId(id)) fail(`model.vocab[${JSON.stringify(token)}] must be a non-negative integer id, got ${describe(id)}`);
    const other = byId.get(id as number);
    if (other !== undefined) fail(`model.vocab: id ${id} is used by both ${JSON.stringify(other)} and ${JSON.stringify(token)}`);
    byId.set(id as number, token);
  }

  if (model.merges === undefined) fail('model has no "merges"');
  if (!Array.isArray(model.merges)) return fail(`model.merges must be an array, got ${describe(model.merges)}`);
  const merges: unknown[] = model.merges;
  const has = (t: string): boolean => Object.prototype.hasOwnProperty.call(vocab, t);
  for (let i = 0; i < merges.length; i++) {
    const pair = mergePair(merges[i]);
    if (!pair) return fail(`model.merges[${i}] is malformed: expected "left right" or [left, right], got ${JSON.stringify(merges[i])}`);
    // A merge whose pieces or result are missing would make @huggingface/tokenizers drop text silently.
    for (const t of [pair[0], pair[1], pair[0] + pair[1]]) {
      if (!has(t)) fail(`model.merges[${i}] (${JSON.stringify(merges[i])}): token ${JSON.stringify(t)} is not in model.vocab`);
    }
  }

  const added: AddedTokenJson[] = [];
  if (obj.added_tokens !== undefined && obj.added_tokens !== null) {
    if (!Array.isArray(obj.added_tokens)) fail(`"added_tokens" must be an array, got ${describe(obj.added_tokens)}`);
    const seen = new Map<number, string>();
    (obj.added_tokens as unknown[]).forEach((t, i) => {
      if (!isObject(t) || !isId(t.id) || typeof t.content !== 'string' || t.content === '') {
        fail(`added_tokens[${i}] must be an object with an integer "id" and a non-empty string "content"`);
      }
      const tok = t as Record<string, unknown> & { id: number; content: string };
      const vocabId = has(tok.content) ? vocab[tok.content] : undefined;
      if (vocabId !== undefined && vocabId !== tok.id) {
        fail(`added_tokens[${i}] ${JSON.stringify(tok.content)} has id ${tok.id} but model.vocab gives it id ${vocabId}`);
      }
      const owner = byId.get(tok.id);
      if (owner !== undefined && owner !== tok.content) {
        fail(`added_tokens[${i}] ${JSON.stringify(tok.content)} reuses id ${tok.id} of vocab token ${JSON.stringify(owner)}`);
      }
      const dup = seen.get(tok.id);
      if (dup !== undefined) fail(`added_tokens[${i}]: id ${tok.id} is used by both ${JSON.stringify(dup)} and ${JSON.stringify(tok.content)}`);
      seen.set(tok.id, tok.content);
      const special = tok.special === true;
      added.push({
        ...tok,
        id: tok.id,
        content: tok.content,
        single_word: tok.single_word === true,
        lstrip: tok.lstrip === true,
        rstrip: tok.rstrip === true,
        // Same default as HF: added tokens are normalized unless special.
        normalized: typeof tok.normalized === 'boolean' ? tok.normalized : !special,
        special,
      });
    });
  }

  const components = ['normalizer', 'pre_tokenizer', 'post_processor', 'decoder'] as const;
  for (const key of components) {
    const c = obj[key];
    if (c !== undefined && c !== null && !(isObject(c) && typeof c.type === 'string')) {
      fail(`"${key}" must be null or an object with a string "type", got ${describe(c)}`);
    }
  }
  if (usesByteLevel(obj.pre_tokenizer)) {
    for (let b = 0; b < 256; b++) {
      if (!has(byteToUnicode[b])) {
        fail(`model.vocab lacks the byte token ${JSON.stringify(byteToUnicode[b])} (byte 0x${b.toString(16).padStart(2, '0')}); a ByteLevel tokenizer needs all 256`);
      }
    }
  }

  const component = (c: unknown): ComponentJson | null => (isObject(c) ? (c as ComponentJson) : null);
  return {
    ...obj,
    version: typeof obj.version === 'string' ? obj.version : '1.0',
    truncation: obj.truncation ?? null,
    padding: obj.padding ?? null,
    added_tokens: added,
    normalizer: component(obj.normalizer),
    pre_tokenizer: component(obj.pre_tokenizer),
    post_processor: component(obj.post_processor),
    decoder: component(obj.decoder),
    // Defaults first (type leading, as HF writes it) so a complete file keeps its key order.
    model: {
      ...bpeModelDefaults,
      ...model,
      type: 'BPE',
      vocab: vocab as Record<string, number>,
      merges: merges as string[] | [string, string][],
    },
  };
}
