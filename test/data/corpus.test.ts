import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Corpus, formatReport } from '../../src/data/corpus';
import { cellText } from '../../src/data/text';
import { exactDuplicates, jaccard, lshParams, minhashSignature, nearDuplicates, normalizeText, shingleHashes } from '../../src/data/dedupe';
import { Rng } from '../../src/util/rng';

interface TextRow extends Record<string, unknown> {
  id: number;
  text: string;
}

const corpusOf = (texts: string[]) => Corpus.from<TextRow>(texts.map((text, id) => ({ id, text })));

// Seeded random "sentences" of `words` words from a 300-word vocabulary: unrelated ones share few shingles.
function sentences(count: number, words: number, seed: number): string[] {
  const rng = new Rng(seed);
  const vocab = Array.from({ length: 300 }, (_, i) => `w${i.toString(36)}${'xyzq'[i % 4]}${i % 7}`);
  return Array.from({ length: count }, () => Array.from({ length: words }, () => vocab[rng.int(vocab.length)]).join(' '));
}

// A near copy: one word replaced and different punctuation/case/spacing.
function nearCopy(text: string): string {
  const words = text.split(' ');
  words[Math.floor(words.length / 2)] = 'CHANGED';
  return '  ' + words.join('  ').toUpperCase() + '!';
}

describe('data/corpus', () => {
  describe('verbs and their report', () => {
    it('each verb returns a new corpus and adds one report line with exact counts', () => {
      const base = corpusOf(['short', 'a long enough text', 'a long  enough text', 'another long text', 'x'.repeat(50), 'Another long text']);
      const banned = 'another';
      const out = base
        .filter((r) => !r.text.startsWith(banned), 'starts with "another"')
        .lengthBetween('text', 6, 40)
        .dedupe('text');
      assert.equal(base.size, 6); // unchanged
      assert.deepEqual(out.rows().map((r) => r.id), [1, 5]);
      assert.deepEqual(out.report, [
        { step: 'from', removed: 0, kept: 6, reason: 'data in memory' },
        { step: 'filter', removed: 1, kept: 5, reason: 'starts with "another"' },
        { step: 'lengthBetween', removed: 2, kept: 3, reason: '"text" outside [6, 40] chars: 1 shorter, 1 longer' },
        { step: 'dedupe', removed: 1, kept: 2, reason: 'exact duplicates of "text" (whitespace collapsed)' },
      ]);
      assert.equal(
        out.formatReport(),
        [
          'step           removed  kept  reason',
          'from                 0     6  data in memory',
          'filter               1     5  starts with "another"',
          'lengthBetween        2     3  "text" outside [6, 40] chars: 1 shorter, 1 longer',
          'dedupe               1     2  exact duplicates of "text" (whitespace collapsed)',
        ].join('\n'),
      );
      assert.deepEqual(out.reportTable().array('removed'), [0, 1, 2, 1]);
      assert.equal(formatReport(out.report), out.formatReport());
    });

    it('lengthBetween counts tokens with a tokenizer and message lists by their contents', () => {
      const words = { encode: (s: string) => s.split(/\s+/).filter(Boolean).map(() => 0) };
      const c = corpusOf(['one', 'one two three', 'one two three four five']).lengthBetween('text', 2, 4, { tokenizer: words });
      assert.deepEqual(c.rows().map((r) => r.id), [1]);
      assert.equal(c.report[1].reason, '"text" outside [2, 4] tokens: 1 shorter, 1 longer');
      const chats = Corpus.from([{ messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' }] }]);
      assert.equal(cellText(chats.table.array('messages')[0]), 'hi\nhello');
      assert.equal(chats.lengthBetween('messages', 8, 8).size, 1);
      assert.equal(chats.lengthBetween('messages', 9, 100).size, 0);
    });

    it('dedupe by several columns, optionally ignoring case; unknown columns throw', () => {
      const c = Corpus.from([
        { prompt: 'Q', completion: 'A' },
        { prompt: 'q', completion: 'a' },
        { prompt: 'Q', completion: 'B' },
        { prompt: 'Q A', completion: '' },
      ]);
      assert.equal(c.dedupe(['prompt', 'completion']).size, 4);
      const folded = c.dedupe(['prompt', 'completion'], { ignoreCase: true });
      assert.equal(folded.size, 3);
      assert.equal(folded.report[1].reason, 'exact duplicates of "prompt" + "completion" (whitespace collapsed, case ignored)');
      assert.throws(() => c.dedupe('text'), /no column "text" \(columns: prompt, completion\)/);
    });

    it('shuffle is a seeded permutation', () => {
      const c = corpusOf(Array.from({ length: 50 }, (_, i) => `t${i}`));
      const a = c.shuffle(3).rows().map((r) => r.id);
      assert.deepEqual(c.shuffle(3).rows().map((r) => r.id), a);
      assert.notDeepEqual(c.shuffle(4).rows().map((r) => r.id), a);
      assert.notDeepEqual(a, [...a].sort((x, y) => x - y));
      assert.deepEqual([...a].sort((x, y) => x - y), c.rows().map((r) => r.id));
      assert.deepEqual(c.shuffle(3).report[1], { step: 'shuffle', removed: 0, kept: 50, reason: 'seed 3' });
    });

    it('sample takes n rows or a fraction, seeded, in the original order', () => {
      const c = corpusOf(Array.from({ length: 40 }, (_, i) => `t${i}`));
      const s = c.sample(10, 1).rows().map((r) => r.id);
      assert.equal(s.length, 10);
      assert.deepEqual(s, [...s].sort((x, y) => x - y));
      assert.deepEqual(c.sample(10, 1).rows().map((r) => r.id), s);
      assert.notDeepEqual(c.sample(10, 2).rows().map((r) => r.id), s);
      assert.equal(c.sample(0.25, 1).size, 10);
      assert.deepEqual(c.sample(0.25, 1).report[1], { step: 'sample', removed: 30, kept: 10, reason: 'random sample of 10 rows (seed 1)' });
      assert.throws(() => c.sample(41), /cannot take 41 of 40 rows/);
    });

    it('split gives exact, disjoint, complete and deterministic parts', () => {
      const c = corpusOf(Array.from({ length: 101 }, (_, i) => `t${i}`));
      const parts = c.split({ train: 0.9, validation: 0.05, test: 0.05 }, 7);
      const ids = (k: 'train' | 'validation' | 'test') => parts[k].rows().map((r) => r.id);
      assert.deepEqual([parts.train.size, parts.validation.size, parts.test.size], [91, 5, 5]);
      const all = [...ids('train'), ...ids('validation'), ...ids('test')];
      assert.equal(new Set(all).size, 101);
      assert.deepEqual(c.split({ train: 0.9, validation: 0.05, test: 0.05 }, 7).test.rows(), parts.test.rows());
      assert.notDeepEqual(c.split({ train: 0.9, validation: 0.05, test: 0.05 }, 8).test.rows(), parts.test.rows());
      assert.deepEqual(parts.validation.report[1], { step: 'split:validation', removed: 96, kept: 5, reason: 'share 0.05 of 101 rows (seed 7)' });
      const ordered = c.split({ head: 0.5, tail: 0.5 }, 0, { shuffle: false });
      assert.deepEqual(ordered.tail.rows().map((r) => r.id), Array.from({ length: 50 }, (_, i) => 51 + i));
      assert.throws(() => c.split({ train: 0.9, test: 0.2 }), /sum to 1/);
    });

    it('pipe runs arquero verbs and reports the change', () => {
      const c = corpusOf(['a', 'bb', 'ccc']).pipe((t) => t.filter((d: { text: string }) => d.text.length > 1), 'arquero filter');
      assert.deepEqual(c.report[1], { step: 'pipe', removed: 1, kept: 2, reason: 'arquero filter' });
    });
  });

  describe('near-duplicate removal (MinHash + LSH)', () => {
    it('removes near copies and keeps distinct texts, with an exact count', () => {
      const originals = sentences(60, 20, 1);
      const copies = originals.slice(0, 15).map(nearCopy);
      const c = corpusOf([...originals, ...copies]).nearDedupe('text', { threshold: 0.7, seed: 5 });
      assert.deepEqual(c.rows().map((r) => r.id), Array.from({ length: 60 }, (_, i) => i));
      assert.equal(c.report[1].removed, 15);
      assert.equal(
        c.report[1].reason,
        `near duplicates of "text" (Jaccard ≥ 0.7 over 5-char shingles, MinHash 128 perms, LSH ${lshParams(0.7, 128).bands}×${lshParams(0.7, 128).rows}, seed 5)`,
      );
    });

    it('works over word shingles too, and is deterministic for a seed', () => {
      const originals = sentences(40, 30, 2);
      const texts = [...originals, ...originals.slice(0, 10).map(nearCopy)];
      const opts = { threshold: 0.6, shingle: 'word' as const, n: 2, seed: 9 };
      const a = nearDuplicates(texts, opts);
      assert.deepEqual(a, nearDuplicates(texts, opts));
      assert.deepEqual(a.duplicateOf.slice(40), Array.from({ length: 10 }, (_, i) => i));
      assert.deepEqual(a.duplicateOf.slice(0, 40), new Array(40).fill(-1));
    });

    it('MinHash signatures estimate Jaccard, and LSH makes few exact comparisons', () => {
      const texts = [...sentences(60, 20, 1), ...sentences(15, 20, 1).map(nearCopy)];
      const sets = texts.map((t) => shingleHashes(t));
      const agree = (i: number, j: number, seed: number) => {
        const [a, b] = [minhashSignature(sets[i], 256, seed), minhashSignature(sets[j], 256, seed)];
        return a.filter((v, k) => v === b[k]).length / a.length;
      };
      for (const [i, j] of [[0, 60], [3, 63], [0, 1], [5, 9]]) {
        assert.ok(Math.abs(agree(i, j, 1) - jaccard(sets[i], sets[j])) < 0.08, `pair ${i},${j}: ${agree(i, j, 1)} vs ${jaccard(sets[i], sets[j])}`);
      }
      assert.notDeepEqual(minhashSignature(sets[0], 16, 1), minhashSignature(sets[0], 16, 2));
      // 75 texts → 2775 pairs; the banding should compare little more than the 15 true copies.
      const found = nearDuplicates(texts, { threshold: 0.7 });
      assert.ok(found.comparisons >= 15 && found.comparisons < 40, `comparisons: ${found.comparisons}`);
    });

    it('keeps a pair whose Jaccard is just below the threshold and removes it just above', () => {
      const [x] = sentences(1, 20, 3);
      const y = nearCopy(x);
      const s = jaccard(shingleHashes(x), shingleHashes(y));
      assert.ok(s > 0.5 && s < 0.95, `similarity ${s}`);
      assert.deepEqual(nearDuplicates([x, y], { threshold: s + 0.01, bands: 64 }).duplicateOf, [-1, -1]);
      const found = nearDuplicates([x, y], { threshold: s - 0.01, bands: 64 });
      assert.deepEqual(found.duplicateOf, [-1, 0]);
      assert.equal(found.similarity[1], s);
    });

    it('shingles, Jaccard and LSH parameters', () => {
      assert.equal(shingleHashes('abcdef', { n: 5 }).length, 2);
      assert.equal(shingleHashes('ABC  def', { n: 5 }).length, shingleHashes('abc def', { n: 5 }).length);
      assert.deepEqual(shingleHashes('ABCdef'), shingleHashes('abcdef'));
      assert.notDeepEqual(shingleHashes('ABCdef', { ignoreCase: false }), shingleHashes('abcdef', { ignoreCase: false }));
      assert.equal(shingleHashes('a b c d', { shingle: 'word', n: 2 }).length, 3);
      assert.equal(jaccard(Uint32Array.of(1, 2, 3), Uint32Array.of(2, 3, 4)), 0.5);
      const hi = lshParams(0.9, 128);
      const lo = lshParams(0.3, 128);
      assert.ok(hi.bands * hi.rows <= 128 && lo.bands * lo.rows <= 128);
      assert.ok(hi.rows > lo.rows, `${JSON.stringify(hi)} vs ${JSON.stringify(lo)}`);
      assert.equal(normalizeText('  A \n b ', { ignoreCase: true }), 'a b');
      assert.deepEqual(exactDuplicates(['a b', 'a  b', 'c']).duplicateOf, [-1, 0, -1]);
      assert.deepEqual(exactDuplicates(['a b', 'a  b'], { ignoreWhitespace: false }).duplicateOf, [-1, -1]);
    });
  });

  describe('mix', () => {
    const task = corpusOf(Array.from({ length: 1000 }, (_, i) => `task ${i}`));
    const general = Corpus.from<TextRow>(
      Array.from({ length: 500 }, (_, i) => ({ id: i, text: `general ${i}`, domain: 'web' })),
      { name: 'general' },
    );

    it('mixes by weight with a source column, exact counts for a size', () => {
      const m = Corpus.mix([{ data: task, weight: 0.7, name: 'task' }, { data: general, weight: 0.3 }], { size: 400, seed: 1 });
      const sources = m.table.array('source') as string[];
      assert.equal(m.size, 400);
      assert.equal(sources.filter((s) => s === 'task').length, 280);
      assert.equal(sources.filter((s) => s === 'general').length, 120);
      assert.deepEqual(m.columns, ['id', 'text', 'source', 'domain']);
      // Shuffled: the first 100 rows hold both sources in roughly their shares.
      const head = sources.slice(0, 100).filter((s) => s === 'task').length;
      assert.ok(head > 55 && head < 85, `task rows in the first 100: ${head}`);
      // Rows are real rows of their source, without repeats.
      const rows = m.rows();
      assert.ok(rows.every((r) => (r.source === 'task' ? r.text === `task ${r.id}` && r.domain === undefined : r.text === `general ${r.id}`)));
      assert.equal(new Set(rows.map((r) => r.text)).size, 400);
      assert.deepEqual(Corpus.mix([{ data: task, weight: 0.7, name: 'task' }, { data: general, weight: 0.3 }], { size: 400, seed: 1 }).rows(), rows);
      assert.deepEqual(m.report.map((e) => e.step), ['task/from', 'general/from', 'mix']);
      assert.deepEqual(m.report[2], { step: 'mix', removed: 1100, kept: 400, reason: 'task 280 of 1000 (weight 0.700); general 120 of 500 (weight 0.300)' });
    });

    it('defaults to the largest size that needs no repeats, and repeats whole sets when asked for more', () => {
      const m = Corpus.mix([{ data: task, weight: 1, name: 'task' }, { data: general, weight: 1 }], { seed: 2 });
      assert.equal(m.size, 1000); // general (500) limits a 50/50 mixture to 1000 rows
      const up = Corpus.mix([{ data: task, weight: 0.5, name: 'task' }, { data: general, weight: 0.5 }], { size: 2400, seed: 2 });
      const generalTexts = up.rows().filter((r) => r.source === 'general').map((r) => String(r.text));
      assert.equal(generalTexts.length, 1200);
      assert.equal(new Set(generalTexts).size, 500); // every general row at least twice, then 200 more
      assert.match(up.report[up.report.length - 1].reason, /general 1200 repeated ×2\.40/);
    });

    it('refuses bad weights, duplicate names and an existing source column', () => {
      assert.throws(() => Corpus.mix([{ data: task, weight: 0 }]), /weights must be positive/);
      assert.throws(() => Corpus.mix([{ data: task, weight: 1, name: 'a' }, { data: general, weight: 1, name: 'a' }]), /names must differ/);
      const m = Corpus.mix([{ data: task, weight: 1, name: 'task' }]);
      assert.throws(() => Corpus.mix([{ data: m, weight: 1, name: 'x' }]), /already has a "source" column/);
      assert.equal(Corpus.mix([{ data: m, weight: 1, name: 'x' }], { sourceColumn: 'outer' }).columns.includes('outer'), true);
    });
  });

  describe('Corpus.load', () => {
    let dir: string;
    beforeEach(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-corpus-'));
    });
    afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

    it('loads, validates with skipBad, and carries problems and file rows through later verbs', () => {
      const file = path.join(dir, 'sft.jsonl');
      const lines = [
        '{"prompt": "a", "completion": "x"}',
        '{"prompt": "b", "completion": ""}',
        'broken',
        '{"prompt": "c", "completion": "y"}',
        '{"prompt": "d", "completion": "x"}',
        '{"prompt": "e", "completion": ""}',
      ];
      fs.writeFileSync(file, lines.join('\n'));
      const c = Corpus.load(file, { skipBad: true });
      assert.equal(c.name, 'sft');
      assert.deepEqual(c.report, [
        { step: 'load', removed: 0, kept: 6, reason: file },
        { step: 'validate', removed: 3, kept: 3, reason: '2 × column "completion": empty string; 1 × bad JSON' },
      ]);
      assert.deepEqual(c.problems.map((p) => [p.row, p.column]), [
        [2, 'completion'],
        [3, undefined],
        [6, 'completion'],
      ]);
      const d = c.dedupe('completion');
      assert.deepEqual(d.table.array('__row'), [1, 4]);
      assert.equal(d.problems.length, 3);
      assert.deepEqual(d.columns, ['prompt', 'completion']);
      assert.throws(() => Corpus.load(file), { message: `${file}: row 2, column "completion": empty string` });
    });
  });
});
