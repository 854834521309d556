import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  attentionHeatmap, dpoChart, forgettingChart, locatePlotly, lossChart, paretoChart, paretoFront, peftChart, ppoChart,
  rewardAccuracyChart, scoreDistributionChart, saveCharts, smooth, thinIndices, tokenProbChart,
} from '../../src/viz';
import { metrics, specOf } from './helpers';

describe('viz charts', () => {
  it('loss chart: train, eval and lr series carry the input values; lr on a second axis', () => {
    const history = [1, 2, 3].map((s) => metrics(s, 3));
    const c = lossChart({ history, evals: [{ step: 3, evalLoss: 2.5 }] });
    const [train, evalTrace, lr] = c.spec.data;
    assert.deepEqual(train.x, [1, 2, 3]);
    assert.deepEqual(train.y, history.map((m) => m.loss));
    assert.deepEqual([evalTrace.name, evalTrace.x, evalTrace.y], ['eval loss', [3], [2.5]]);
    assert.deepEqual([lr.name, lr.yaxis, lr.y], ['learning rate', 'y2', history.map((m) => m.lr)]);
    assert.equal((c.spec.layout.yaxis2 as { overlaying: string }).overlaying, 'y');
    // The same values survive the trip through the HTML fragment's escaped JSON.
    assert.deepEqual(specOf(c.html()), JSON.parse(JSON.stringify(c.spec)));
  });

  it('loss chart from arrays: typed arrays become plain arrays, NaN becomes a gap, smoothing adds a trace', () => {
    const c = lossChart({ step: new Float32Array([1, 2, 3]), loss: new Float32Array([2, NaN, 1]) }, { smoothing: 0.5, showLr: false });
    assert.equal(c.spec.data.length, 2);
    assert.deepEqual(c.spec.data[0].y, [2, null, 1]);
    assert.deepEqual(c.spec.data[1].y, [2, null, smooth([2, 1], 0.5)[1]]);
    assert.deepEqual(smooth([2, 1], 0.5), [2, (0.5 * 0.5 * 2 + 0.5 * 1) / 0.75]);
  });

  it('thins long series evenly, keeping the last point', () => {
    assert.deepEqual(thinIndices(5), [0, 1, 2, 3, 4]);
    const idx = thinIndices(10_000, 100);
    assert.ok(idx.length <= 100);
    assert.equal(idx.at(-1), 9_999);
    const c = lossChart({ step: idx.map((i) => i + 1), loss: idx.map(() => 1) }, { maxPoints: 10 });
    assert.ok((c.spec.data[0].x as number[]).length <= 10);
  });

  it('Pareto front keeps the non-dominated points in both directions', () => {
    const pts = [
      { label: 'a', target: 1, general: 5 }, { label: 'b', target: 2, general: 3 }, { label: 'c', target: 3, general: 4 },
      { label: 'd', target: 4, general: 1 }, { label: 'e', target: 2, general: 3 }, { label: 'nan', target: NaN, general: 0 },
    ];
    assert.deepEqual(paretoFront(pts).map((p) => p.label), ['a', 'b', 'e', 'd']);
    assert.deepEqual(paretoFront(pts, { target: 'higher', general: 'higher' }).map((p) => p.label), ['d', 'c', 'a']);
    const chart = paretoChart(pts.map((p, i) => ({ ...p, group: i % 2 ? 'lora' : 'full' })));
    const front = chart.spec.data.find((t) => t.name === 'Pareto front')!;
    assert.deepEqual(front.x, [1, 2, 2, 4]);
    assert.deepEqual(chart.spec.data.map((t) => t.name), ['full', 'lora', 'Pareto front']);
  });

  it('forgetting curves: one trace per run plus an optional baseline', () => {
    const c = forgettingChart([
      { name: 'full', tokens: [0, 100], metric: [3, 3.5] },
      { name: 'lora <r8>', tokens: [0, 100], metric: [3, 3.1] },
    ], { baseline: 3 });
    assert.deepEqual(c.spec.data.map((t) => [t.name, t.y]), [['full', [3, 3.5]], ['lora &lt;r8&gt;', [3, 3.1]]]);
    assert.equal((c.spec.layout.shapes as { y0: number }[])[0].y0, 3);
  });

  it('PEFT comparison: bars per metric and a params-vs-loss scatter on separate axes', () => {
    const rows = [
      { method: 'full', trainableParams: 1000, loss: 1.9, forgetting: 0.4 },
      { method: 'lora', trainableParams: 10, loss: 2.1, forgetting: 0.1 },
    ];
    const c = peftChart(rows);
    assert.deepEqual(c.spec.data.map((t) => [t.type, t.xaxis, t.yaxis]), [['bar', 'x', 'y'], ['bar', 'x2', 'y2'], ['bar', 'x3', 'y3'], ['scatter', 'x4', 'y4']]);
    assert.deepEqual(c.spec.data[0].y, [1000, 10]);
    assert.deepEqual(c.spec.data[2].y, [0.4, 0.1]);
    assert.deepEqual([c.spec.data[3].x, c.spec.data[3].y], [[1000, 10], [1.9, 2.1]]);
    assert.equal(peftChart(rows.map(({ forgetting: _, ...r }) => r)).spec.data.length, 3);
  });

  it('reward accuracy, DPO rewards with computed margins, PPO reward vs KL', () => {
    const acc = rewardAccuracyChart({ step: [1, 2], accuracy: [0.5, 0.75], evalStep: [2], evalAccuracy: [0.7] });
    assert.deepEqual(acc.spec.data.map((t) => t.y), [[0.5, 0.75], [0.7]]);
    const dist = scoreDistributionChart({ chosenScores: [1, 2], rejectedScores: new Float32Array([-1, 0.5]) });
    assert.deepEqual(dist.spec.data.map((t) => [t.type, t.name, t.x]), [['histogram', 'chosen', [1, 2]], ['histogram', 'rejected', [-1, 0.5]]]);
    assert.equal(dist.spec.layout.barmode, 'overlay');
    const dpo = dpoChart({ step: [1, 2], chosen: [0.5, 1], rejected: [0, -0.5] });
    assert.deepEqual(dpo.spec.data.map((t) => [t.name, t.y]), [['chosen reward', [0.5, 1]], ['rejected reward', [0, -0.5]], ['margin', [0.5, 1.5]]]);
    const one = ppoChart({ reward: [0.1, 0.3], kl: [0, 1] });
    assert.deepEqual([one.spec.data[0].x, one.spec.data[0].y, one.spec.data[0].customdata], [[0, 1], [0.1, 0.3], [1, 2]]);
    const two = ppoChart([{ name: 'a', reward: [1], kl: [1] }, { name: 'b', reward: [2], kl: [2], step: [10] }]);
    assert.deepEqual(two.spec.data.map((t) => t.name), ['a', 'b']);
  });

  it('attention heatmap: nested or flat weights, positional axes labelled with escaped tokens', () => {
    const tokens = ['a', ' a', '</script>'];
    const w = [[1, 0, 0], [0.5, 0.5, 0], [0.2, 0.3, 0.5]];
    const c = attentionHeatmap({ tokens, weights: w });
    assert.deepEqual(c.spec.data[0].z, w);
    assert.deepEqual((c.spec.layout.xaxis as { ticktext: string[] }).ticktext, ['a', '␣a', '&lt;/script&gt;']);
    assert.deepEqual(attentionHeatmap({ tokens, weights: new Float32Array(w.flat()) }).spec.data[0].z, w.map((r) => r.map((v) => Math.fround(v))));
    assert.throws(() => attentionHeatmap({ tokens, weights: [1, 2] }), /expected 3×3/);
    const html = c.html();
    assert.equal(html.match(/<\/script>/g)?.length, 1, 'a token cannot close the chart script');
    assert.deepEqual(specOf(html).data[0].customdata, JSON.parse(JSON.stringify(c.spec.data[0].customdata)));
  });

  it('token-probability view: ranks × positions, the actual next token in bold', () => {
    const c = tokenProbChart({
      tokens: ['x', 'y'],
      topK: [[{ token: 'b', prob: 0.6 }, { token: 'y', prob: 0.3 }], [{ token: '<', prob: 0.9 }]],
      next: ['y', undefined],
    });
    assert.deepEqual(c.spec.data[0].z, [[0.6, 0.9], [0.3, null]]);
    assert.deepEqual(c.spec.data[0].text, [['b', '&lt;'], ['<b>y</b>', '']]);
    assert.throws(() => tokenProbChart({ tokens: ['x'], topK: [] }), /topK has 0 positions/);
  });

  it('save() writes one self-contained page with plotly.js inlined', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-viz-'));
    try {
      const file = lossChart({ step: [1, 2], loss: [2, 1] }, { title: 'a <title>' }).save(path.join(dir, 'sub', 'loss.html'));
      const html = fs.readFileSync(file, 'utf8');
      const bundle = fs.readFileSync(locatePlotly().file, 'utf8');
      assert.ok(html.startsWith('<!DOCTYPE html>'));
      assert.ok(html.includes('<meta charset="utf-8">'));
      assert.ok(html.includes(bundle), 'the plotly.js bundle is inlined');
      assert.ok(html.includes('<title>a &lt;title&gt;</title>'));
      assert.deepEqual(specOf(html).data[0].y, [2, 1]);
      const two = fs.readFileSync(saveCharts(path.join(dir, 'two.html'), [lossChart({ step: [1], loss: [1] }), ppoChart({ reward: [1], kl: [0] })]), 'utf8');
      assert.equal(two.split(bundle).length, 2, 'one bundle for several charts');
      assert.equal(two.match(/class="tunelab-chart"/g)?.length, 2);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
