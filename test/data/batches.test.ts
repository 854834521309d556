import { strict as assert } from 'assert';
import * as tf from '@tensorflow/tfjs';
import { CausalLM, modelConfig, type ModelFamily } from '../../src/model';
import { Tokenizer } from '../../src/tokenizer';
import {
  ExampleBatches, batchDefaults, evalBatches, packPieces, padPieces, toPieces, toSftBatch,
  type BatchArrays, type BatchConfig, type ExampleLike, type Piece,
} from '../../src/data/batches';
import { tokenizeRows, tokenizeDefaults } from '../../src/data/tokenize';
import { Trainer, causalLmObjective } from '../../src/train';
import { engineReady, maxAbsDiff } from '../helpers';

const ids = { pad: 1, eos: 0 };
const cfg = (over: Partial<BatchConfig> = {}): BatchConfig => ({ ...batchDefaults, appendEos: false, ...over });
const ex = (tokens: number[], mask = tokens.map(() => 1)): ExampleLike => ({ ids: tokens, lossMask: mask });
const row = (a: BatchArrays, r: number, k: 'inputIds' | 'targets' | 'lossMask' | 'segmentIds' | 'positionIds') => Array.from(a[k].subarray(r * a.seqLen, (r + 1) * a.seqLen));
// Every (input, target, mask, position) of real tokens, as strings, sorted: a multiset to compare layouts.
const triples = (a: BatchArrays) => {
  const out: string[] = [];
  for (let i = 0; i < a.inputIds.length; i++) if (a.segmentIds[i] >= 0) out.push(`${a.inputIds[i]}>${a.targets[i]}:${a.lossMask[i]}@${a.positionIds[i]}`);
  return out.sort();
};

describe('data/batches', () => {
  before(engineReady);

  it('shifts: inputs ids[0..n-2], targets ids[1..n-1], and the mask of each target', () => {
    const { pieces } = toPieces([ex([10, 11, 12, 13], [1, 0, 1, 1])], ids, cfg());
    assert.deepEqual(pieces, [{ inputs: [10, 11, 12], targets: [11, 12, 13], mask: [0, 1, 1] }]);
  });

  it('appends EOS as a separator unless present or truncated, copying the last mask', () => {
    const c = cfg({ appendEos: true });
    assert.deepEqual(toPieces([ex([5, 6], [0, 1])], ids, c).pieces[0], { inputs: [5, 6], targets: [6, 0], mask: [1, 1] });
    assert.deepEqual(toPieces([ex([5, 6, 0])], ids, c).pieces[0].targets, [6, 0]);
    assert.deepEqual(toPieces([{ ...ex([5, 6]), fullLength: 9 }], ids, c).pieces[0].targets, [6]);
    assert.deepEqual(toPieces([ex([5, 6, 7], [1, 1, 0])], ids, c).stats.noLoss, 0);
    assert.deepEqual(toPieces([ex([5, 6, 7], [1, 1, 0])], ids, c).pieces[0].mask, [1, 0, 0]);
  });

  it('splits long examples into pieces that lose no token, or truncates them', () => {
    const long = ex([20, 21, 22, 23, 24, 25, 26, 27, 28, 29]);
    const { pieces, stats } = toPieces([long], ids, cfg({ seqLen: 4 }));
    assert.deepEqual(pieces.map((p) => p.inputs.length), [4, 4, 1]);
    assert.deepEqual(pieces.flatMap((p) => p.targets), long.ids.slice(1));
    assert.deepEqual(pieces.flatMap((p) => p.inputs), long.ids.slice(0, -1));
    assert.equal(stats.split, 1);
    const t = toPieces([long], ids, cfg({ seqLen: 4, overflow: 'truncate' }));
    assert.deepEqual(t.pieces, [{ inputs: [20, 21, 22, 23], targets: [21, 22, 23, 24], mask: [1, 1, 1, 1] }]);
    assert.equal(t.stats.truncated, 1);
    // A chunk whose targets are all prompt is left out; one-token examples have nothing to predict.
    const p = toPieces([ex([1, 2, 3, 4, 5, 6], [0, 0, 0, 0, 1, 1]), ex([7])], ids, cfg({ seqLen: 2 }));
    assert.deepEqual(p.pieces.map((x) => x.targets), [[4, 5], [6]]);
    assert.deepEqual([p.stats.noLoss, p.stats.tooShort], [1, 1]);
  });

  it('pads right to the longest row (or a multiple), pads masked, own segment, positions', () => {
    const { pieces } = toPieces([ex([10, 11, 12, 13], [0, 0, 1, 1]), ex([20, 21])], ids, cfg());
    const a = padPieces(pieces, ids, cfg());
    assert.equal(a.seqLen, 3);
    assert.deepEqual(row(a, 1, 'inputIds'), [20, 1, 1]);
    assert.deepEqual(row(a, 1, 'targets'), [21, 1, 1]);
    assert.deepEqual(row(a, 1, 'lossMask'), [1, 0, 0]);
    assert.deepEqual(row(a, 1, 'segmentIds'), [0, -1, -1]);
    assert.deepEqual(row(a, 0, 'lossMask'), [0, 1, 1]);
    assert.deepEqual(row(a, 0, 'positionIds'), [0, 1, 2]);
    assert.equal(padPieces(pieces, ids, cfg({ padToMultipleOf: 8 })).seqLen, 8);
    assert.equal(padPieces(pieces, ids, cfg({ padToMultipleOf: 8, seqLen: 5 })).seqLen, 5, 'capped at seqLen');
  });

  it('packs best-fit decreasing into full rows; segments and positions restart per document', () => {
    const lens = [5, 3, 3, 2, 1];
    const pieces: Piece[] = lens.map((n, d) => {
      const toks = Array.from({ length: n + 1 }, (_, i) => 100 + 10 * d + i); // document d: 100+10d, 101+10d, …
      return toPieces([ex(toks)], ids, cfg()).pieces[0];
    });
    const a = packPieces(pieces, ids, cfg({ seqLen: 6 }));
    assert.equal(a.rows, 3);
    // 5 opens row 0 (room 1), 3 and 3 fill row 1, 2 opens row 2, 1 best-fits row 0's last slot.
    assert.deepEqual(row(a, 0, 'segmentIds'), [0, 0, 0, 0, 0, 1]);
    assert.deepEqual(row(a, 0, 'inputIds'), [100, 101, 102, 103, 104, 140]);
    assert.deepEqual(row(a, 1, 'positionIds'), [0, 1, 2, 0, 1, 2]);
    assert.deepEqual(row(a, 1, 'segmentIds'), [0, 0, 0, 1, 1, 1]);
    assert.deepEqual(row(a, 2, 'segmentIds'), [0, 0, -1, -1, -1, -1]);
    assert.deepEqual(row(a, 2, 'lossMask'), [1, 1, 0, 0, 0, 0]);
    // No position predicts another document's token: each target is its input's successor in the same document.
    for (let i = 0; i < a.inputIds.length; i++) if (a.segmentIds[i] >= 0) assert.equal(a.targets[i], a.inputIds[i] + 1, `position ${i}`);
    // The last position of document 0 in row 1 predicts its own last token (123), not document 2's first (120).
    assert.deepEqual(row(a, 1, 'targets'), [111, 112, 113, 121, 122, 123]);
    assert.deepEqual(triples(a), triples(padPieces(pieces, ids, cfg({ seqLen: 6 }))));
  });

  it('makes int32/float32 tensors of shape (B, T)', () => {
    const b = toSftBatch(padPieces(toPieces([ex([3, 4, 5]), ex([6, 7])], ids, cfg()).pieces, ids, cfg()));
    for (const k of ['inputIds', 'targets', 'segmentIds', 'positionIds'] as const) assert.equal(b[k].dtype, 'int32', k);
    assert.equal(b.lossMask.dtype, 'float32');
    assert.deepEqual(b.inputIds.shape, [2, 2]);
    assert.deepEqual(b.targets.arraySync(), [[4, 5], [7, 1]]);
    causalLmObjective.dispose(b);
  });

  it('batch source: seeded shuffle per epoch, resumable, every row once per epoch', () => {
    // Document d starts with token 10d + 2, so a row's first input names it.
    const examples = Array.from({ length: 10 }, (_, d) => ex(Array.from({ length: 2 + (d % 4) }, (_, i) => 10 * d + i + 2)));
    for (const packing of [false, true]) {
      const c = cfg({ batchSize: 3, seqLen: 6, packing, seed: 7 });
      const src = new ExampleBatches(examples, ids, c);
      const perEpoch = src.stats.rows;
      assert.equal(perEpoch, packing ? 4 : 10);
      const firsts: number[] = [];
      while (firsts.length < 2 * perEpoch) {
        const a = src.nextArrays();
        for (let r = 0; r < a.rows; r++) firsts.push(a.inputIds[r * a.seqLen]);
      }
      const [e0, e1] = [firsts.slice(0, perEpoch), firsts.slice(perEpoch, 2 * perEpoch)];
      assert.equal(new Set(e0).size, perEpoch, `packing ${packing}: each row once in epoch 0`);
      assert.deepEqual([...e1].sort(), [...e0].sort(), 'the same rows in epoch 1');
      assert.notDeepEqual(e1, e0, 'in a new order');
      const saved = src.state();
      const next = [src.nextArrays(), src.nextArrays()];
      const again = new ExampleBatches(examples, ids, c);
      again.restore(saved);
      assert.deepEqual([again.nextArrays(), again.nextArrays()], next);
      assert.notDeepEqual(new ExampleBatches(examples, ids, { ...c, seed: 8 }).nextArrays(), new ExampleBatches(examples, ids, c).nextArrays());
    }
    assert.throws(() => new ExampleBatches([ex([1, 2], [1, 0])], ids, cfg()), /no example has a target token/);
    assert.throws(() => new ExampleBatches([ex([1, 2])], ids, cfg()).restore({}), /numeric epoch and cursor/);
    assert.throws(() => new ExampleBatches([ex([1, 2])], ids, cfg({ seqLen: 0 })), /seqLen must be a positive integer/);
  });

  it('eval batches cover every piece once, in order', () => {
    const examples = [ex([2, 3, 4]), ex([5, 6]), ex([7, 8, 9, 10]), ex([11, 12])];
    for (const packing of [false, true]) {
      const c = cfg({ batchSize: 3, seqLen: 4, packing });
      const seen: string[] = [];
      let batches = 0;
      for (const b of evalBatches(examples, ids, c)) {
        batches++;
        const shape = b.inputIds.shape;
        const a: BatchArrays = {
          rows: shape[0], seqLen: shape[1], inputIds: b.inputIds.dataSync() as Int32Array, targets: b.targets.dataSync() as Int32Array,
          lossMask: b.lossMask.dataSync() as Float32Array, segmentIds: b.segmentIds.dataSync() as Int32Array, positionIds: b.positionIds.dataSync() as Int32Array,
        };
        seen.push(...triples(a));
        causalLmObjective.dispose(b);
      }
      assert.equal(batches, packing ? 1 : 2);
      assert.deepEqual(seen.sort(), triples(padPieces(toPieces(examples, ids, c).pieces, ids, c)));
    }
  });

  it('chat examples end to end: packed targets marked exactly on assistant text + <|im_end|>', () => {
    const tok = Tokenizer.train(['Hello there, how are you? I am fine. The sky is blue. Yes, it is.'], { vocabSize: 300 });
    const rows = [
      { messages: [{ role: 'user' as const, content: 'How are you?' }, { role: 'assistant' as const, content: 'I am fine.' }] },
      { messages: [{ role: 'user' as const, content: 'Sky?' }, { role: 'assistant' as const, content: 'Blue.' }, { role: 'user' as const, content: 'Sure?' }, { role: 'assistant' as const, content: 'Yes, it is.' }] },
    ];
    const { examples } = tokenizeRows(rows, tok, { ...tokenizeDefaults, assistantOnlyLoss: true });
    const c: BatchConfig = { ...batchDefaults, packing: true, seqLen: 128, batchSize: 1 };
    const a = new ExampleBatches(examples, tok, c).nextArrays();
    assert.equal(a.rows, 1);
    const bySegment = new Map<number, number[]>();
    for (let i = 0; i < a.seqLen; i++) if (a.lossMask[i] === 1) bySegment.set(a.segmentIds[i], [...(bySegment.get(a.segmentIds[i]) ?? []), a.targets[i]]);
    const texts = [...bySegment.values()].map((t) => tok.decode(t)).sort();
    assert.deepEqual(texts, ['Blue.<|im_end|>Yes, it is.<|im_end|>', 'I am fine.<|im_end|>']);
    // The appended EOS separator follows "\n" (mask 0), so it does not count either.
    assert.equal(a.lossMask.reduce((s, m) => s + m, 0), texts.reduce((s, t) => s + tok.encode(t).length, 0));
  });

  it('plugs into the Trainer as a BatchSource<LmBatch> and lowers the masked loss', async () => {
    const model = new CausalLM(modelConfig({ family: 'llama', vocabSize: 40, contextLength: 16, dModel: 16, nLayers: 1, nHeads: 2, nKvHeads: 1, dFf: 32 }), { seed: 1 });
    const docs = Array.from({ length: 12 }, (_, d) => ex([2, 3 + (d % 3), 6, 7, 8, 9].slice(0, 3 + (d % 4)), [0, 0, 1, 1, 1, 1].slice(0, 3 + (d % 4))));
    const data = new ExampleBatches(docs, ids, cfg({ packing: true, seqLen: 16, batchSize: 2 }));
    const result = await new Trainer(model, causalLmObjective, data, { lr: 3e-2, maxSteps: 12, warmupSteps: 0 }).train();
    const losses = result.history.map((m) => m.loss);
    assert.ok(losses.every(Number.isFinite));
    assert.ok(losses[losses.length - 1] < losses[0] * 0.7, `loss ${losses[0]} → ${losses[losses.length - 1]}`);
    model.dispose();
  });

  for (const family of ['llama', 'gpt2'] as ModelFamily[]) {
    it(`${family}: logits of a packed document equal the document run alone`, () => {
      const model = new CausalLM(modelConfig({ family, vocabSize: 40, contextLength: 16, dModel: 16, nLayers: 2, nHeads: 2, nKvHeads: family === 'llama' ? 1 : 2, dFf: 32 }), { seed: 3 });
      const docs = [ex([2, 3, 4, 5, 6, 7]), ex([8, 9, 10, 11, 12]), ex([13, 14, 15])];
      const { pieces } = toPieces(docs, ids, cfg());
      const packed = packPieces(pieces, ids, cfg({ seqLen: 16 }));
      assert.equal(packed.rows, 1);
      const b = toSftBatch(packed);
      const [together, blind] = tf.tidy(() => [
        model.forward(b.inputIds, { segmentIds: b.segmentIds, positionIds: b.positionIds }).arraySync()[0],
        model.forward(b.inputIds).arraySync()[0],
      ]);
      let col = 0;
      const segs = Array.from(packed.segmentIds);
      for (let s = 0; s < pieces.length; s++) {
        const start = segs.indexOf(s);
        const n = segs.filter((x) => x === s).length;
        const inputs = Array.from(packed.inputIds.subarray(start, start + n));
        const alone = tf.tidy(() => model.forward(tf.tensor2d([inputs], [1, n], 'int32')).arraySync()[0]);
        assert.ok(maxAbsDiff(together.slice(start, start + n).flat(), alone.flat()) < 1e-4, `document ${s}`);
        // Without segments/positions the later documents see earlier ones: the check has teeth.
        if (start > 0) assert.ok(maxAbsDiff(blind.slice(start, start + n).flat(), alone.flat()) > 1e-3, `document ${s} unmasked`);
        col += n;
      }
      assert.equal(col, pieces.reduce((s, p) => s + p.inputs.length, 0));
      causalLmObjective.dispose(b);
      model.dispose();
    });
  }
});
