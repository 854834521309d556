/**
 * Rebuilds every file under datasets/ from npm devDependencies and Debian packages.
 *
 *   npx tsx datasets/build.ts [--out DIR]
 *
 * Reproducible: same inputs → same bytes (sorted inputs, one fixed seed, no timestamps, fixed
 * JSON key order). Writes the data files, MANIFEST.json (bytes, sha256, rows of each data
 * file), SOURCES.json (input package versions), README.md and LICENSES.md, and prints a summary.
 */
import * as fs from 'fs';
import * as path from 'path';
import { formatDocuments, formatJsonl, type InstructionRow, type PreferenceRow, countRows } from './lib/format';
import { APT_COMMAND, inputVersions, missingInputs, missingMessage } from './lib/inputs';
import {
  continuationPreferences,
  faqItems,
  faqPreferences,
  HELDOUT_PAIRS,
  isHeldout,
  jargonInstructions,
  type DropStats,
  type Keyed,
  MAX_ANSWER,
  wordnetContext,
  wordnetInstructions,
  wordnetPreferences,
} from './lib/pairs';
import {
  debianFaq,
  type Doc,
  PATHS,
  pythonDocPaths,
  pythonFaq,
  readAbsGuide,
  readJargon,
  readKjv,
  readMobyDick,
  readPythonDoc,
  readSotu,
} from './lib/sources';
import { countBlocked, findBlocked } from './lib/blocklist';
import { cmp, hashOrder, Rng, SEED, sha256 } from './lib/util';
import { readWordNet } from './lib/wordnet';
import { renderLicenses, renderReadme, type BuildReport } from './lib/docs';

// ---------------------------------------------------------------- configuration

/** SOTU speeches from this year on (modern English; keeps the general corpus near 10 MB). */
export const SOTU_FROM = 1900;
export const HELDOUT_GENERAL = 0.03;
export const HELDOUT_DOMAIN = 0.05;
/** Python documentation in the domain corpus (besides the whole ABS guide). */
export const PY_DOC_PREFIXES = [
  'tutorial/', 'reference/', 'howto/', 'using/', 'glossary.rst.txt',
  ...[
    'intro', 'functions', 'constants', 'stdtypes', 'exceptions', 'string', 're', 'textwrap', 'datetime', 'collections',
    'collections.abc', 'heapq', 'bisect', 'copy', 'pprint', 'enum', 'dataclasses', 'math', 'random', 'statistics',
    'itertools', 'functools', 'operator', 'pathlib', 'os.path', 'tempfile', 'glob', 'fnmatch', 'shutil', 'pickle',
    'csv', 'json', 'os', 'io', 'time', 'argparse', 'logging', 'subprocess', 'threading', 'sys', 'typing', 'unittest',
    'contextlib', 'abc', 'traceback', 'sqlite3', 'zipfile', 'hashlib', 'shlex', 'difflib',
  ].map((m) => `library/${m}.rst.txt`),
];
export const WORDNET_INSTRUCTIONS = 3000;
export const JARGON_INSTRUCTIONS = 1500;
export const WORDNET_PREFERENCES = 3000;
export const CONTINUATION_PREFERENCES = 1500;
export const MAX_TOTAL_BYTES = 25 * 1024 * 1024;

// ---------------------------------------------------------------- helpers

/**
 * Held-out documents: in seeded-hash order, whole documents are taken while they keep the
 * held-out share under `fraction` of all bytes (+0.5 % slack), until at least `fraction` is reached.
 */
export function splitDocuments(docs: Doc[], fraction: number, salt: string): { train: Doc[]; heldout: Doc[] } {
  const total = docs.reduce((s, d) => s + Buffer.byteLength(d.text), 0);
  const target = total * fraction;
  const held = new Set<string>();
  let bytes = 0;
  for (const d of hashOrder(docs, (x) => x.id, `heldout-${salt}`)) {
    if (bytes >= target) break;
    const b = Buffer.byteLength(d.text);
    if (bytes + b > total * (fraction + 0.005)) continue;
    held.add(d.id);
    bytes += b;
  }
  // Seeded order of documents within each file (a sequential reader sees the sources mixed).
  const rng = new Rng(`order-${salt}`);
  const sorted = docs.slice().sort((a, b) => cmp(a.id, b.id));
  return {
    train: rng.shuffle(sorted.filter((d) => !held.has(d.id))),
    heldout: rng.shuffle(sorted.filter((d) => held.has(d.id))),
  };
}

function splitKeyed<T>(rows: Keyed<T>[]): { train: T[]; heldout: T[] } {
  const train: T[] = [];
  const heldout: T[] = [];
  for (const r of rows) (isHeldout(r.key) ? heldout : train).push(r.row);
  return { train, heldout };
}

/** Last guard: drops rows with a blocklisted word in any text field (counted in `drops`). */
function unblocked<T>(rows: Keyed<T>[], texts: (r: T) => string[], label: string, drops: DropStats): Keyed<T>[] {
  return rows.filter((r) => {
    const bad = texts(r.row).some((t) => findBlocked(t) !== null);
    if (bad) drops[`${label}: blocklisted or sexual-topic word (final check)`] = (drops[`${label}: blocklisted or sexual-topic word (final check)`] ?? 0) + 1;
    return !bad;
  });
}

function parseArgs(argv: string[]): { out: string } {
  let out = __dirname;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--out' && argv[i + 1]) out = path.resolve(argv[++i]);
    else if (argv[i].startsWith('--out=')) out = path.resolve(argv[i].slice(6));
    else if (argv[i] === '--help' || argv[i] === '-h') {
      console.log('usage: npx tsx datasets/build.ts [--out DIR]');
      process.exit(0);
    } else {
      console.error(`datasets: unknown argument ${argv[i]} (usage: npx tsx datasets/build.ts [--out DIR])`);
      process.exit(2);
    }
  }
  return { out };
}

// ---------------------------------------------------------------- build

function main(): void {
  const t0 = Date.now();
  const { out } = parseArgs(process.argv.slice(2));
  const root = path.resolve(__dirname, '..');
  const missing = missingInputs(root);
  if (missing.length) {
    console.error(missingMessage(missing));
    process.exit(1);
  }
  const versions = inputVersions(root);
  const files = new Map<string, string>();
  const log = (s: string): void => console.log(s);

  // general English
  const moby = readMobyDick(root);
  const sotu = readSotu(root, SOTU_FROM);
  const kjv = readKjv();
  const general = splitDocuments([...moby, ...sotu, ...kjv], HELDOUT_GENERAL, 'general');
  files.set('general/train.txt', formatDocuments(general.train.map((d) => d.text)));
  files.set('general/heldout.txt', formatDocuments(general.heldout.map((d) => d.text)));

  // domain: shell and Python documentation
  const abs = readAbsGuide();
  const py = pythonDocPaths(PY_DOC_PREFIXES).map((p) => ({ id: `python-docs/${p.replace(/\.rst\.txt$/, '')}`, text: readPythonDoc(p) }));
  const domain = splitDocuments([...abs, ...py.filter((d) => d.text.length > 200)], HELDOUT_DOMAIN, 'domain');
  files.set('domain/train.txt', formatDocuments(domain.train.map((d) => d.text)));
  files.set('domain/heldout.txt', formatDocuments(domain.heldout.map((d) => d.text)));

  // instructions
  const drops: DropStats = {};
  const faq = faqItems(pythonFaq(), debianFaq(), drops);
  const wn = wordnetContext(readWordNet(PATHS.wordnet));
  const jargon = readJargon();
  const instr: Keyed<InstructionRow>[] = [
    ...faq.map((f) => ({
      key: f.key,
      row: { messages: [{ role: 'user' as const, content: f.prompt }, { role: 'assistant' as const, content: f.answer }], source: f.source },
    })),
    ...wordnetInstructions(wn, WORDNET_INSTRUCTIONS, drops),
    ...jargonInstructions(jargon, JARGON_INSTRUCTIONS, drops),
  ];
  const instrSplit = splitKeyed(unblocked(instr, (r) => r.messages.map((m) => m.content), 'instructions', drops));
  const rngI = new Rng('instructions-order');
  files.set('instructions/train.jsonl', formatJsonl(rngI.shuffle(instrSplit.train)));
  files.set('instructions/heldout.jsonl', formatJsonl(rngI.shuffle(instrSplit.heldout)));

  // preferences
  const prefKeyed: Keyed<PreferenceRow>[] = [...wordnetPreferences(wn, WORDNET_PREFERENCES, drops), ...faqPreferences(faq)];
  const prefText = (r: PreferenceRow): string[] => [r.prompt, r.chosen, r.rejected, r.why];
  const prefSplit = splitKeyed(unblocked(prefKeyed, prefText, 'preferences', drops));
  const asKeyed = (rows: PreferenceRow[]): Keyed<PreferenceRow>[] => rows.map((row) => ({ key: row.prompt, row }));
  const contHeld = unblocked(
    asKeyed(continuationPreferences(general.heldout, Math.round(CONTINUATION_PREFERENCES * HELDOUT_PAIRS), 'heldout', drops)),
    prefText,
    'preferences',
    drops,
  ).map((k) => k.row);
  const contTrain = unblocked(
    asKeyed(continuationPreferences(general.train, CONTINUATION_PREFERENCES - contHeld.length, 'train', drops)),
    prefText,
    'preferences',
    drops,
  ).map((k) => k.row);
  // a prompt never in both splits (identical contexts can recur, e.g. in the KJV)
  const heldPrompts = new Set([...prefSplit.heldout, ...contHeld].map((r) => r.prompt));
  const trainPrefs = [...prefSplit.train, ...contTrain].filter((r) => !heldPrompts.has(r.prompt));
  const rngP = new Rng('preferences-order');
  files.set('preferences/train.jsonl', formatJsonl(rngP.shuffle(trainPrefs)));
  files.set('preferences/heldout.jsonl', formatJsonl(rngP.shuffle([...prefSplit.heldout, ...contHeld])));

  // manifest, sources, docs
  const manifest: Record<string, { bytes: number; sha256: string; rows: number }> = {};
  for (const name of [...files.keys()].sort(cmp)) {
    const text = files.get(name)!;
    manifest[name] = { bytes: Buffer.byteLength(text), sha256: sha256(text), rows: countRows(name, text) };
  }
  const total = Object.values(manifest).reduce((s, m) => s + m.bytes, 0);
  if (total > MAX_TOTAL_BYTES) throw new Error(`datasets total ${total} bytes exceeds ${MAX_TOTAL_BYTES}`);

  const count = <T extends { source: string }>(rows: T[]): Record<string, number> => {
    const c: Record<string, number> = {};
    for (const r of rows) c[r.source] = (c[r.source] ?? 0) + 1;
    return Object.fromEntries(Object.entries(c).sort((a, b) => cmp(a[0], b[0])));
  };
  const report: BuildReport = {
    seed: SEED,
    versions,
    manifest,
    total,
    aptCommand: APT_COMMAND,
    general: {
      sources: { 'moby-dick': moby.length, sotu: sotu.length, kjv: kjv.length },
      sotuFrom: SOTU_FROM,
      heldoutFraction: HELDOUT_GENERAL,
      heldoutIds: general.heldout.map((d) => d.id).sort(cmp),
      blocked: [...moby, ...sotu, ...kjv].reduce((s, d) => s + countBlocked(d.text), 0),
    },
    domain: {
      sources: { 'abs-guide': abs.length, 'python-docs': py.filter((d) => d.text.length > 200).length },
      heldoutFraction: HELDOUT_DOMAIN,
      heldoutIds: domain.heldout.map((d) => d.id).sort(cmp),
      pyPrefixes: PY_DOC_PREFIXES,
    },
    instructions: { train: count(instrSplit.train), heldout: count(instrSplit.heldout) },
    preferences: { train: count(trainPrefs), heldout: count([...prefSplit.heldout, ...contHeld]) },
    wordnetFilter: wn.stats,
    wordnetCandidates: wn.candidates.length,
    drops: Object.fromEntries(Object.entries(drops).sort((a, b) => cmp(a[0], b[0]))),
    heldoutPairs: HELDOUT_PAIRS,
    maxAnswer: MAX_ANSWER,
    samples: {
      instruction: JSON.stringify(instrSplit.heldout.find((r) => r.source === 'wordnet') ?? instrSplit.heldout[0]),
      preference: (['wordnet', 'general/'] as const).map((src) =>
        JSON.stringify([...prefSplit.heldout, ...contHeld].find((r) => r.source.startsWith(src)) ?? prefSplit.heldout[0]),
      ),
    },
  };
  files.set('MANIFEST.json', JSON.stringify(manifest, null, 2) + '\n');
  files.set('SOURCES.json', JSON.stringify({ seed: SEED, packages: versions }, null, 2) + '\n');
  files.set('README.md', renderReadme(report));
  files.set('LICENSES.md', renderLicenses());

  for (const [name, text] of files) {
    const p = path.join(out, name);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, text);
  }

  // summary
  log(`datasets written to ${out}`);
  log('file                          rows      bytes  sha256');
  for (const [name, m] of Object.entries(manifest)) {
    log(`${name.padEnd(28)} ${String(m.rows).padStart(6)} ${String(m.bytes).padStart(10)}  ${m.sha256.slice(0, 16)}`);
  }
  log(`total ${(total / 1024 / 1024).toFixed(2)} MiB (limit ${MAX_TOTAL_BYTES / 1024 / 1024} MiB)`);
  const f = wn.stats;
  log(
    `WordNet offensive filter: ${f.usageDomain + f.gloss + f.sexual + f.blocklist} of ${f.synsets} synsets dropped ` +
      `(usage domain ${f.usageDomain}, gloss wording ${f.gloss}, sexual topic ${f.sexual}, blocklist ${f.blocklist}); ` +
      `${f.lemmasExcluded} words excluded from prompts`,
  );
  log(`other drops: ${Object.entries(report.drops).map(([k, v]) => `${k} ${v}`).join('; ')}`);
  log(`done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

if (require.main === module) {
  try {
    main();
  } catch (e) {
    console.error(`datasets: build failed: ${(e as Error).message}`);
    process.exit(1);
  }
}
