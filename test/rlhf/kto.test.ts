import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { CausalLM } from '../../src/model';
import { addLora } from '../../src/peft/lora';
import { dataset } from '../../src/lab/data';
import { lab } from '../../src/lab/lab';
import { batchDefaults, toPieces } from '../../src/data/batches';
import { DatasetError, detectFormat, validateDataset } from '../../src/data/formats';
import { loadTable, toTable } from '../../src/data/load';
import type { PreferenceRow } from '../../src/data/tokenize';
import type { Tokenizer } from '../../src/tokenizer/tokenizer';
import { piecesLmBatch, referenceLogProbs } from '../../src/rlhf/dpo';
import { sequenceLogProbs } from '../../src/rlhf/logprobs';
import { KtoBatches, KtoItem, UnpairedRow, checkUnpairedRows, disposeKtoBatch, kto, ktoDefaults, ktoLoss, ktoMetricNames, unpairPreferences } from '../../src/rlhf/kto';
import { engineReady } from '../helpers';
import { assertClose, checkGradients, example, loggedRecords, mean, preferenceRows, shippedRun, shippedTokenizer, small, tiny, tokens } from './preference-helpers';

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

/** KTO by hand: r = π − π_ref; desirable λ_D(1 − σ(β(r − z))), undesirable λ_U(1 − σ(β(z − r))); means over all rows. */
function byHand(l: { p: number[]; r: number[]; y: number[]; kl: number }, beta: number, wd: number, wu: number) {
  const r = l.p.map((x, i) => x - l.r[i]);
  const losses = r.map((x, i) => (l.y[i] ? wd * (1 - sigmoid(beta * (x - l.kl))) : wu * (1 - sigmoid(beta * (l.kl - x)))));
  const of = (xs: number[], want: number) => xs.filter((_, i) => l.y[i] === want);
  const rc = mean(of(r, 1).map((x) => beta * x));
  const rr = mean(of(r, 0).map((x) => beta * x));
  return {
    loss: mean(losses), kl: l.kl, 'rewards/chosen': rc, 'rewards/rejected': rr, 'rewards/margins': rc - rr,
    'logps/chosen': mean(of(l.p, 1)), 'logps/rejected': mean(of(l.p, 0)),
  };
}

function lossOf(l: { p: number[]; r: number[]; y: number[]; kl: number }, beta: number, wd: number, wu: number) {
  return tf.tidy(() => {
    const res = ktoLoss({ policy: tf.tensor1d(l.p), reference: tf.tensor1d(l.r), label: tf.tensor1d(l.y), kl: tf.scalar(l.kl) }, beta, wd, wu);
    const names = Object.keys(res.metrics) as (keyof typeof res.metrics)[];
    const vals = tf.stack([res.loss, ...names.map((k) => res.metrics[k])]).dataSync();
    return Object.fromEntries(['loss', ...names].map((k, i) => [k, vals[i]]));
  });
}

const pieceConfig = { ...batchDefaults, seqLen: 16, overflow: 'truncate' as const };
const item = (prompt: number[], completion: number[], label: boolean): KtoItem => {
  const ex = example(prompt, completion);
  return { example: ex, piece: toPieces([ex], tokens, pieceConfig).pieces[0], label };
};
const tinyItems = [item([2, 5, 7, 9], [3, 4, 6, 1], true), item([4, 11, 12], [17, 1], false), item([6, 3], [13, 14, 15, 1], true), item([8, 9, 10], [8, 8, 1], false)];

describe('rlhf/kto', function () {
  this.timeout(600000);
  before(engineReady);

  it('defaults: TRL KTOConfig β 0.1, desirable and undesirable weights 1.0', () => {
    assert.deepEqual([ktoDefaults.beta, ktoDefaults.desirableWeight, ktoDefaults.undesirableWeight], [0.1, 1, 1]);
  });

  const l = { p: [-10, -12, -8, -9.5], r: [-10.5, -11, -8.2, -9.1], y: [1, 0, 1, 0], kl: 0.3 };
  for (const [beta, wd, wu] of [[0.1, 1, 1], [1, 1, 1], [0.5, 1.33, 0.7]] as const) {
    it(`ktoLoss β=${beta} λ_D=${wd} λ_U=${wu} and its metrics equal a hand computation`, () => {
      assertClose(lossOf(l, beta, wd, wu), byHand(l, beta, wd, wu));
    });
  }

  it('is 1/2 when policy = reference and z = 0; metrics of a missing kind are NaN; checks its options', () => {
    const same = { p: [-3, -4], r: [-3, -4], y: [1, 1], kl: 0 };
    const got = lossOf(same, 0.1, 1, 1);
    assert.ok(Math.abs(got.loss - 0.5) < 1e-7);
    assert.ok(Number.isNaN(got['rewards/rejected']) && got['rewards/chosen'] === 0);
    assert.throws(() => lossOf(same, 0, 1, 1), /beta/);
    assert.throws(() => lossOf(same, 0.1, -1, 1), /desirableWeight/);
  });

  describe('on a tiny model', () => {
    let policy: CausalLM;
    let reference: CausalLM;
    beforeEach(() => {
      policy = CausalLM.create(tiny, { seed: 1 });
      reference = CausalLM.create(tiny, { seed: 2 });
    });
    afterEach(() => {
      policy.dispose();
      reference.dispose();
    });

    it('the KL point pairs each prompt with the previous row\'s completion; z = max(0, mean(π − π_ref)) on them', () => {
      const data = new KtoBatches(tinyItems, tokens, 16, 4, referenceLogProbs(reference), policy);
      const mm = data.mismatched(tinyItems);
      assert.deepEqual(mm[0].inputs, [2, 5, 7, 9, 8, 8]); // prompt 0 + completion 3
      assert.deepEqual(mm[1].inputs, [4, 11, 12, 3, 4, 6]); // prompt 1 + completion 0
      assert.deepEqual(mm[1].mask, [0, 0, 1, 1, 1, 1]);
      const batch = data.batchOf([0, 1, 2, 3]);
      const klLm = piecesLmBatch(mm, tokens, 16);
      const want = tf.tidy(() => tf.mean(tf.sub(sequenceLogProbs(policy, klLm).sum, sequenceLogProbs(reference, klLm).sum)).dataSync()[0]);
      assert.ok(Math.abs(batch.kl.dataSync()[0] - Math.max(0, want)) < 1e-5, `${batch.kl.dataSync()[0]} vs max(0, ${want})`);
      assert.deepEqual(Array.from(batch.label.dataSync()), [1, 0, 1, 0]);
      tf.dispose([klLm.inputIds, klLm.targets, klLm.lossMask]);
      disposeKtoBatch(batch);
    });

    it('gradients w.r.t. model parameters match finite differences (z held fixed, as TRL detaches it)', () => {
      const data = new KtoBatches(tinyItems, tokens, 16, 4, referenceLogProbs(reference), policy);
      const batch = data.batchOf([0, 1, 2, 3]);
      // A non-zero z so that both branches of the loss depend on it.
      const kl = tf.scalar(0.5);
      checkGradients(policy, () => ktoLoss({ policy: sequenceLogProbs(policy, batch.lm).sum, reference: batch.ref, label: batch.label, kl }, 1).loss);
      kl.dispose();
      disposeKtoBatch(batch);
    });
  });

  describe('unpaired rows', () => {
    it('unpairPreferences: every chosen (label true), then every rejected (label false), as TRL', () => {
      const rows = unpairPreferences([{ prompt: 'A', chosen: ' b', rejected: ' c' }, { prompt: 'D', chosen: ' e', rejected: ' f' }]);
      assert.deepEqual(rows, [
        { prompt: 'A', completion: ' b', label: true }, { prompt: 'D', completion: ' e', label: true },
        { prompt: 'A', completion: ' c', label: false }, { prompt: 'D', completion: ' f', label: false },
      ]);
      assert.throws(() => unpairPreferences([{ chosen: 'A b', rejected: 'A c' }]), /row 1 has no "prompt"/);
    });

    it('are detected as TRL\'s unpaired preference format; bad rows name the file, row and column', () => {
      const good = [{ prompt: 'Q', completion: ' yes', label: true }, { prompt: 'Q', completion: ' no', label: false }];
      assert.equal(detectFormat(toTable(good)), 'unpaired-preference');
      assert.equal(validateDataset(toTable(good)).format, 'unpaired-preference');
      const bad = (rows: object[]) => {
        try {
          checkUnpairedRows(rows as UnpairedRow[]);
        } catch (e) {
          assert.ok(e instanceof DatasetError, String(e));
          return e;
        }
        assert.fail('accepted bad rows');
      };
      const e1 = bad([...good, { prompt: 'Q', completion: ' maybe', label: 'yes' }]);
      assert.deepEqual([e1.row, e1.column], [3, 'label']);
      assert.match(e1.message, /kto rows: row 3, column "label": expected a boolean.*got string "yes"/);
      const e2 = bad([{ prompt: 'Q', completion: '', label: true }, ...good]);
      assert.deepEqual([e2.row, e2.column, e2.problem], [1, 'completion', 'empty string']);
      const e3 = bad([...good, { prompt: 'Q', completion: ' x', label: 1 }]);
      assert.deepEqual([e3.row, e3.column], [3, 'label']);
      // From a file: the file and its line.
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-kto-'));
      const file = path.join(dir, 'kto.jsonl');
      fs.writeFileSync(file, [...good, { prompt: 'Q', completion: ' x', label: null }].map((r) => JSON.stringify(r)).join('\n') + '\n');
      assert.throws(() => validateDataset(loadTable(file)), (e: unknown) => e instanceof DatasetError && e.file === file && e.row === 3 && e.column === 'label');
      fs.rmSync(dir, { recursive: true, force: true });
    });
  });

  describe('kto() with the shipped tokenizer on a small model', () => {
    let tok: Tokenizer;
    let rows: UnpairedRow[];
    let held: UnpairedRow[];
    before(async () => {
      tok = await shippedTokenizer();
      [rows, held] = [unpairPreferences(preferenceRows('train', 24)), unpairPreferences(preferenceRows('heldout', 8))];
    });
    const cfg = { maxSteps: 3, batchSize: 4, lr: 1e-2, seed: 7 };

    it('copy and adapter-disabled references: loss 1/2 at step 0, identical runs; flat tensors, no leak, same seed → same losses', async () => {
      const run = async (config: Record<string, unknown>) => {
        const m = CausalLM.create(small, { seed: 3 });
        addLora(m, { r: 4 });
        const counts: number[] = [];
        const before = tf.memory().numTensors;
        const r = await kto(m, tok, rows, { ...cfg, evalRows: held, ...config }, { onTrainer: (t) => t.on('step', () => counts.push(tf.memory().numTensors)) });
        const leaked = tf.memory().numTensors - before;
        m.dispose();
        return { r, counts, leaked };
      };
      const copy = await run({ reference: 'copy' });
      const disabled = await run({});
      const again = await run({});
      console.log(`      losses ${copy.r.history.map((h) => h.loss.toFixed(6)).join(' ')}; rows ${JSON.stringify(copy.r.data.train)}`);
      assert.equal(copy.r.reference, 'copy');
      assert.equal(disabled.r.reference, 'adapter-disabled');
      assert.equal(disabled.r.referenceBytes, 0);
      for (const x of [copy, disabled]) {
        assert.ok(Math.abs(x.r.history[0].loss - 0.5) < 1e-6, `step-0 loss ${x.r.history[0].loss}`);
        const e0 = x.r.evalMetrics[0];
        assert.ok(Math.abs(e0.loss - 0.5) < 1e-6 && e0['rewards/margins'] === 0 && e0.kl === 0, JSON.stringify(e0));
        assert.deepEqual(x.r.evalMetrics.map((e) => e.step), [0, 3]);
        assert.ok(x.counts.every((c) => c === x.counts[0]), `tensor count per step ${x.counts}`);
        assert.equal(x.leaked, 0);
        const step = x.r.history[0] as unknown as Record<string, number>;
        for (const k of ktoMetricNames) assert.equal(step[k], x.r.metrics[0][k], k);
      }
      assert.deepEqual(disabled.r.history.map((h) => h.loss), copy.r.history.map((h) => h.loss));
      assert.deepEqual(again.r.history.map((h) => h.loss), disabled.r.history.map((h) => h.loss));
      assert.ok(copy.r.history[2].loss !== copy.r.history[0].loss);
      assert.equal(copy.r.data.train.desirable + copy.r.data.train.undesirable, copy.r.data.train.kept);
    });

    it('refuses a batch of one row and bad rows, naming the row and column', async () => {
      const m = CausalLM.create(small, { seed: 3 });
      await assert.rejects(kto(m, tok, rows, { ...cfg, batchSize: 1 }), /batchSize must be an integer ≥ 2/);
      const bad = [...rows.slice(0, 3), { ...rows[3], label: 'no' as unknown as boolean }];
      await assert.rejects(kto(m, tok, bad, cfg), /kto training rows: row 4, column "label"/);
      m.dispose();
    });
  });

  it('on the shipped base: a short run lowers the loss and raises the held-out reward margin', async () => {
    const train = unpairPreferences(preferenceRows('train', 200));
    const held = unpairPreferences(preferenceRows('heldout', 32));
    const { first, last } = await shippedRun((model, tokenizer) => kto(model, tokenizer, train, { maxSteps: 12, batchSize: 8, evalRows: held }));
    assert.equal(last.step, 12);
    assert.ok(last.loss < first.loss);
    assert.ok(last['rewards/margins'] > first['rewards/margins'] && last['rewards/margins'] > 0);
  });

  it('.kto() runs from the lab builder on preference rows (unpaired) and on unpaired rows', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-kto-'));
    const prefs = dataset('preferences').slice(0, 8);
    const a = await lab.base('tiny-llama').log(dir).show(false).data(prefs).eval(prefs.slice(0, 2)).kto({ maxSteps: 2, batchSize: 4 });
    assert.equal(a.record.method, 'kto');
    assert.equal(a.result.data.train.kept, 16);
    const { steps, evals } = loggedRecords(dir, a.record.run);
    assert.ok(Number.isFinite(steps[0].kl) && Number.isFinite(steps[0]['rewards/chosen']), JSON.stringify(steps[0]));
    assert.ok(Number.isFinite(evals.at(-1)!['rewards/margins']), JSON.stringify(evals.at(-1)));
    const b = await lab.base('tiny-llama').log(dir).show(false).data(unpairPreferences(prefs as unknown as PreferenceRow[]).slice(0, 12)).kto({ maxSteps: 1, batchSize: 4 });
    assert.equal(b.result.data.train.kept, 12);
    a.model.dispose();
    b.model.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
