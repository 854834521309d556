/**
 * Instruction pairs (TRL conversational) and preference pairs (TRL prompt/chosen/rejected)
 * derived from the FAQs, WordNet, the Jargon File and the general corpus.
 */
import { findBlocked } from './blocklist';
import type { InstructionRow, PreferenceRow } from './format';
import type { JargonEntry, QA } from './sources';
import { capitalize, hashOrder, hashUnit, oneLine, Rng, splitSentences, trimAnswer } from './util';
import { filterOffensive, hypernyms, hyponymMap, POS_NAMES, type IndexEntry, type Pos, type Synset, type WordNet } from './wordnet';

export const MAX_ANSWER = 600;
export const MIN_ANSWER = 40;
export const HELDOUT_PAIRS = 0.05;

/** A row with the key it is split on (rows with the same key always land in the same split). */
export interface Keyed<T> {
  key: string;
  row: T;
}

export function isHeldout(key: string, fraction = HELDOUT_PAIRS): boolean {
  return hashUnit(`split\u0000${key}`) < fraction;
}

export interface DropStats {
  [reason: string]: number;
}

function bump(stats: DropStats, reason: string): void {
  stats[reason] = (stats[reason] ?? 0) + 1;
}

const INTERROGATIVE = /^(how|what|why|is|are|can|could|do|does|did|where|when|which|who|should|will|must|may)\b/i;

/** "How do I copy a file?" → "In Python, how do I copy a file?" unless the question names its subject. */
function withContext(question: string, subject: RegExp, prefix: string): string {
  let q = question.replace(/^(and|but)\s+/i, '');
  q = capitalize(q);
  if (subject.test(q) || !INTERROGATIVE.test(q)) return q;
  return `${prefix} ${q[0].toLowerCase()}${q.slice(1)}`;
}

function okAnswer(a: string): boolean {
  return a.length >= MIN_ANSWER && !/[:,;]$/.test(a) && !/^\s/.test(a);
}

// ---------------------------------------------------------------- FAQ

export interface FaqItem {
  source: 'python-faq' | 'debian-faq';
  prompt: string;
  answer: string;
  key: string;
}

/** FAQ question/answer items, deduplicated by question, answers trimmed; drops counted. */
export function faqItems(python: QA[], debian: QA[], drops: DropStats): FaqItem[] {
  const out: FaqItem[] = [];
  const seen = new Set<string>();
  const add = (source: FaqItem['source'], qa: QA, prompt: string): void => {
    if (seen.has(prompt)) return bump(drops, `${source}: duplicate question`);
    seen.add(prompt);
    if (/\bthis (faq|document)\b/i.test(qa.question)) return bump(drops, `${source}: question about the FAQ itself`);
    const answer = trimAnswer(qa.answer, MAX_ANSWER);
    if (!okAnswer(answer)) return bump(drops, `${source}: answer empty or too short after trimming`);
    if (findBlocked(prompt) || findBlocked(answer)) return bump(drops, `${source}: blocklisted word`);
    out.push({ source, prompt, answer, key: `${source}:${prompt}` });
  };
  for (const qa of python) add('python-faq', qa, withContext(qa.question, /python|cpython|tkinter|py_|\bpyc?\b/i, 'In Python,'));
  for (const qa of debian) add('debian-faq', qa, withContext(qa.question, /debian/i, 'In Debian,'));
  return out;
}

// ---------------------------------------------------------------- WordNet

const DEFINE_TEMPLATES = [
  (w: string) => `What does "${w}" mean?`,
  (w: string) => `Define the word "${w}".`,
  (w: string) => `What is the meaning of "${w}"?`,
  (w: string) => `What does the word "${w}" mean?`,
];

function sentence(s: string): string {
  const t = oneLine(s).replace(/[;,:\s]+$/, '');
  return /[.!?]$/.test(t) ? t : `${t}.`;
}

const article = (w: string): string => (/^[aeiou]/i.test(w) ? 'an' : 'a');

/** `"oak" is a noun meaning a tree of the genus Quercus.` */
export function defineOne(word: string, pos: Pos, definition: string): string {
  return `"${word}" is ${article(POS_NAMES[pos])} ${POS_NAMES[pos]} meaning ${sentence(definition)}`;
}

interface Candidate {
  lemma: string;
  entries: IndexEntry[];
  tagged: number;
}

export interface WordNetContext {
  wn: WordNet;
  offensive: Set<string>;
  excluded: Set<string>;
  stats: ReturnType<typeof filterOffensive>['stats'];
  candidates: Candidate[];
}

/**
 * Candidate words: lower-case letters (with spaces, hyphens, apostrophes), 3–30 characters,
 * tagged at least once in WordNet's sense-tagged corpora (so reasonably common), no sense
 * offensive, every sense with a definition.
 */
export function wordnetContext(wn: WordNet): WordNetContext {
  const { offensive, excludedLemmas, stats } = filterOffensive(wn);
  const candidates: Candidate[] = [];
  for (const [lemma, entries] of wn.index) {
    if (excludedLemmas.has(lemma)) continue;
    if (!/^[a-z][a-z' -]{1,28}[a-z]$/.test(lemma)) continue;
    const tagged = entries.reduce((s, e) => s + e.tagged, 0);
    if (tagged === 0) continue;
    if (entries.some((e) => e.synsets.some((id) => !wn.synsets.get(id)?.definition))) continue;
    candidates.push({ lemma, entries, tagged });
  }
  return { wn, offensive, excluded: excludedLemmas, stats, candidates };
}

/** The word as its synset spells it ("Aeschylus", "Dutch"); index lemmas are lower case. */
function surface(lemma: string, s: Synset): string {
  return s.words.find((w) => w.toLowerCase() === lemma) ?? lemma;
}

function orderedSenses(ctx: WordNetContext, c: Candidate): { pos: Pos; s: Synset }[] {
  const entries = c.entries.slice().sort((a, b) => b.tagged - a.tagged || a.synsets.length - b.synsets.length);
  const senses: { pos: Pos; s: Synset }[] = [];
  for (const e of entries) for (const id of e.synsets) senses.push({ pos: e.pos, s: ctx.wn.synsets.get(id)! });
  return senses;
}

/** Answer for "What does X mean?": up to three senses, most frequent part of speech first. */
function defineWord(ctx: WordNetContext, c: Candidate, word: string): string {
  const senses = orderedSenses(ctx, c);
  if (senses.length === 1) {
    const { pos, s } = senses[0];
    let a = defineOne(word, pos, s.definition);
    const ex = s.examples.find((x) => x.length <= 160 && x.toLowerCase().includes(c.lemma.split(' ')[0]));
    if (ex) a += ` For example: "${ex}".`;
    return a;
  }
  let a = `"${word}" has several meanings.`;
  let lastPos: Pos | null = null;
  let n = 0;
  for (const { pos, s } of senses) {
    if (n === 3) break;
    let part: string;
    if (pos !== lastPos) part = ` As ${article(POS_NAMES[pos])} ${POS_NAMES[pos]}, it ${n === 0 ? 'most often means' : 'can mean'} ${sentence(s.definition)}`;
    else part = ` It can also mean ${sentence(s.definition)}`;
    if (a.length + part.length > MAX_ANSWER) break;
    a += part;
    lastPos = pos;
    n++;
  }
  return n ? a : '';
}

export function wordnetInstructions(ctx: WordNetContext, count: number, drops: DropStats): Keyed<InstructionRow>[] {
  const out: Keyed<InstructionRow>[] = [];
  for (const c of hashOrder(ctx.candidates, (x) => x.lemma, 'wordnet-instructions')) {
    if (out.length === count) break;
    const word = surface(c.lemma, orderedSenses(ctx, c)[0].s);
    const answer = defineWord(ctx, c, word);
    if (answer.length < MIN_ANSWER) {
      bump(drops, 'wordnet: answer too short');
      continue;
    }
    if (findBlocked(answer)) {
      bump(drops, 'wordnet: blocklisted or sexual-topic word in answer');
      continue;
    }
    const t = DEFINE_TEMPLATES[Math.floor(hashUnit(`template\u0000${c.lemma}`) * DEFINE_TEMPLATES.length)];
    out.push({
      key: `wordnet:${c.lemma}`,
      row: { messages: [{ role: 'user', content: t(word) }, { role: 'assistant', content: answer }], source: 'wordnet' },
    });
  }
  return out;
}

/**
 * "What does the noun X mean?" — chosen: X's definition; rejected: the definition of a sibling
 * concept (another hyponym of one of X's hypernyms) that is not a sense of X in any part of
 * speech and does not contain X. Only words with a single sense in that part of speech, so the
 * chosen definition is the only right one.
 */
export function wordnetPreferences(ctx: WordNetContext, count: number, drops: DropStats): Keyed<PreferenceRow>[] {
  const { wn } = ctx;
  const hypo = hyponymMap(wn);
  const out: Keyed<PreferenceRow>[] = [];
  const rng = new Rng('wordnet-preferences');
  for (const c of hashOrder(ctx.candidates, (x) => x.lemma, 'wordnet-preferences')) {
    if (out.length === count) break;
    const e = c.entries.find((x) => x.synsets.length === 1 && (x.pos === 'n' || x.pos === 'v'));
    if (!e) continue;
    const s = wn.synsets.get(e.synsets[0])!;
    const ownDefs = new Set(c.entries.flatMap((x) => x.synsets.map((id) => wn.synsets.get(id)!.definition.toLowerCase())));
    const lemmaRe = new RegExp(`\\b${c.lemma.replace(/[-']/g, '\\$&')}`, 'i');
    const siblings: { sib: Synset; hyper: Synset }[] = [];
    for (const h of hypernyms(s)) {
      for (const id of hypo.get(h) ?? []) {
        if (id === s.id || ctx.offensive.has(id)) continue;
        const sib = wn.synsets.get(id)!;
        if (sib.words.some((w) => w.toLowerCase() === c.lemma)) continue;
        if (ownDefs.has(sib.definition.toLowerCase()) || lemmaRe.test(sib.definition)) continue;
        if (sib.definition.length < 12 || findBlocked(sib.definition)) continue;
        siblings.push({ sib, hyper: wn.synsets.get(h)! });
      }
    }
    if (siblings.length === 0) {
      bump(drops, 'wordnet preference: no usable sibling');
      continue;
    }
    const { sib, hyper } = rng.pick(siblings);
    const word = surface(c.lemma, s);
    const chosen = defineOne(word, e.pos, s.definition);
    const rejected = defineOne(word, e.pos, sib.definition);
    if (chosen === rejected) continue;
    out.push({
      key: `wordnet:${c.lemma}`,
      row: {
        prompt: `What does the ${POS_NAMES[e.pos]} "${word}" mean?`,
        chosen,
        rejected,
        source: 'wordnet',
        why:
          `The rejected answer gives the WordNet definition of "${sib.words[0]}", ` +
          (e.pos === 'n' ? `a different kind of ${hyper.words[0]}` : `a different way to ${hyper.words[0]}`) +
          `; "${word}" has one ${POS_NAMES[e.pos]} sense, the chosen one.`,
      },
    });
  }
  return out;
}

// ---------------------------------------------------------------- Jargon File

const JARGON_TEMPLATES = [
  (w: string) => `What does "${w}" mean in hacker jargon?`,
  (w: string) => `In hacker slang, what is meant by "${w}"?`,
  (w: string) => `Explain the jargon term "${w}".`,
];

export function jargonInstructions(entries: JargonEntry[], count: number, drops: DropStats): Keyed<InstructionRow>[] {
  const out: Keyed<InstructionRow>[] = [];
  for (const e of hashOrder(entries, (x) => x.term, 'jargon')) {
    if (out.length === count) break;
    if (findBlocked(e.term) || findBlocked(e.definition)) {
      bump(drops, 'jargon: blocklisted or sexual-topic word');
      continue;
    }
    // drop a leading "[origin; usage]" tag or "(alt.: …, /pronunciation/)" and pure cross references
    const def = e.definition
      .replace(/^\[[^\]]*\]\s*/, '')
      .replace(/^\((?:[^()]*\/[^()]*|(?:alt|var|also)\.[^()]*)\)\s*/, '')
      .replace(/^(\d+\.\s+)(?:(?:n|v|vt|vi|adj|adv|interj|excl|pl|prep|pref|suff)\.\s+)+/gm, '$1');
    if (/^(see|same as|=)\b/i.test(def) || /^\d/.test(def)) {
      bump(drops, 'jargon: cross-reference only');
      continue;
    }
    const answer = trimAnswer(def, MAX_ANSWER);
    if (!okAnswer(answer)) {
      bump(drops, 'jargon: answer empty or too short after trimming');
      continue;
    }
    const t = JARGON_TEMPLATES[Math.floor(hashUnit(`template\u0000${e.term}`) * JARGON_TEMPLATES.length)];
    out.push({
      key: `jargon:${e.term.toLowerCase()}`,
      row: { messages: [{ role: 'user', content: t(e.term) }, { role: 'assistant', content: answer }], source: 'jargon-file' },
    });
  }
  return out;
}

// ---------------------------------------------------------------- preferences from FAQs and text

/** FAQ question → its own answer (chosen) vs. the answer to another question of the same FAQ. */
export function faqPreferences(items: FaqItem[]): Keyed<PreferenceRow>[] {
  const out: Keyed<PreferenceRow>[] = [];
  const rng = new Rng('faq-preferences');
  for (const src of ['python-faq', 'debian-faq'] as const) {
    const pool = items.filter((i) => i.source === src);
    for (const it of pool) {
      let other = rng.pick(pool);
      for (let k = 0; k < 10 && (other === it || other.answer === it.answer); k++) other = rng.pick(pool);
      if (other === it || other.answer === it.answer) continue;
      out.push({
        key: it.key,
        row: {
          prompt: it.prompt,
          chosen: it.answer,
          rejected: other.answer,
          source: src,
          why: `The rejected text is the ${src === 'python-faq' ? 'Python' : 'Debian'} FAQ's answer to a different question: "${other.prompt}"`,
        },
      });
    }
  }
  return out;
}

interface TextDoc {
  id: string;
  text: string;
}

/** Shuffles the words of a sentence, keeping its final punctuation at the end. */
export function shuffleWords(s: string, rng: Rng): string | null {
  const m = /^(.*?)([.!?]["'”’)]*)$/.exec(s);
  if (!m) return null;
  const words = m[1].split(' ');
  for (let attempt = 0; attempt < 20; attempt++) {
    const sh = rng.shuffle(words);
    let moved = 0;
    for (let i = 0; i < words.length; i++) if (sh[i] !== words[i]) moved++;
    if (moved < Math.ceil(words.length / 2)) continue;
    return capitalize(sh.join(' ')) + m[2];
  }
  return null;
}

/**
 * "Continue the text: <one or two sentences>" → chosen: the sentence that follows in the
 * source; rejected: the same sentence with its words shuffled.
 */
export function continuationPreferences(docs: TextDoc[], count: number, salt: string, drops: DropStats): PreferenceRow[] {
  const cands: { doc: string; title: string; context: string; next: string }[] = [];
  for (const d of docs) {
    const title = d.text.split('\n')[0].trim();
    for (const para of d.text.split('\n\n')) {
      if (para.includes('\n') || para.length < 80) continue;
      const sents = splitSentences(para);
      for (let i = 1; i < sents.length; i++) {
        const next = sents[i];
        const words = next.split(' ').length;
        if (words < 8 || words > 40 || !/^[A-Z]/.test(next) || !/[.!?]["'”’)]*$/.test(next)) continue;
        const context = sents.slice(Math.max(0, i - 2), i).join(' ');
        if (context.length < 40 || context.length > 500) continue;
        cands.push({ doc: d.id, title, context, next });
      }
    }
  }
  const out: PreferenceRow[] = [];
  const rng = new Rng(`continuation-${salt}`);
  for (const c of hashOrder(cands, (x) => `${x.doc}\u0000${x.context}\u0000${x.next}`, `continuation-${salt}`)) {
    if (out.length === count) break;
    if (findBlocked(c.context) || findBlocked(c.next)) {
      bump(drops, 'continuation: blocklisted or sexual-topic word');
      continue;
    }
    const rejected = shuffleWords(c.next, rng);
    if (!rejected || rejected === c.next) continue;
    const [corpus] = c.doc.split('/');
    const where =
      corpus === 'moby-dick'
        ? `Moby Dick (${c.title})`
        : corpus === 'sotu'
          ? `the ${c.title}`
          : `the King James Bible (${c.title})`;
    if (findBlocked(where)) continue;
    out.push({
      prompt: `Continue the text:\n\n${c.context}`,
      chosen: c.next,
      rejected,
      source: `general/${corpus}`,
      why: `The chosen sentence is the one that follows in ${where}; the rejected one has the same words in a shuffled order.`,
    });
  }
  return out;
}
