import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import fc from 'fast-check';
import { ByteLevelPreTokenizer } from '@huggingface/tokenizers';
import { preTokenize, toByteLevel, Tokenizer, type TokenizerJson } from '../../src/tokenizer';
import { englishText, trickyStrings } from './fixtures';

describe('tokenizer/Tokenizer', () => {
  let tok: Tokenizer;
  let dir: string;

  before(() => {
    tok = Tokenizer.train([englishText], { vocabSize: 512 });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-tok-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  describe('round-trip', () => {
    it('decodes every tricky string back exactly', () => {
      for (const s of trickyStrings) {
        assert.equal(tok.decode(tok.encode(s)), s, JSON.stringify(s));
        assert.equal(tok.decode(tok.encode(s, { parseSpecial: false })), s, JSON.stringify(s));
      }
    });

    it('property: decode(encode(s)) === s for arbitrary full-unicode strings', () => {
      fc.assert(
        fc.property(fc.string({ unit: 'binary', maxLength: 80 }), (s) => {
          assert.equal(tok.decode(tok.encode(s)), s);
        }),
        { numRuns: 300 },
      );
    });

    it('property: also for mixtures of words, whitespace, specials and unicode', () => {
      const piece = fc.oneof(
        fc.constantFrom(' ', '  ', '\r\n', '\n\n', '\t', ' .', "'s", "n't", '<|endoftext|>', '<|im_start|>', '<|pad', '🙂', 'e\u0301', '\u0000', '日本'),
        fc.string({ unit: 'binary', maxLength: 6 }),
        fc.constantFrom(...englishText.split(/\b/).slice(0, 200)),
      );
      fc.assert(
        fc.property(fc.array(piece, { maxLength: 25 }).map((a) => a.join('')), (s) => {
          assert.equal(tok.decode(tok.encode(s)), s);
          // Unparsed specials are plain text, so skipping specials must not remove them.
          assert.equal(tok.decode(tok.encode(s, { parseSpecial: false }), { skipSpecialTokens: true }), s);
        }),
        { numRuns: 300 },
      );
    });

    it('keeps " ." and " n\'t" (the library would "clean up" these spaces by default)', () => {
      const s = "Hello . I do n't know , right ?";
      assert.equal(tok.decode(tok.encode(s)), s);
    });

    it('encodes "" as [] and decodes [] as ""', () => {
      assert.deepEqual(tok.encode(''), []);
      assert.equal(tok.decode([]), '');
      assert.deepEqual(tok.encode('', { addBos: true, addEos: true }), [1, 0]);
    });

    it('decodes typed arrays', () => {
      const ids = tok.encode('the keeper');
      assert.equal(tok.decode(Int32Array.from(ids)), 'the keeper');
    });
  });

  describe('special tokens', () => {
    it('gets the documented ids and roles', () => {
      const s = tok.specialTokens;
      assert.deepEqual(
        { bos: s.bos, eos: s.eos, pad: s.pad, imStart: s.imStart, imEnd: s.imEnd, unk: s.unk },
        {
          bos: { token: '<|startoftext|>', id: 1 },
          eos: { token: '<|endoftext|>', id: 0 },
          pad: { token: '<|pad|>', id: 2 },
          imStart: { token: '<|im_start|>', id: 3 },
          imEnd: { token: '<|im_end|>', id: 4 },
          unk: undefined,
        },
      );
      assert.deepEqual(s.all.map((t) => t.id), [0, 1, 2, 3, 4]);
      assert.ok(Object.isFrozen(s));
    });

    it('encodes each special as a single token, alone and inside text', () => {
      for (const { token, id } of tok.specialTokens.all) {
        assert.deepEqual(tok.encode(token), [id], token);
        const ids = tok.encode(`a${token}b`);
        assert.deepEqual(ids, [tok.tokenToId('a'), id, tok.tokenToId('b')], token);
        assert.equal(tok.idToToken(id), token);
      }
    });

    it('parseSpecial: false encodes special strings as ordinary text', () => {
      const ids = tok.encode('<|im_end|>', { parseSpecial: false });
      assert.ok(ids.length > 1);
      assert.ok(ids.every((id) => id >= 5), String(ids));
    });

    it('adds bos/eos on request and skips specials on decode', () => {
      const plain = tok.encode('the light');
      assert.deepEqual(tok.encode('the light', { addBos: true }), [1, ...plain]);
      assert.deepEqual(tok.encode('the light', { addEos: true }), [...plain, 0]);
      const ids = [1, 3, ...plain, 4, 0, 2, 2];
      assert.equal(tok.decode(ids), '<|startoftext|><|im_start|>the light<|im_end|><|endoftext|><|pad|><|pad|>');
      assert.equal(tok.decode(ids, { skipSpecialTokens: true }), 'the light');
    });

    it('throws when asked for a bos/eos the tokenizer lacks', () => {
      const none = Tokenizer.train([englishText], {
        vocabSize: 300,
        eosToken: null,
        bosToken: null,
        padToken: null,
      });
      assert.equal(none.specialTokens.eos, undefined);
      assert.equal(none.specialTokens.bos, undefined);
      assert.throws(() => none.encode('x', { addEos: true }), /addEos requested but trained tokenizer has no eos token/);
      assert.throws(() => none.encode('x', { addBos: true }), /addBos.*no bos token/);
    });

    it('uses explicit role names given to load, and rejects unknown ones', () => {
      const custom = Tokenizer.train([englishText], { vocabSize: 300, eosToken: '[END]' });
      assert.deepEqual(custom.specialTokens.eos, { token: '[END]', id: 0 });
      const file = path.join(dir, 'custom.json');
      custom.save(file);
      // The file does not record roles: an unknown spelling is not guessed...
      assert.equal(Tokenizer.load(file).specialTokens.eos, undefined);
      // ...unless named.
      assert.deepEqual(Tokenizer.load(file, { specialTokens: { eos: '[END]' } }).specialTokens.eos, { token: '[END]', id: 0 });
      assert.throws(() => Tokenizer.load(file, { specialTokens: { pad: '<nope>' } }), (e: Error) => e.message.includes(file) && /specialTokens\.pad "<nope>"/.test(e.message));
      // null: no token and no eos fallback.
      assert.equal(Tokenizer.load(file, { specialTokens: { eos: '[END]', pad: null } }).specialTokens.pad, undefined);
    });
  });

  describe('vocabulary access', () => {
    it('maps tokens and ids both ways', () => {
      assert.equal(tok.vocabSize, 512);
      assert.equal(tok.tokenToId('Ġthe') !== undefined, true);
      assert.equal(tok.idToToken(tok.tokenToId('Ġthe')!), 'Ġthe');
      assert.equal(tok.tokenToId('!'), 5 + 0x21);
      assert.equal(tok.tokenToId('no such token'), undefined);
      for (const bad of [-1, 512, 1.5, NaN]) assert.equal(tok.idToToken(bad), undefined, String(bad));
    });

    it('rejects ids outside the vocabulary on decode', () => {
      assert.throws(() => tok.decode([5, 512]), (e: Error) => e instanceof RangeError && /ids\[1\] = 512/.test(e.message));
      assert.throws(() => tok.decode([-1]), RangeError);
      assert.throws(() => tok.decode([2.5]), RangeError);
    });

    it('rejects non-string input to encode', () => {
      assert.throws(() => tok.encode(42 as unknown as string), /text must be a string/);
    });
  });

  describe('tokenizer.json', () => {
    it('is a complete HF ByteLevel BPE file', () => {
      const j = tok.toJSON();
      assert.deepEqual(Object.keys(j), ['version', 'truncation', 'padding', 'added_tokens', 'normalizer', 'pre_tokenizer', 'post_processor', 'decoder', 'model']);
      assert.equal(j.version, '1.0');
      assert.equal(j.truncation, null);
      assert.equal(j.padding, null);
      assert.equal(j.normalizer, null);
      assert.deepEqual(j.added_tokens[0], { id: 0, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
      assert.equal(j.added_tokens.length, 5);
      const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
      assert.deepEqual(j.pre_tokenizer, byteLevel);
      assert.deepEqual(j.post_processor, byteLevel);
      assert.deepEqual(j.decoder, byteLevel);
      const { vocab, merges, ...rest } = j.model;
      assert.deepEqual(rest, {
        type: 'BPE',
        dropout: null,
        unk_token: null,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: false,
        byte_fallback: false,
        ignore_merges: false,
      });
      assert.deepEqual(Object.keys(j.model), ['type', 'dropout', 'unk_token', 'continuing_subword_prefix', 'end_of_word_suffix', 'fuse_unk', 'byte_fallback', 'ignore_merges', 'vocab', 'merges']);
      assert.equal(Object.keys(vocab).length, 512);
      assert.equal(merges.length, 512 - 261);
      assert.ok((merges as unknown[]).every((m) => typeof m === 'string' && m.split(' ').length === 2));
    });

    it('toJSON returns a copy that callers cannot use to change the tokenizer', () => {
      const j = tok.toJSON();
      j.model.vocab['Ġthe'] = 3;
      (j.model.merges as string[]).length = 0;
      assert.notEqual(tok.toJSON().model.vocab['Ġthe'], 3);
      assert.equal(tok.toJSON().model.merges.length, 512 - 261);
      assert.equal(JSON.stringify(tok), JSON.stringify(tok.toJSON()));
    });

    it('save → load gives identical JSON and encodings; save is atomic', () => {
      const file = path.join(dir, 'sub', 'tokenizer.json');
      tok.save(file);
      assert.deepEqual(fs.readdirSync(path.dirname(file)), ['tokenizer.json']);
      const text = fs.readFileSync(file, 'utf8');
      assert.equal(text, JSON.stringify(tok.toJSON(), null, 2) + '\n');
      const loaded = Tokenizer.load(file);
      assert.equal(JSON.stringify(loaded.toJSON()), JSON.stringify(tok.toJSON()));
      assert.deepEqual(loaded.specialTokens, tok.specialTokens);
      assert.equal(loaded.vocabSize, tok.vocabSize);
      for (const s of [...trickyStrings, englishText]) assert.deepEqual(loaded.encode(s), tok.encode(s), JSON.stringify(s.slice(0, 30)));
      // Saving again over the file replaces it and leaves no temporary behind.
      Tokenizer.train(['a different corpus, a different corpus'], { vocabSize: 270 }).save(file);
      assert.equal(Tokenizer.load(file).vocabSize, 270);
      assert.deepEqual(fs.readdirSync(path.dirname(file)), ['tokenizer.json']);
    });

    it('save renames a temporary file over the target; a failed rename keeps the old file', () => {
      const file = path.join(dir, 'atomic.json');
      fs.writeFileSync(file, 'old');
      // The module object itself (an `import *` namespace is read-only); src sees the patch through it.
      const nodeFs: typeof fs = require('fs');
      const realRename = nodeFs.renameSync;
      const calls: [string, string][] = [];
      try {
        nodeFs.renameSync = (from: fs.PathLike, to: fs.PathLike) => {
          calls.push([String(from), String(to)]);
          assert.equal(fs.readFileSync(file, 'utf8'), 'old', 'target untouched until the rename');
          throw new Error('simulated crash');
        };
        assert.throws(() => tok.save(file), /atomic\.json: atomic write failed: simulated crash/);
      } finally {
        nodeFs.renameSync = realRename;
      }
      assert.equal(calls.length, 1);
      assert.equal(calls[0][1], file);
      assert.equal(fs.readFileSync(file, 'utf8'), 'old');
      assert.deepEqual(fs.readdirSync(dir).filter((f) => f.includes('.tmp-')), []);
    });

    it('save failure names the file and leaves no temporary file', () => {
      const target = path.join(dir, 'is-a-dir');
      fs.mkdirSync(path.join(target, 'inner'), { recursive: true });
      assert.throws(() => tok.save(target), (e: Error) => e.message.startsWith(`${target}: atomic write failed`));
      assert.deepEqual(fs.readdirSync(dir).filter((f) => f.includes('.tmp-')), []);
    });

    it('fromJSON copies its input and fills absent optional keys', () => {
      const j = tok.toJSON() as Partial<TokenizerJson>;
      delete j.truncation;
      delete j.padding;
      delete j.version;
      delete j.normalizer;
      const t = Tokenizer.fromJSON(j);
      j.model!.vocab['Ġthe'] = 0;
      assert.equal(t.tokenToId('Ġthe'), tok.tokenToId('Ġthe'));
      assert.equal(t.toJSON().model.vocab['Ġthe'], tok.tokenToId('Ġthe'));
      const out = t.toJSON();
      assert.equal(out.truncation, null);
      assert.equal(out.normalizer, null);
      assert.equal(out.version, '1.0');
      assert.deepEqual(t.encode(englishText), tok.encode(englishText));
    });

    it('accepts merges written as [left, right] pairs (tokenizers >= 0.20 style)', () => {
      const j = tok.toJSON();
      j.model.merges = (j.model.merges as string[]).map((m) => m.split(' ') as [string, string]);
      const t = Tokenizer.fromJSON(j);
      assert.deepEqual(t.encode(englishText), tok.encode(englishText));
    });
  });

  describe('malformed files', () => {
    const base = (): Record<string, unknown> => tok.toJSON() as unknown as Record<string, unknown>;
    const model = (j: Record<string, unknown>): Record<string, unknown> => j.model as Record<string, unknown>;
    const cases: [string, () => string | Record<string, unknown> | unknown[], RegExp][] = [
      ['bad JSON', () => '{"model": {', /not valid JSON/],
      ['an array', () => [1, 2], /expected a JSON object, got an array/],
      ['no model', () => { const j = base(); delete j.model; return j; }, /no "model" section/],
      ['model not an object', () => ({ ...base(), model: 'BPE' }), /"model" must be an object/],
      ['WordPiece model', () => { const j = base(); model(j).type = 'WordPiece'; return j; }, /model type "WordPiece" is not supported/],
      ['Unigram model', () => ({ ...base(), model: { type: 'Unigram', vocab: [['a', 0]] } }), /model type "Unigram"/],
      ['no vocab', () => { const j = base(); delete model(j).vocab; return j; }, /model has no "vocab"/],
      ['no merges', () => { const j = base(); delete model(j).merges; return j; }, /model has no "merges"/],
      ['no type, no merges', () => ({ ...base(), model: { vocab: { a: 0 } } }), /model has no "type"/],
      ['vocab id not an integer', () => { const j = base(); (model(j).vocab as Record<string, unknown>)['Ġthe'] = 'x'; return j; }, /model\.vocab\["Ġthe"\] must be a non-negative integer/],
      ['duplicate vocab id', () => { const j = base(); (model(j).vocab as Record<string, unknown>)['zzz'] = 7; return j; }, /id 7 is used by both/],
      ['malformed merge', () => { const j = base(); (model(j).merges as unknown[])[3] = 'abc'; return j; }, /model\.merges\[3\] is malformed/],
      ['merge token not in vocab', () => { const j = base(); (model(j).merges as unknown[])[2] = 'Ġ qqqq'; return j; }, /model\.merges\[2\].*"qqqq" is not in model\.vocab/],
      ['merge result not in vocab', () => { const j = base(); (model(j).merges as unknown[])[0] = 'Ā Ā'; return j; }, /model\.merges\[0\].*token "ĀĀ" is not in model\.vocab/],
      ['added token conflicting with vocab', () => { const j = base(); (j.added_tokens as { id: number }[])[1].id = 9; return j; }, /added_tokens\[1\] "<\|startoftext\|>" has id 9 but model\.vocab gives it id 1/],
      ['added token without content', () => { const j = base(); (j.added_tokens as unknown[])[0] = { id: 0 }; return j; }, /added_tokens\[0\] must be an object/],
      ['missing byte token', () => { const j = base(); delete (model(j).vocab as Record<string, unknown>)['Ā']; model(j).merges = []; return j; }, /lacks the byte token "Ā" \(byte 0x00\)/],
      ['bad component', () => ({ ...base(), decoder: 'ByteLevel' }), /"decoder" must be null or an object/],
      ['component the library does not know', () => ({ ...base(), decoder: { type: 'NoSuchDecoder' } }), /@huggingface\/tokenizers cannot use it: Unknown Decoder type: NoSuchDecoder/],
    ];
    for (const [name, make, problem] of cases) {
      it(`${name}: error names the file and the problem`, () => {
        const file = path.join(dir, `${name.replace(/\W+/g, '-')}.json`);
        const content = make();
        fs.writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
        assert.throws(
          () => Tokenizer.load(file),
          (e: Error) => e.message.startsWith(`${file}: `) && problem.test(e.message),
        );
      });
    }

    it('a missing file: error names the file', () => {
      const file = path.join(dir, 'nope', 'tokenizer.json');
      assert.throws(() => Tokenizer.load(file), (e: Error) => e.message.startsWith(`${file}: cannot read tokenizer file`));
    });

    it('fromJSON errors name the given source', () => {
      assert.throws(() => Tokenizer.fromJSON({}, 'hub:gpt2'), /^Error: hub:gpt2: no "model" section/);
      assert.throws(() => Tokenizer.fromJSON(null), /^Error: tokenizer JSON: not a tokenizer\.json/);
    });
  });

  it('splits text exactly like the library\'s ByteLevel pre-tokenizer', () => {
    const hf = new ByteLevelPreTokenizer({ type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true });
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 40 }), fc.constantFrom(...trickyStrings)), (s) => {
        assert.deepEqual(preTokenize(s).map(toByteLevel), hf.pre_tokenize_text(s));
      }),
      { numRuns: 200 },
    );
  });
});
