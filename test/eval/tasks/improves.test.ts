import { strict as assert } from 'assert';
import { ForgettingTracker } from '../../../src/eval/forgetting';
import { evaluateTasks } from '../../../src/eval/tasks/evaluate';
import { task } from '../../../src/eval/tasks/task';
import { CausalLM } from '../../../src/model';
import { Tokenizer } from '../../../src/tokenizer';
import { TokenWindows, causalLmObjective, tokenStream } from '../../../src/train/causal-lm';
import { Trainer } from '../../../src/train/trainer';
import { forgettingChart } from '../../../src/viz/charts';
import { engineReady } from '../../helpers';

// A tiny hand-made task: which sound each animal makes. The model is trained on the true sentences.
const facts = [['cow', 'moo'], ['dog', 'woof'], ['cat', 'meow'], ['duck', 'quack'], ['owl', 'hoot'], ['bee', 'buzz'], ['pig', 'oink'], ['lion', 'roar']];
const sounds = facts.map(([, s]) => s);
const docs = facts.map(([animal, sound]) => ({ animal, sound }));
const mc = task({
  name: 'sounds', kind: 'multiple_choice', docs, prompt: (d) => `the ${d.animal} says`,
  choices: (d) => [d.sound, ...sounds.filter((s) => s !== d.sound).slice(0, 3)].sort(), target: (d) => d.sound,
});
const lw = task({ name: 'sound_word', kind: 'loglikelihood', docs, prompt: (d) => `the ${d.animal} says`, target: (d) => d.sound });

describe('eval/tasks: training on a task improves its score', () => {
  before(engineReady);

  it('acc, is_greedy acc and perplexity improve; the tracker records them with intervals every N steps', async () => {
    const text = facts.map(([a, s]) => `the ${a} says ${s}`);
    const tok = Tokenizer.train(text, { vocabSize: 300, minFrequency: 1 });
    const model = CausalLM.create({ vocabSize: tok.vocabSize, nLayers: 1, dModel: 32, nHeads: 2, nKvHeads: 1, dFf: 64, contextLength: 16 }, { seed: 4 });
    const before = evaluateTasks(model, tok, [mc, lw]);
    const stream = tokenStream(tok, Array.from({ length: 20 }, (_, i) => text[i % text.length]));
    const tracker = new ForgettingTracker(model, { facts: { tokens: stream } }, { every: 50, seqLen: 15, batchSize: 8, tasks: { tasks: [mc], tokenizer: tok } });
    const trainer = new Trainer(model, causalLmObjective, new TokenWindows(stream, 15, 4, 1), { lr: 1e-2, maxSteps: 150, warmupSteps: 5, schedule: 'constant', seed: 1 });
    tracker.attach(trainer);
    await trainer.train();
    trainer.dispose();
    const after = evaluateTasks(model, tok, [mc, lw]);

    const score = (r: typeof before, task: string, metric: string) => r.find((x) => x.task === task)!.scores.find((s) => s.metric === metric)!;
    assert.ok(score(before, 'sounds', 'acc').value <= 0.5, `base acc ${score(before, 'sounds', 'acc').value}`);
    assert.equal(score(after, 'sounds', 'acc').value, 1);
    assert.ok(score(after, 'sounds', 'acc').low > score(before, 'sounds', 'acc').high, 'the intervals separate');
    assert.ok(score(after, 'sound_word', 'acc').value > score(before, 'sound_word', 'acc').value);
    assert.ok(score(after, 'sound_word', 'perplexity').value < score(before, 'sound_word', 'perplexity').value / 5);

    // The tracker: task rows at steps 0, 50, 100, 150, with intervals around each value.
    const rows = tracker.taskRows.filter((r) => r.metric === 'acc');
    assert.deepEqual(rows.map((r) => r.step), [0, 50, 100, 150]);
    assert.equal(rows[0].value, score(before, 'sounds', 'acc').value);
    assert.equal(rows.at(-1)!.value, 1);
    for (const r of rows) assert.ok(r.low <= r.value && r.value <= r.high);
    const [curve] = tracker.taskCurves('acc');
    assert.equal(curve.name, 'sounds acc');
    assert.deepEqual(curve.tokens, [0, 3000, 6000, 9000]); // 50 steps × 4 × 15 tokens
    assert.deepEqual(curve.low, rows.map((r) => r.low));
    assert.throws(() => tracker.taskCurves('bleu'), /no task rows for metric "bleu" \(metrics: acc, acc_norm\)/);

    // The chart draws each interval as a band (a closed polygon) under its line, in Plotly and the static picture.
    const chart = forgettingChart(tracker.taskCurves('acc'), { metricName: 'accuracy' });
    const traces = chart.spec.data as { fill?: string; x: number[]; y: number[] }[];
    assert.equal(traces[0].fill, 'toself');
    assert.deepEqual(traces[0].y, [...rows.map((r) => r.high), ...rows.map((r) => r.low).reverse()]);
    assert.match(chart.svg(), /<path d="M[^"]*Z" fill="#1f77b4" stroke="none"\/>/);
    model.dispose();
  });
});
