/**
 * WordNet 3.0 database files (wordnet-base: /usr/share/wordnet/data.* and index.*), parsed per
 * wndb(5WN), with the offensive-content filter of the build.
 */
import * as fs from 'fs';
import * as path from 'path';
import { isBlocked, SEXUAL_TOPIC } from './blocklist';

export type Pos = 'n' | 'v' | 'a' | 'r';
export const POS_FILES: Record<Pos, string> = { n: 'noun', v: 'verb', a: 'adj', r: 'adv' };
export const POS_NAMES: Record<Pos, string> = { n: 'noun', v: 'verb', a: 'adjective', r: 'adverb' };

export interface Pointer {
  symbol: string;
  target: string;
}

export interface Synset {
  /** "n:02666347" */
  id: string;
  pos: Pos;
  lexFile: number;
  /** Lemmas with spaces for underscores, adjective markers ("(p)") removed. */
  words: string[];
  pointers: Pointer[];
  definition: string;
  examples: string[];
}

export interface IndexEntry {
  lemma: string;
  pos: Pos;
  /** Synset ids in WordNet's sense order (most frequent first). */
  synsets: string[];
  /** Number of senses tagged in semantic concordances (a commonness signal). */
  tagged: number;
}

export interface WordNet {
  synsets: Map<string, Synset>;
  /** lemma (lower case, spaces) → entries per part of speech */
  index: Map<string, IndexEntry[]>;
}

/** Splits a gloss into its definition and its quoted examples. */
export function splitGloss(gloss: string): { definition: string; examples: string[] } {
  const g = gloss.trim();
  const at = g.search(/(^|;\s*)"/);
  const definition = (at < 0 ? g : g.slice(0, at)).replace(/[;\s]+$/, '').trim();
  const examples: string[] = [];
  if (at >= 0) {
    const re = /"([^"]+)"/g;
    let m: RegExpExecArray | null;
    while ((m = re.exec(g.slice(at))) !== null) examples.push(m[1].trim());
  }
  return { definition, examples };
}

export function readWordNet(dir: string): WordNet {
  const synsets = new Map<string, Synset>();
  const index = new Map<string, IndexEntry[]>();
  for (const pos of Object.keys(POS_FILES) as Pos[]) {
    for (const line of fs.readFileSync(path.join(dir, `data.${POS_FILES[pos]}`), 'utf8').split('\n')) {
      if (!line || line.startsWith('  ')) continue; // licence header
      const bar = line.indexOf(' | ');
      const f = (bar < 0 ? line : line.slice(0, bar)).trim().split(/\s+/);
      const gloss = bar < 0 ? '' : line.slice(bar + 3);
      let k = 0;
      const offset = f[k++];
      const lexFile = Number(f[k++]);
      k++; // ss_type (n v a s r); satellites are adjectives
      const wCnt = parseInt(f[k++], 16);
      const words: string[] = [];
      for (let w = 0; w < wCnt; w++) {
        words.push(f[k].replace(/\((a|p|ip)\)$/, '').replace(/_/g, ' '));
        k += 2;
      }
      const pCnt = Number(f[k++]);
      const pointers: Pointer[] = [];
      for (let p = 0; p < pCnt; p++) {
        const [symbol, off, tpos] = [f[k], f[k + 1], f[k + 2]];
        pointers.push({ symbol, target: `${tpos === 's' ? 'a' : tpos}:${off}` });
        k += 4;
      }
      // WordNet quotes with `x' inside glosses
      const { definition, examples } = splitGloss(gloss.replace(/`([^`']*)'/g, "'$1'"));
      const id = `${pos}:${offset}`;
      synsets.set(id, { id, pos, lexFile, words, pointers, definition, examples });
    }
    for (const line of fs.readFileSync(path.join(dir, `index.${POS_FILES[pos]}`), 'utf8').split('\n')) {
      if (!line || line.startsWith('  ')) continue;
      const f = line.trim().split(/\s+/);
      const lemma = f[0].replace(/_/g, ' ');
      const synCnt = Number(f[2]);
      const pCnt = Number(f[3]);
      const tagged = Number(f[4 + pCnt + 1]);
      const ids = f.slice(4 + pCnt + 2, 4 + pCnt + 2 + synCnt).map((o) => `${pos}:${o}`);
      const list = index.get(lemma) ?? [];
      list.push({ lemma, pos, synsets: ids, tagged });
      index.set(lemma, list);
    }
  }
  return { synsets, index };
}

/** Usage domains whose members are slurs, disparagement, obscenity or slang. */
const OFFENSIVE_DOMAIN_LEMMAS = new Set([
  'ethnic slur', 'disparagement', 'derogation', 'depreciation', 'obscenity', 'vulgarism', 'dirty word', 'smut',
  'slang', 'profanity', 'swearword', 'cuss', 'four-letter word', 'expletive',
]);

/** Gloss wording that marks a term as offensive. */
const OFFENSIVE_GLOSS = [
  /\b(offensive|derogatory|disparaging|pejorative|contemptuous|insulting|obscene|vulgar|abusive)(ly)?\s+(term|terms|name|names|word|words|slang|expression|reference|way of referring|epithet)\b/i,
  /\((ethnic slur|slang|vulgar|offensive|obscene|disparaging|derogatory|pejorative)/i,
  /\bethnic slur\b/i,
  /\bslang (for|term)\b/i,
  /\bvulgar and (offensive|objectionable)\b/i,
  /\bterm of (abuse|contempt)\b/i,
];

export interface FilterStats {
  synsets: number;
  usageDomain: number;
  gloss: number;
  sexual: number;
  blocklist: number;
  kept: number;
  lemmasExcluded: number;
}

/**
 * Marks offensive synsets: a usage-domain pointer (";u") to one of OFFENSIVE_DOMAIN_LEMMAS's
 * synsets, gloss wording (OFFENSIVE_GLOSS), a sexual topic (SEXUAL_TOPIC in a lemma or the
 * definition), or a blocklisted or sexual-topic word in a lemma, definition or example. Lemmas with any offensive sense are excluded from prompts altogether.
 */
export function filterOffensive(wn: WordNet): { offensive: Set<string>; excludedLemmas: Set<string>; stats: FilterStats } {
  const domains = new Set<string>();
  for (const s of wn.synsets.values()) if (s.pos === 'n' && s.words.some((w) => OFFENSIVE_DOMAIN_LEMMAS.has(w.toLowerCase()))) domains.add(s.id);
  const offensive = new Set<string>();
  const stats: FilterStats = { synsets: wn.synsets.size, usageDomain: 0, gloss: 0, sexual: 0, blocklist: 0, kept: 0, lemmasExcluded: 0 };
  for (const s of wn.synsets.values()) {
    const gloss = [s.definition, ...s.examples].join(' ');
    if (s.pointers.some((p) => p.symbol === ';u' && domains.has(p.target))) stats.usageDomain++;
    else if (OFFENSIVE_GLOSS.some((re) => re.test(s.definition))) stats.gloss++;
    else if (SEXUAL_TOPIC.test(s.definition) || s.words.some((w) => SEXUAL_TOPIC.test(w))) stats.sexual++;
    else if (s.words.some(isBlocked) || isBlocked(gloss)) stats.blocklist++;
    else continue;
    offensive.add(s.id);
  }
  stats.kept = stats.synsets - offensive.size;
  const excludedLemmas = new Set<string>();
  for (const [lemma, entries] of wn.index) {
    if (isBlocked(lemma) || entries.some((e) => e.synsets.some((id) => offensive.has(id)))) excludedLemmas.add(lemma);
  }
  stats.lemmasExcluded = excludedLemmas.size;
  return { offensive, excludedLemmas, stats };
}

/** Hypernyms (and instance hypernyms) of a synset. */
export function hypernyms(s: Synset): string[] {
  return s.pointers.filter((p) => p.symbol === '@' || p.symbol === '@i').map((p) => p.target);
}

/** Hyponym lists per synset (from the hypernym pointers, so both directions agree). */
export function hyponymMap(wn: WordNet): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const s of wn.synsets.values()) {
    for (const h of hypernyms(s)) {
      const l = m.get(h) ?? [];
      l.push(s.id);
      m.set(h, l);
    }
  }
  for (const l of m.values()) l.sort();
  return m;
}
