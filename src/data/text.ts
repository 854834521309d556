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
 * reproducible). Errors name the path; non-UTF-8 bytes are reported with the file name.
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
  return files.map((file) => {
    const bytes = fs.readFileSync(file);
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      throw new Error(`${file}: not valid UTF-8 text`);
    }
    return { source: file, text };
  });
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
