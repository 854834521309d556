/** Plain-text corpora: a file is one document; a folder holds one document per `.txt`/`.md` file. */
import * as fs from 'fs';
import * as path from 'path';

/** A document with the file it came from. */
export interface TextDocument {
  source: string;
  text: string;
}

/**
 * Reads a text file, or every `.txt`/`.md` file of a folder (recursively, sorted by path so the order is
 * reproducible). Errors name the path; non-UTF-8 bytes are reported with the file, line and byte offset.
 *
 * @example
 * const docs = readTextCorpus('datasets/general');
 */
export function readTextCorpus(target: string): TextDocument[] {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(target);
  } catch {
    throw new Error(`${target}: no such file or folder`);
  }
  const files = stat.isDirectory() ? listTextFiles(target) : [target];
  if (files.length === 0) throw new Error(`${target}: folder has no .txt or .md files`);
  return files.map((file) => ({ source: file, text: readUtf8(file) }));
}

/**
 * Reads a file as UTF-8, refusing other encodings instead of turning their bytes into `\uFFFD` (a Latin-1
 * "Café" would otherwise load as "Caf\uFFFD"). The error names the file, the line and the byte offset.
 *
 * @example
 * readUtf8('notes.csv');   // throws "notes.csv: line 3: not valid UTF-8 at byte 41 (0xE9) …" for Latin-1
 */
export function readUtf8(file: string): string {
  const bytes = fs.readFileSync(file);
  // The native strict decoder checks well-formed files; the byte walk only runs to locate a bad byte.
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    // fall through to name the offending byte
  }
  const bad = invalidUtf8Offset(bytes);
  if (bad < 0) return bytes.toString('utf8');
  let line = 1;
  for (let k = bytes.indexOf(0x0a); k >= 0 && k < bad; k = bytes.indexOf(0x0a, k + 1)) line++;
  const hex = `0x${bytes[bad].toString(16).toUpperCase().padStart(2, '0')}`;
  throw new Error(
    `${file}: line ${line}: not valid UTF-8 at byte offset ${bad} (${hex}); the file looks like another encoding ` +
      '(Latin-1, Windows-1252?): save it as UTF-8, e.g. `iconv -f latin1 -t utf-8 in > out`',
  );
}

/** Offset of the first byte that does not start or continue a well-formed UTF-8 sequence (RFC 3629), or -1. */
export function invalidUtf8Offset(bytes: Uint8Array): number {
  const n = bytes.length;
  for (let i = 0; i < n; ) {
    const b = bytes[i];
    if (b < 0x80) {
      i++;
      continue;
    }
    // Lead byte → sequence length and the allowed range of the second byte (excludes overlongs and surrogates).
    let len: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) len = 2;
    else if (b >= 0xe0 && b <= 0xef) {
      len = 3;
      if (b === 0xe0) lo = 0xa0;
      if (b === 0xed) hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      len = 4;
      if (b === 0xf0) lo = 0x90;
      if (b === 0xf4) hi = 0x8f;
    } else return i;
    if (i + len > n) return i;
    if (bytes[i + 1] < lo || bytes[i + 1] > hi) return i;
    for (let k = 2; k < len; k++) if (bytes[i + k] < 0x80 || bytes[i + k] > 0xbf) return i;
    i += len;
  }
  return -1;
}

function listTextFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listTextFiles(p));
    else if (/\.(txt|md)$/i.test(entry.name)) out.push(p);
  }
  return out;
}

/** Splits a text into a leading share and the rest at a line boundary, for a held-out split. */
export function splitText(text: string, heldOutFraction: number): { train: string; heldOut: string } {
  if (!(heldOutFraction >= 0 && heldOutFraction < 1)) throw new Error(`heldOutFraction must be in [0, 1) (got ${heldOutFraction})`);
  if (heldOutFraction === 0) return { train: text, heldOut: '' };
  let cut = Math.floor(text.length * (1 - heldOutFraction));
  const nl = text.indexOf('\n', cut);
  if (nl >= 0 && nl < text.length - 1) cut = nl + 1;
  return { train: text.slice(0, cut), heldOut: text.slice(cut) };
}

/**
 * Text of a cell for lengths and dedupe: strings as they are, message lists as their contents joined by
 * newlines, anything else through JSON.
 */
export function cellText(value: unknown): string {
  if (typeof value === 'string') return value;
  if (Array.isArray(value) && value.every((m) => typeof m === 'object' && m !== null && 'content' in m)) {
    return value.map((m: { content?: unknown }) => (typeof m.content === 'string' ? m.content : '')).join('\n');
  }
  return value === undefined || value === null ? '' : JSON.stringify(value);
}
