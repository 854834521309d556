import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ForgettingTracker, forgettingDefaults } from '../../src/eval/forgetting';
import { heldOutLossSync } from '../../src/eval/metrics';
import { CausalLM } from '../../src/model';
import { base } from '../../src/lab/base';
import { TokenWindows, causalLmObjective, tokenStream } from '../../src/train/causal-lm';
import { Trainer } from '../../src/train/trainer';
import { paretoChart, forgettingChart } from '../../src/viz/charts';
import { engineReady } from '../helpers';

// Two disjoint synthetic token streams: A cycles through ids 0..7, B ("general") cycles through a
// shuffled order of ids 16..31. The model first learns B, then trains on A and forgets B.
const A = Array.from({ length: 400 }, (_, i) => i % 8);
const order = [16, 23, 19, 30, 17, 28, 21, 26, 31, 18, 25, 20, 29, 22, 27, 24];
const B = Array.from({ length: 400 }, (_, i) => order[i % 16]);
const newModel = () => CausalLM.create({ vocabSize: 32, nLayers: 1, dModel: 32, nHeads: 2, nKvHeads: 1, dFf: 64, contextLength: 16 }, { seed: 2 });

describe('eval/forgetting', () => {
  before(engineReady);

  it('records a baseline and every N steps; training on A raises loss on disjoint B; curves, score, Pareto, table, JSONL', async () => {
    const model = newModel();
    const pre = new Trainer(model, causalLmObjective, new TokenWindows(B, 16, 4, 1), { lr: 1e-2, maxSteps: 40, schedule: 'constant' });
    await pre.train();
    pre.dispose();
    const pretrained = heldOutLossSync(model, { tokens: B }, { seqLen: 16, batchSize: 8 }).loss;
    const tracker = new ForgettingTracker(model, { general: { tokens: B }, domain: { tokens: A } }, { every: 10, seqLen: 16, batchSize: 8, label: 'full' });
    const trainer = new Trainer(model, causalLmObjective, new TokenWindows(A, 16, 4, 1), { lr: 1e-2, maxSteps: 30, schedule: 'constant' });
    const off = tracker.attach(trainer);
    assert.deepEqual(tracker.rows.map((r) => [r.step, r.tokens, r.set]), [[0, 0, 'general'], [0, 0, 'domain']], 'baseline at attach');
    const baseGeneral = tracker.rows[0].loss;
    assert.ok(Math.abs(baseGeneral - pretrained) < 1e-6, 'baseline is the model before fine-tuning');
    await trainer.train();
    off();
    trainer.dispose();

    const rows = tracker.rows;
    assert.deepEqual(rows.map((r) => r.step), [0, 0, 10, 10, 20, 20, 30, 30]);
    assert.deepEqual(rows.filter((r) => r.set === 'general').map((r) => r.tokens), [0, 640, 1280, 1920]); // 10 steps × 4 × 16 tokens
    for (const r of rows) assert.ok(Math.abs(r.perplexity - Math.exp(r.loss)) < 1e-9 * r.perplexity);

    const general = tracker.score();
    assert.equal(general.set, 'general');
    assert.equal(general.step, 30);
    assert.ok(general.deltaLoss > 0, `general loss ${general.baselineLoss} → ${general.finalLoss} should rise`);
    assert.ok(general.relativePerplexityIncrease > 0);
    assert.ok(Math.abs(general.relativePerplexityIncrease - (general.finalPerplexity / general.baselinePerplexity - 1)) < 1e-12);
    const domain = tracker.score('domain');
    assert.ok(domain.deltaLoss < 0, `domain loss ${domain.baselineLoss} → ${domain.finalLoss} should fall`);
    assert.throws(() => tracker.score('nope'), /no rows for set "nope"/);

    const curves = tracker.curves();
    assert.deepEqual(curves.map((c) => c.name), ['full general', 'full domain']);
    assert.deepEqual(curves[0].tokens, [0, 640, 1280, 1920]);
    assert.deepEqual(curves[1].metric, rows.filter((r) => r.set === 'domain').map((r) => r.loss));
    assert.deepEqual(tracker.curves('perplexity', 'general')[0].metric, rows.filter((r) => r.set === 'general').map((r) => r.perplexity));
    assert.ok(forgettingChart(curves, { baseline: general.baselineLoss }));

    const points = tracker.paretoPoints({ group: 'full' });
    assert.equal(points.length, 4);
    assert.deepEqual(points[0], { label: 'full step 0', target: rows[1].loss, general: rows[0].loss, group: 'full' });
    assert.deepEqual(points[3], { label: 'full step 30', target: rows[7].loss, general: rows[6].loss, group: 'full' });
    assert.equal('group' in tracker.paretoPoints()[0], false);
    assert.ok(paretoChart(points));

    const table = tracker.table();
    assert.equal(table.numRows(), 8);
    assert.deepEqual(table.columnNames(), ['step', 'tokens', 'set', 'loss', 'perplexity']);

    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-forget-'));
    const file = tracker.writeJsonl(path.join(dir, 'run'));
    assert.equal(file, path.join(dir, 'run', 'forgetting.jsonl'));
    const text = fs.readFileSync(file, 'utf8');
    assert.ok(text.endsWith('\n'));
    assert.deepEqual(text.trim().split('\n').map((l) => JSON.parse(l)), rows);
    assert.deepEqual(fs.readdirSync(path.join(dir, 'run')), ['forgetting.jsonl'], 'no temp files left');
    fs.rmSync(dir, { recursive: true, force: true });
    model.dispose();
  });

  it('record(step, tokens) works manually; options are validated and defaults frozen', () => {
    const model = newModel();
    const tracker = new ForgettingTracker(model, { general: { tokens: B } }, { seqLen: 16 });
    tracker.baseline();
    const added = tracker.record(7, 123);
    assert.deepEqual(added.map((r) => [r.step, r.tokens, r.set]), [[7, 123, 'general']]);
    assert.equal(tracker.rows.length, 2);
    assert.deepEqual(tracker.paretoPoints(), [], 'no target set, no points');
    assert.throws(() => new ForgettingTracker(model, {}), /at least one/);
    assert.throws(() => new ForgettingTracker(model, { general: { tokens: B } }, { every: 0 }), /every/);
    assert.ok(Object.isFrozen(forgettingDefaults));
    model.dispose();
  });

  it('shipped base: domain text is less familiar than general text, a short domain fine-tune lowers domain loss and raises general loss', async () => {
    const { model, tokenizer } = await base('tiny-llama');
    const read = (f: string, chars = 4000) => tokenStream(tokenizer, [fs.readFileSync(path.join(__dirname, '..', '..', 'datasets', f), 'utf8').slice(0, chars)]);
    const tracker = new ForgettingTracker(model, { general: { tokens: read('general/heldout.txt') }, domain: { tokens: read('domain/heldout.txt') } }, { every: 15, seqLen: 128, label: 'base' });
    const domainTrain = read('domain/train.txt', 60000);
    const trainer = new Trainer(model, causalLmObjective, new TokenWindows(domainTrain, 64, 4, 1), { lr: 1e-3, maxSteps: 30, warmupSteps: 5, schedule: 'constant' });
    tracker.attach(trainer);
    const [general, domain] = tracker.rows;
    assert.ok(domain.loss > general.loss + 1, `domain ${domain.loss} vs general ${general.loss}`);
    await trainer.train();
    trainer.dispose();
    assert.deepEqual(tracker.rows.map((r) => r.step), [0, 0, 15, 15, 30, 30]);
    assert.ok(tracker.score('domain').deltaLoss < 0, JSON.stringify(tracker.score('domain')));
    assert.ok(tracker.score().deltaLoss > 0, `general text is forgotten: ${JSON.stringify(tracker.score())}`);
    model.dispose();
  });
});
