import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { CausalLM } from '../../src/model';
import { Tokenizer } from '../../src/tokenizer/tokenizer';
import { Trainer } from '../../src/train/trainer';
import { TokenWindows, causalLmObjective, tokenStream } from '../../src/train/causal-lm';
import { saveModel } from '../../src/io/checkpoint';
import { addLora } from '../../src/peft/lora';
import { saveAdapter } from '../../src/peft/io';
import { heldOutLoss } from '../../src/eval/metrics';
import { RunLog, type RunRecord } from '../../src/eval/runs';
import { drift, runVersions, sotuDriftSets, sotuSpeeches, type DatedSet } from '../../src/eval/drift';
import { engineReady } from '../helpers';

const ANIMALS = ['cat', 'dog', 'bird', 'fox', 'cow', 'hen'];
const PLACES = ['mat', 'rug', 'bed', 'box', 'log', 'hill'];
const sentence = (i: number) => `the ${ANIMALS[i % 6]} sat on the ${PLACES[(i * 5) % 6]}.`;
const train = Array.from({ length: 60 }, (_, i) => sentence(i));
// The same kind of text (dated 2001) and text the model never saw (dated 2020).
const sets: DatedSet[] = [
  { name: 'new words', date: '2020-06-01', data: ['on hill the cow sat, a fox ran to the bed; mats and rugs.', 'dogs hens birds: the log sat on a box.'] },
  { name: 'same kind', date: '2001', data: Array.from({ length: 12 }, (_, i) => sentence(i * 7 + 3)) },
];
const record = (run: string): RunRecord => ({
  run, method: 'continued-pretraining', strategy: 'full', base: 'scratch', finishedAt: '2026-01-01T00:00:00.000Z', steps: 80, tokens: 1000,
  wallMs: 500, tokensPerSec: 2000, trainableParams: 10, trainablePercent: 100, finalTrainLoss: 1, finalEvalLoss: null,
  forgettingDelta: null, targetDelta: null, config: '{}',
});

describe('eval/drift: checkpoints × dated evaluation sets', function () {
  this.timeout(120_000);
  let tmp: string;
  let log: RunLog;
  let tok: Tokenizer;
  let lora: CausalLM;

  before(async () => {
    await engineReady();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-drift-'));
    log = new RunLog(tmp);
    log.add(record('scratch'));
    tok = Tokenizer.train([...train, ...sets.flatMap((s) => s.data as string[])], { vocabSize: 300 });
    const model = CausalLM.create({ vocabSize: tok.vocabSize, nLayers: 1, dModel: 32, nHeads: 2, nKvHeads: 2, dFf: 64, contextLength: 32 }, { seed: 5 });
    // Checkpoints whose order of quality on "same kind" is known: more training, lower loss.
    await saveModel(path.join(tmp, 'scratch', 'checkpoint-0'), model, tok);
    const trainer = new Trainer(model, causalLmObjective, new TokenWindows(tokenStream(tok, train), 16, 16, 1), { lr: 1e-2, maxSteps: 80, warmupSteps: 5, seed: 1 });
    let saved: Promise<void> = Promise.resolve();
    trainer.on('step', (m) => {
      if (m.step !== 10) return;
      const copy = model.clone();
      saved = saveModel(path.join(tmp, 'scratch', 'checkpoint-10'), copy, tok).finally(() => copy.dispose());
    });
    await trainer.train();
    await saved;
    trainer.dispose();
    await saveModel(path.join(tmp, 'scratch', 'checkpoint-80'), model, tok);
    lora = model;
    addLora(lora, { r: 4, alpha: 32, initLoraWeights: false, seed: 3 });
    await saveAdapter(lora, path.join(tmp, 'scratch', 'lora'), 'default', { baseModelNameOrPath: path.join(tmp, 'scratch', 'checkpoint-80') });
  });
  after(() => {
    lora.dispose();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('finds the saved versions of a run in natural order', () => {
    const v = runVersions(log);
    assert.deepEqual(v.map((x) => x.name), ['scratch/checkpoint-0', 'scratch/checkpoint-10', 'scratch/checkpoint-80', 'scratch/lora']);
    assert.equal(v[3].adapter, path.join(tmp, 'scratch', 'lora'));
    assert.equal(v[3].checkpoint, undefined);
    assert.throws(() => runVersions(log, ['nope']), /no run "nope" \(runs: scratch\)/);
  });

  it('scores checkpoints of known quality in order, flags regressions and drift, joins the run log', async () => {
    const before = tf.memory().numTensors;
    const versions = runVersions(log).slice(0, 3);
    const d = await drift(versions, sets, { threshold: 0.05, log });
    assert.equal(tf.memory().numTensors, before);
    assert.deepEqual(d.rows.map((r) => `${r.version} ${r.set}`).slice(0, 2), ['scratch/checkpoint-0 same kind', 'scratch/checkpoint-0 new words']);
    const same = d.rows.filter((r) => r.set === 'same kind').map((r) => r.value);
    assert.ok(same[0] > same[1] && same[1] > same[2], `losses ${same}`);
    // Trained in this order, no version regresses on the data it was trained for…
    assert.ok(d.rows.filter((r) => r.set === 'same kind').every((r) => !r.flag.includes('regression')));
    // …but the trained model is far worse on the newer, unseen kind of text than on the old one: drift.
    const last = d.rows.find((r) => r.version === 'scratch/checkpoint-80' && r.set === 'new words')!;
    assert.ok(last.vsOldest > 0.05 && last.flag.includes('drift'), JSON.stringify(last));
    assert.ok(Math.abs(last.vsOldest - (last.value - same[2]) / same[2]) < 1e-12);
    // Newest first, each older version is a regression on "same kind".
    const reversed = await drift([...versions].reverse(), sets, { threshold: 0.05 });
    const flags = reversed.rows.filter((r) => r.set === 'same kind').map((r) => r.flag.includes('regression'));
    assert.deepEqual(flags, [false, true, true]);
    assert.ok(reversed.flagged.length >= 2);
    // The table carries the run's record; the rows were appended to the log's drift.jsonl.
    const t = d.table();
    assert.deepEqual(t.array('version'), d.rows.map((r) => r.version));
    assert.deepEqual(t.array('method').slice(0, 1), ['continued-pretraining']);
    const withBase = await drift([{ name: 'by hand', checkpoint: versions[0].checkpoint }, versions[1]], [sets[1]], { log });
    assert.deepEqual((withBase.table().objects() as { version: string; method: string | null }[]).map((r) => [r.version, r.method]), [['by hand', null], ['scratch/checkpoint-10', 'continued-pretraining']]);
    const lines = fs.readFileSync(path.join(tmp, 'drift.jsonl'), 'utf8').trim().split('\n');
    assert.equal(lines.length, 6 + 2);
    assert.equal(JSON.parse(lines[0]).version, 'scratch/checkpoint-0');
    const chart = d.plot();
    assert.equal(chart.spec.data.length, d.flagged.length ? 4 : 3);
    assert.match(d.summary(), /3 versions × 2 sets/);
  });

  it('loads an adapter on its base: the same loss as the model with the adapter in memory', async () => {
    const [v] = runVersions(log).slice(3);
    const d = await drift([v], [sets[1]], { seqLen: 16 });
    const direct = await heldOutLoss(lora, { tokens: tokenStream(tok, sets[1].data as string[]) }, { seqLen: 16, batchSize: 16 });
    assert.ok(Math.abs(d.rows[0].value - direct.loss) < 1e-5, `${d.rows[0].value} vs ${direct.loss}`);
    assert.equal(d.rows[0].tokens, direct.tokens);
    const acc = await drift([v], [sets[1]], { seqLen: 16, metric: 'accuracy' });
    assert.ok(acc.rows[0].value >= 0 && acc.rows[0].value <= 1);
  });

  it('names bad input', async () => {
    const v = runVersions(log).slice(0, 1);
    await assert.rejects(drift(v, [{ name: 'x', date: 'last year', data: ['a'] }]), /evaluation set "x" has date "last year"; give a year or an ISO date/);
    await assert.rejects(drift(v, [{ name: 'x', date: '2001', data: [] }]), /evaluation set 0 \("x"\) has no data/);
    await assert.rejects(drift(v, sets, { treshold: 1 } as never), /drift: unknown option "treshold"; did you mean "threshold"\?/);
    await assert.rejects(drift([...v, ...v], sets), /version name "scratch\/checkpoint-0" given twice/);
    await assert.rejects(drift([{ name: 'a', adapter: tmp }], sets), /version "a": .*adapter_config\.json is missing/);
  });

  it('ships dated sets: State of the Union addresses before and from a year', () => {
    const held = sotuSpeeches('heldout');
    assert.deepEqual(held.map((s) => s.year), [1951, 1956, 1977, 1999, 2011]);
    assert.equal(sotuSpeeches('train').filter((s) => s.year < 1950).length, 49);
    const [old, recent] = sotuDriftSets(1990);
    assert.deepEqual([old.name, old.date, old.data.length, recent.name, recent.date, recent.data.length], ['sotu 1951–1977', '1977', 3, 'sotu 1999–2011', '2011', 2]);
    assert.throws(() => sotuDriftSets(2020), /no heldout address from 2020 \(years: 1951, 1956, 1977, 1999, 2011\)/);
  });
});
