import { strict as assert } from 'assert';
import { taskScoreChart } from '../../src/viz/charts';

describe('viz/taskScoreChart', () => {
  it('a forest plot: one point and one low–high whisker per score, runs side by side per task row, a chance line', () => {
    const points = [
      { run: 'base', task: 'a', metric: 'acc', value: 0.3, low: 0.2, high: 0.4 },
      { run: 'base', task: 'b', metric: 'acc', value: 0.5, low: 0.4, high: 0.6 },
      { run: 'tuned', task: 'a', metric: 'acc', value: 0.6, low: 0.5, high: 0.7 },
    ];
    const chart = taskScoreChart(points, { chance: 0.25 });
    const data = chart.spec.data as { name: string; mode: string; x: (number | null)[]; y: (number | null)[] }[];
    assert.deepEqual(data.map((t) => [t.name, t.mode]), [['base interval', 'lines'], ['base', 'markers'], ['tuned interval', 'lines'], ['tuned', 'markers']]);
    assert.deepEqual(data[0].x, [0.2, 0.4, null, 0.4, 0.6, null]);
    assert.deepEqual(data[0].y, [-0.15, -0.15, null, 0.85, 0.85, null]);
    assert.deepEqual(data[1].y, [-0.15, 0.85]); // two runs: offsets ±0.15 around rows 0 and 1
    assert.deepEqual(data[3].y, [0.15]);
    const layout = chart.spec.layout as { yaxis: { ticktext: string[]; range: number[] }; shapes: { x0: number }[] };
    assert.deepEqual(layout.yaxis.ticktext, ['a acc', 'b acc']);
    assert.deepEqual(layout.yaxis.range, [1.5, -0.5], 'first row at the top');
    assert.equal(layout.shapes[0].x0, 0.25);
    const svg = chart.svg();
    assert.equal((svg.match(/<circle /g) ?? []).length, 3);
    assert.match(svg, />a acc</);
  });
});
