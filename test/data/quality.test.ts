import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { inspect } from 'util';
import { Corpus } from '../../src/data/corpus';
import { lengthStats, qualityReport, type QualityTokenizer } from '../../src/data/quality';
import { dataset } from '../../src/lab/data';
import { Tokenizer } from '../../src/tokenizer/tokenizer';
import { mimeBundleKey } from '../../src/viz/display';

// Every check has a row made for it; the comments give the hand count.
const TEXTS = [
  'the quick brown fox jumps over the lazy dog', //                        1
  'the quick brown fox jumps over the lazy dog', //                        2 exact copy of 1
  'the  quick brown fox jumps over the lazy dog', //                       3 exact copy of 1 (whitespace)
  'a completely different sentence about training data quality checks', // 4
  'a completely different sentence about training data quality check!', // 5 near copy of 4
  'bad bytes \uFFFD here', //                                              6 replacement character
  'bell\u0007 character', //                                               7 control character
  'Latin and кириллица mixed', //                                          8 mixed scripts
  '', //                                                                   9 empty
  '   \n ', //                                                            10 whitespace only = exact copy of 9
  'cafe\u0301 au lait', //                                                11 not NFC
  'tab\tand newline\nare fine', //                                        12 no anomaly
];

// Pieces of three characters; a piece holding '¤' is the unknown token 0.
const chunks: QualityTokenizer = {
  encode: (text) => Array.from({ length: Math.ceil(text.length / 3) }, (_, k) => (text.slice(3 * k, 3 * k + 3).includes('¤') ? 0 : 1 + k)),
  specialTokens: { unk: { id: 0 } },
};

const tinyTokenizer = () => Tokenizer.load(path.join(__dirname, '..', '..', 'models', 'tiny-llama', 'tokenizer.json'));

describe('data/quality', () => {
  describe('hand-counted fixture', () => {
    const q = Corpus.from(TEXTS.map((text) => ({ text })), { name: 'fixture' }).quality();

    it('counts exact duplicates (whitespace collapsed) with the most repeated texts first', () => {
      assert.equal(q.rows, 12);
      assert.deepEqual(q.columns, ['text']);
      assert.equal(q.duplicates.count, 3); // rows 2, 3, 10
      assert.equal(q.duplicates.groups, 2);
      assert.equal(q.duplicates.share, 3 / 12);
      assert.deepEqual(q.duplicates.top, [{ text: TEXTS[0], count: 3 }, { text: '', count: 2 }]);
    });

    it('counts near duplicates beyond the exact ones, with the threshold and the pair', () => {
      assert.equal(q.nearDuplicates.count, 1);
      assert.equal(q.nearDuplicates.clusters, 1);
      assert.equal(q.nearDuplicates.threshold, 0.8);
      assert.equal(q.nearDuplicates.examples.length, 1);
      assert.equal(q.nearDuplicates.examples[0].row, 5);
      assert.equal(q.nearDuplicates.examples[0].of, 4);
      assert.ok(q.nearDuplicates.examples[0].similarity >= 0.8 && q.nearDuplicates.examples[0].similarity < 1);
      // A stricter threshold than their similarity finds none.
      const strict = Corpus.from(TEXTS.map((text) => ({ text }))).quality({ near: { threshold: 0.99 } });
      assert.equal(strict.nearDuplicates.count, 0);
      assert.equal(strict.nearDuplicates.threshold, 0.99);
    });

    it('finds each charset anomaly in exactly its row', () => {
      assert.deepEqual([q.replacement.count, q.replacement.rows], [1, [6]]);
      assert.deepEqual([q.control.count, q.control.rows], [1, [7]]); // tab and newline (rows 10, 12) are not counted
      assert.deepEqual([q.mixedScripts.count, q.mixedScripts.rows], [1, [8]]);
      assert.match(q.mixedScripts.examples[0], /^Latin\+Cyrillic: /);
      // µ (U+00B5) is a letter of the Common script, ε one of Greek.
      const micro = Corpus.from([{ text: 'µs is short for microseconds' }, { text: 'for every ε > 0' }]).quality();
      assert.deepEqual(micro.mixedScripts.rows, [2]);
      assert.deepEqual([q.nonNfc.count, q.nonNfc.rows], [1, [11]]);
      assert.deepEqual([q.empty.count, q.empty.rows, q.empty.share], [2, [9, 10], 2 / 12]);
      assert.equal(q.control.examples[0], 'bell\\u0007 character');
    });

    it('reports the rows the text validator rejects', () => {
      assert.equal(q.format.format, 'text');
      assert.equal(q.format.count, 2);
      assert.deepEqual(q.format.rows, [9, 10]);
      assert.deepEqual(q.format.examples, ['empty string', 'whitespace only']);
    });

    it('gives the character lengths and their histogram', () => {
      const lengths = TEXTS.map((t) => t.length);
      const s = q.lengths.chars;
      assert.equal(s.unit, 'chars');
      assert.equal(s.min, 0);
      assert.equal(s.max, Math.max(...lengths));
      assert.equal(s.counts.reduce((a, b) => a + b, 0), 12);
      assert.equal(q.lengths.tokens, undefined);
      assert.equal(q.tokenizer, undefined);
      // Each length falls into the bin its edges say.
      for (const v of lengths) assert.ok(s.edges.some((e, j) => j < s.counts.length && v >= e && v < s.edges[j + 1]));
    });

    it('lists one table row per check, with counts, shares and examples', () => {
      const rows = q.table().objects() as { check: string; count: number; share: number; examples: string }[];
      const byCheck = Object.fromEntries(rows.map((r) => [r.check.replace(/ \(.*$/, ''), r]));
      assert.deepEqual(Object.keys(byCheck), ['exact duplicates', 'near duplicates', 'empty or whitespace only', 'U+FFFD replacement characters',
        'control characters', 'mixed scripts', 'not NFC', 'format errors']);
      assert.deepEqual(rows.map((r) => r.count), [3, 1, 2, 1, 1, 1, 1, 2]);
      assert.equal(byCheck['near duplicates'].check, 'near duplicates (Jaccard ≥ 0.8, 1 clusters)');
      assert.match(byCheck['near duplicates'].examples, /^row 5 ≈ row 4 \(0\.\d\d\)$/);
      assert.match(byCheck['format errors'].examples, /<table>: row 9, column "text": empty string/);
      assert.match(byCheck['exact duplicates'].examples, /^×3 the quick brown fox/);
      assert.equal(byCheck['U+FFFD replacement characters'].examples, 'row 6: bad bytes \uFFFD here');
    });

    it('charts hold the histogram counts and the problem shares', () => {
      const [hist, shares] = q.plot();
      assert.deepEqual(hist.spec.data[0].y, q.lengths.chars.counts);
      assert.equal((hist.spec.data[0].x as string[]).length, q.lengths.chars.counts.length);
      assert.equal((hist.spec.data[0].x as string[])[0], `${q.lengths.chars.edges[0]}–${q.lengths.chars.edges[1] - 1}`);
      assert.deepEqual(shares.spec.data[0].y, [3, 1, 2, 1, 1, 1, 1, 2].map((c) => c / 12));
      assert.match(hist.svg(), /<rect/);
    });

    it('prints a summary and shows the table and charts in a notebook', () => {
      const text = inspect(q);
      assert.match(text, /^Quality of "fixture": 12 rows, columns text/);
      assert.match(text, /exact duplicates\s+3\s+25\.00 %/);
      const bundle = q[mimeBundleKey]();
      assert.equal(bundle['text/plain'], text);
      assert.match(bundle['text/html'], /U\+FFFD replacement characters/);
      assert.match(bundle['text/html'], /tl-chart/);
    });
  });

  describe('format errors of a messages dataset', () => {
    const rows = [
      { messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello.' }] },
      { messages: [{ role: 'user', content: 'Hi' }, { role: 'bot', content: 'Hello.' }] },
      { messages: [{ role: 'user', content: 'Only a question?' }] },
      { messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello.' }] },
    ];

    it('come from the validator, with row numbers and messages; the message contents are checked as text', () => {
      const q = qualityReport(Corpus.from(rows));
      assert.deepEqual(q.columns, ['messages']);
      assert.equal(q.format.format, 'messages');
      assert.equal(q.format.count, 2);
      assert.deepEqual(q.format.rows, [2, 3]);
      assert.match(q.format.examples[0], /^message 2: unknown role "bot"/);
      assert.match(q.format.examples[1], /no assistant message/);
      // Rows 2 and 4 repeat row 1's contents (roles are not part of the text, as in `dedupe`).
      assert.equal(q.duplicates.count, 2);
      assert.deepEqual([q.lengths.chars.min, q.lengths.chars.max], ['Hi\nHello.'.length, 'Only a question?'.length]);
    });

    it('a table the format cannot apply to is one error that counts every row; format: false skips the check', () => {
      const notes = Corpus.from([{ body: 'a' }, { body: 'b' }]);
      const q = notes.quality({ format: 'text' });
      assert.deepEqual(q.columns, ['body']);
      assert.equal(q.format.count, 2);
      assert.match(q.format.error!, /column "text": missing from the table/);
      assert.equal(notes.quality({ format: false }).format.count, 0);
    });

    it('rejects unknown options and columns by name', () => {
      assert.throws(() => Corpus.from(rows).quality({ tokeniser: chunks } as never), /quality: unknown option "tokeniser"; did you mean "tokenizer"\?/);
      assert.throws(() => Corpus.from(rows).quality({ columns: 'text' }), /quality: no column "text" \(columns: messages\)/);
      assert.throws(() => Corpus.from(rows).quality({ minPieces: 1 }), /minPieces must be an integer ≥ 2/);
    });
  });

  describe('a loaded file', () => {
    let dir: string;
    before(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-quality-'));
      fs.writeFileSync(path.join(dir, 'sft.jsonl'), [
        JSON.stringify({ prompt: 'Say hi', completion: 'hi' }),
        '{"prompt": "broken',
        JSON.stringify({ prompt: 'Say hi', completion: 'hi' }),
        JSON.stringify({ prompt: 'Say bye', completion: '' }),
      ].join('\n'));
    });
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    it('names the rows by their line in the file; rows dropped at load are counted apart', () => {
      const file = path.join(dir, 'sft.jsonl');
      const raw = Corpus.load(file, { validate: false, badRows: 'keep' }).quality();
      assert.deepEqual(raw.format.rows, [2, 4]);
      assert.equal(raw.format.problems[1].file, file);
      assert.match(raw.format.examples[1], /empty string/);
      assert.deepEqual(raw.duplicates.top.map((t) => t.count), [2]);
      const loaded = Corpus.load(file, { skipBad: true }).quality();
      assert.equal(loaded.rows, 2);
      assert.equal(loaded.format.count, 0);
      assert.equal(loaded.format.droppedEarlier, 2);
      assert.match(String((loaded.table().objects() as { examples: string }[])[7].examples), /^2 rows dropped earlier/);
    });
  });

  describe('with a tokenizer', () => {
    it('counts unknown tokens and words of ≥ minPieces tokens (hand-counted, 3-character pieces)', () => {
      const q = Corpus.from([{ text: 'ab abcdefghij' }, { text: 'abcdefghij xy¤' }]).quality({ tokenizer: chunks });
      // Words: "ab" (1 piece), " abcdefghij" (11 chars: 4), "abcdefghij" (10 chars: 4), " xy" (1).
      assert.equal(q.tokenizer!.fragmented.words, 4);
      assert.equal(q.tokenizer!.fragmented.count, 2);
      assert.equal(q.tokenizer!.fragmented.share, 0.5);
      assert.deepEqual(q.tokenizer!.fragmented.top.map((w) => [w.word, w.pieces, w.count]), [['abcdefghij', 4, 2]]);
      // Tokens: 13 chars → 5, 14 chars → 5; the last piece "xy¤" is the unknown token.
      assert.equal(q.tokenizer!.tokens, 10);
      assert.deepEqual(q.tokenizer!.unknown, { count: 1, share: 0.1 });
      assert.deepEqual([q.lengths.tokens!.min, q.lengths.tokens!.max], [5, 5]);
      const unseen = Corpus.from([{ text: 'ab abcdefghij' }]).quality({ tokenizer: chunks, minPieces: 5 });
      assert.equal(unseen.tokenizer!.fragmented.count, 0);
    });

    it('counts the byte pieces of a byte-level BPE: the four UTF-8 bytes of a character it never learned', () => {
      const tok = tinyTokenizer();
      const q = Corpus.from([{ text: 'hello 𝔘' }, { text: 'hello' }]).quality({ tokenizer: tok });
      const total = tok.encode('hello 𝔘').length + tok.encode('hello').length;
      assert.deepEqual(q.tokenizer!.unknown, { count: 4, share: 4 / total });
      const rows = q.table().objects() as { check: string; count: number }[];
      assert.deepEqual(rows.slice(-2).map((r) => [r.check, r.count]), [['unknown or byte-piece tokens', 4], ['words split into ≥ 4 tokens', q.tokenizer!.fragmented.count]]);
      assert.equal(q.plot().length, 3); // chars, tokens, problem shares
    });
  });

  describe('on a shipped dataset', () => {
    it('the instructions give plausible figures', () => {
      const corpus = Corpus.from(dataset('instructions'), { name: 'instructions' }).sample(300, 1);
      const q = corpus.quality({ tokenizer: tinyTokenizer() });
      assert.equal(q.rows, 300);
      assert.equal(q.format.format, 'messages');
      assert.equal(q.format.count, 0);
      assert.equal(q.empty.count, 0);
      assert.equal(q.replacement.count, 0);
      assert.ok(q.duplicates.share < 0.05, `duplicate share ${q.duplicates.share}`);
      const { chars, tokens } = q.lengths;
      assert.ok(chars.min > 10 && chars.median > 50 && chars.median < 2000 && chars.p95 <= chars.max, inspect(chars));
      assert.ok(tokens!.median < chars.median && tokens!.median > chars.median / 8, inspect(tokens));
      assert.equal(chars.counts.reduce((a, b) => a + b, 0), 300);
      assert.ok(q.tokenizer!.unknown.share < 0.05, inspect(q.tokenizer));
      assert.ok(q.tokenizer!.fragmented.share > 0.001 && q.tokenizer!.fragmented.share < 0.5, inspect(q.tokenizer));
    });
  });

  it('lengthStats bins integers in equal widths (hand-computed)', () => {
    const s = lengthStats([1, 2, 2, 5, 9], 'chars', 4);
    assert.deepEqual(s.edges, [1, 4, 7, 10]); // width ceil(9 / 4) = 3
    assert.deepEqual(s.counts, [3, 1, 1]);
    assert.equal(s.median, 2);
    assert.ok(Math.abs(s.p95 - 8.2) < 1e-12); // 5 + 0.8 · (9 − 5)
    assert.equal(s.mean, 19 / 5);
    assert.deepEqual(lengthStats([7, 7], 'tokens').counts, [2]);
  });

  it('lengthStats takes more rows than a call may have arguments (300k)', () => {
    const lengths = Array.from({ length: 300_000 }, (_, i) => i % 1000);
    const s = lengthStats(lengths, 'chars', 10);
    assert.equal(s.min, 0);
    assert.equal(s.max, 999);
    assert.equal(s.counts.reduce((a, b) => a + b, 0), 300_000);
  });
});
