/**
 * GPT-2's byte-level building blocks, shared by the trainer and the GPT-2 converter.
 *
 * Byte-level BPE works on UTF-8 bytes, so every string is representable without an unknown token.
 * Each byte is shown as one printable character (GPT-2's `bytes_to_unicode`) so that vocab and merges
 * stay valid JSON text and never contain a literal space — which is what lets merges be written
 * as `"left right"` strings.
 */

/**
 * GPT-2's byte → character table: printable Latin-1 bytes map to themselves, the rest to U+0100…
 *
 * @example
 * byteToUnicode[0x20]; // 'Ġ' (space)
 * byteToUnicode[0x41]; // 'A'
 */
export const byteToUnicode: readonly string[] = (() => {
  const keep: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) keep.push(b); // '!'..'~'
  for (let b = 0xa1; b <= 0xac; b++) keep.push(b); // '¡'..'¬'
  for (let b = 0xae; b <= 0xff; b++) keep.push(b); // '®'..'ÿ'
  const table = new Array<string>(256);
  for (const b of keep) table[b] = String.fromCharCode(b);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (table[b] === undefined) table[b] = String.fromCharCode(256 + n++);
  }
  return Object.freeze(table);
})();

/**
 * Inverse of {@link byteToUnicode}.
 *
 * @example
 * unicodeToByte.get('Ġ'); // 32
 */
export const unicodeToByte: ReadonlyMap<string, number> = new Map(byteToUnicode.map((c, b) => [c, b]));

/**
 * GPT-2's pre-tokenisation pattern (openai/gpt-2 `encoder.py`), identical to the one the
 * @huggingface/tokenizers ByteLevel pre-tokenizer uses, so training sees the same words encoding does.
 * Global (`g`): use with `String.prototype.match`/`matchAll`, not `exec` loops shared across calls.
 *
 * @example
 * "I'm here".match(gpt2SplitPattern); // ['I', "'m", ' here']
 */
export const gpt2SplitPattern = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/**
 * Splits text into GPT-2 pre-tokens (words with their leading space, digit runs, punctuation runs, spaces).
 *
 * @example
 * preTokenize('Hello  world!'); // ['Hello', ' ', ' world', '!']
 */
export function preTokenize(text: string): string[] {
  return text.match(gpt2SplitPattern) ?? [];
}

const utf8 = new TextEncoder();

/**
 * The byte-level spelling of a string: its UTF-8 bytes through {@link byteToUnicode}.
 *
 * @example
 * toByteLevel(' é'); // 'ĠÃ©'
 */
export function toByteLevel(text: string): string {
  let out = '';
  for (const b of utf8.encode(text)) out += byteToUnicode[b];
  return out;
}
