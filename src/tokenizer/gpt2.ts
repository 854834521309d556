/**
 * GPT-2's classic tokenizer files (`encoder.json` + `vocab.bpe`, as released by OpenAI) → HF tokenizer.json.
 *
 * Both formats hold the same byte-level BPE: encoder.json is the vocab, vocab.bpe lists the merges in
 * rank order after a `#version` line. Vocab entries that are neither bytes nor merge results
 * (GPT-2: only `<|endoftext|>`) become special added tokens.
 */
import * as fs from 'fs';
import { byteToUnicode } from './bytes';
import { byteLevelTokenizerJson, validateTokenizerJson, type IdToken, type TokenizerJson } from './json';
import { Tokenizer, type LoadOptions } from './tokenizer';

/**
 * Builds GPT-2's HF `tokenizer.json` object from the contents of `encoder.json` and `vocab.bpe`.
 *
 * @example
 * const json = gpt2TokenizerJson(JSON.parse(fs.readFileSync('encoder.json', 'utf8')), fs.readFileSync('vocab.bpe', 'utf8'));
 * Tokenizer.fromJSON(json).encode('Hello world!'); // [15496, 995, 0]
 */
export function gpt2TokenizerJson(encoder: Record<string, number>, vocabBpe: string, source = 'encoder.json + vocab.bpe'): TokenizerJson {
  if (typeof encoder !== 'object' || encoder === null || Array.isArray(encoder)) {
    throw new Error(`${source}: encoder must be an object of token → id`);
  }
  if (typeof vocabBpe !== 'string') throw new Error(`${source}: vocab.bpe contents must be a string`);
  const merges: string[] = [];
  const produced = new Set<string>(byteToUnicode);
  vocabBpe.split('\n').forEach((raw, i) => {
    const line = raw.replace(/\r$/, '');
    if ((i === 0 && line.startsWith('#version')) || line.trim() === '') return;
    // Byte-level tokens never contain whitespace (bytes ≤ 0x20 are remapped), so splitting is safe.
    const parts = line.trim().split(/\s+/);
    if (parts.length !== 2) throw new Error(`${source}: vocab.bpe line ${i + 1} must hold two tokens, got ${JSON.stringify(line)}`);
    merges.push(`${parts[0]} ${parts[1]}`);
    produced.add(parts[0] + parts[1]);
  });
  const specials: IdToken[] = Object.entries(encoder)
    .filter(([token]) => !produced.has(token))
    .map(([token, id]) => ({ token, id }))
    .sort((x, y) => x.id - y.id);
  // Validate now so a bad pair of files fails here, with the problem spelled out.
  return validateTokenizerJson(byteLevelTokenizerJson({ ...encoder }, merges, specials), source);
}

/**
 * Loads GPT-2 from `encoder.json` + `vocab.bpe` files. For a `tokenizer.json`, use `Tokenizer.load`.
 *
 * @example
 * const gpt2 = loadGpt2Files('gpt2/encoder.json', 'gpt2/vocab.bpe');
 * gpt2.specialTokens.eos; // { token: '<|endoftext|>', id: 50256 }
 */
export function loadGpt2Files(encoderFile: string, vocabBpeFile: string, options: LoadOptions = {}): Tokenizer {
  const read = (file: string): string => {
    try {
      return fs.readFileSync(file, 'utf8');
    } catch (e) {
      throw new Error(`${file}: cannot read: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
  };
  let encoder: Record<string, number>;
  try {
    encoder = JSON.parse(read(encoderFile)) as Record<string, number>;
  } catch (e) {
    if (e instanceof SyntaxError) throw new Error(`${encoderFile}: not valid JSON: ${e.message}`, { cause: e });
    throw e;
  }
  const source = `${encoderFile} + ${vocabBpeFile}`;
  return Tokenizer.fromJSON(gpt2TokenizerJson(encoder, read(vocabBpeFile), source), source, options);
}
