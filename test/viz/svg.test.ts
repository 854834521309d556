import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import {
  Chart, attentionHeatmap, chartSvg, dpoChart, forgettingChart, integerTicks, lossChart, metricsChart, paretoChart, peftChart, ppoChart,
  rewardAccuracyChart, scoreDistributionChart, ticks, tokenProbChart,
} from '../../src/viz';
import { plotlyText } from '../../src/viz/html';
import { metrics } from './helpers';

const PYTHON = '/usr/bin/python3';

/** XML well-formedness by Python's expat (Debian's python3 is in CI for Jupyter); null when absent. */
function xmlErrors(svgs: string[]): string | null {
  if (!fs.existsSync(PYTHON)) return null;
  const code = 'import json,sys,xml.dom.minidom as m\nfor s in json.load(sys.stdin): m.parseString(s.encode())\nprint("ok")';
  const r = spawnSync(PYTHON, ['-c', code], { input: JSON.stringify(svgs), encoding: 'utf8' });
  return r.stdout.trim() === 'ok' ? '' : r.stderr;
}

/** The tick labels of one axis (`data-axis`) in a picture. */
function tickLabels(svg: string, axis: string): string[] {
  const group = svg.split(`<g class="axis" data-axis="${axis}">`)[1]?.split('</g>')[0] ?? '';
  return [...group.matchAll(/<text class="tick"[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]);
}

const traceNames = (svg: string) => [...svg.matchAll(/<g class="trace" data-type="[^"]*" data-name="([^"]*)"/g)].map((m) => m[1]);

const steps = (n: number) => Array.from({ length: n }, (_, i) => metrics(i + 1, n));

const ALL: Chart[] = [
  lossChart({ history: steps(40), evals: [{ step: 20, evalLoss: 1.2 }, { step: 40, evalLoss: 0.9 }] }, { smoothing: 0.8 }),
  metricsChart(steps(12).map((m) => ({ step: m.step, kl: m.loss / 3, score: m.lr ?? 0, clip: 0.1 })), ['kl', 'score', 'clip']),
  peftChart([{ method: 'full', trainableParams: 870_000, loss: 1.9, forgetting: 0.4 }, { method: 'lora <r8>', trainableParams: 8000, loss: 2.1, forgetting: 0.1 }]),
  dpoChart({ step: [1, 2, 3, 4], chosen: [0, 0.1, 0.3, 0.4], rejected: [0, -0.1, -0.2, -0.5] }),
  scoreDistributionChart({ chosenScores: [1, 2, 2.5, 3], rejectedScores: [-1, 0, 0.5, 2] }),
  rewardAccuracyChart({ step: [1, 2, 3], accuracy: [0.5, 0.7, 0.8], evalStep: [3], evalAccuracy: [0.75] }),
  ppoChart({ reward: [0.1, 0.4, 0.6], kl: [0, 0.8, 2.1] }),
  paretoChart([{ label: 'a&b', target: 1.9, general: 3.6, group: 'full' }, { label: 'c', target: 2.1, general: 3.2, group: 'lora' }]),
  forgettingChart([{ name: 'full', tokens: [0, 1e5, 2e5], metric: [3.1, 3.4, 3.6] }, { name: 'LoRA', tokens: [0, 1e5], metric: [3.1, 3.15] }], { baseline: 3.1 }),
  attentionHeatmap({ tokens: ['The', ' <b>', '\n'], weights: [[1, 0, 0], [0.4, 0.6, 0], [0.2, 0.5, 0.3]] }),
  tokenProbChart({ tokens: ['To', ' loop'], topK: [[{ token: ' be', prob: 0.3 }], [{ token: '</svg>', prob: 0.6 }]], next: [' loop', '</svg>'] }),
];

describe('viz static SVG', () => {
  it('every ready-made chart is a well-formed SVG with one group per trace, named as in the spec', function () {
    const svgs = ALL.map((c) => c.svg());
    for (const [i, svg] of svgs.entries()) {
      assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" width="800" height="\d+(\.\d+)?" viewBox=/, `chart ${i}`);
      const expected = ALL[i].spec.data.map((t, k) => (typeof t.name === 'string' ? t.name : `trace ${k}`));
      const unescape = (s: string) => s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&amp;/g, '&');
      const plain = (s: string) => s.replace(/<[^>]*>/g, '').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
      assert.deepEqual(traceNames(svg).map(unescape), expected.map(plain), `chart ${i} (${ALL[i].title})`);
      assert.doesNotMatch(svg, /NaN|undefined|Infinity/, `chart ${i} has a bad number`);
    }
    const errors = xmlErrors(svgs);
    if (errors === null) this.skip();
    assert.equal(errors, '', 'every picture parses as XML');
  });

  it('draws every point, bar and cell', () => {
    const svg = chartSvg({ data: [{ type: 'scatter', mode: 'markers', x: [1, 2, 3], y: [1, null, 3] }], layout: {} });
    assert.equal(svg.match(/<circle /g)?.length, 2, 'a null y is a gap');
    const bars = peftChart([{ method: 'a', trainableParams: 10, loss: 1 }, { method: 'b', trainableParams: 100, loss: 2 }]).svg();
    assert.equal(bars.match(/<rect x=/g)?.length, 4, 'two bar panels of two bars');
    const heat = attentionHeatmap({ tokens: ['a', 'b'], weights: [[1, 0], [0.5, 0.5]] }).svg();
    assert.equal(heat.split('data-type="heatmap"')[1].match(/<rect /g)?.length, 4);
    const hist = scoreDistributionChart({ chosenScores: [0, 1, 1, 2], rejectedScores: [2] }).svg();
    const counts = (name: string) => hist.split(`data-name="${name}"`)[1].split('</g>')[0].match(/<rect /g)?.length;
    assert.equal(counts('chosen'), 30, 'one bar per bin (nbinsx)');
  });

  it('long lines keep at most four points per pixel column, extremes included', () => {
    const n = 10_000;
    const y = Array.from({ length: n }, (_, i) => (i === 7777 ? 50 : Math.sin(i / 100)));
    const svg = chartSvg({ data: [{ type: 'scatter', mode: 'lines', x: y.map((_, i) => i), y }], layout: { margin: { l: 0, r: 0, t: 0, b: 0 }, yaxis: { range: [-1, 50] } } }, { width: 500, height: 510 });
    const d = /<path d="([^"]+)" fill="none"/.exec(svg)![1];
    const pts = d.split(/[ML]/).filter(Boolean).map((p) => p.split(',').map(Number));
    assert.ok(pts.length <= 4 * 501 && pts.length > 500, `${pts.length} points`);
    assert.equal(Math.min(...pts.map((p) => p[1])), 0, 'the spike (y = 50, the top of the range) is drawn');
  });

  it('places points by hand-computed coordinates (fixed ranges and margins)', () => {
    const spec = {
      data: [{ type: 'scatter', mode: 'markers', x: [0, 5, 10], y: [0, 2, 10] }],
      layout: { height: 300, margin: { l: 50, r: 50, t: 50, b: 50 }, xaxis: { range: [0, 10] }, yaxis: { range: [0, 10] } },
    };
    const svg = chartSvg(spec, { width: 600 });
    const pts = [...svg.matchAll(/<circle cx="([\d.]+)" cy="([\d.]+)"/g)].map((m) => [Number(m[1]), Number(m[2])]);
    // Plot area: x 50..550 (500 px for 10 units), y 250..50 (200 px for 10 units, upwards).
    assert.deepEqual(pts, [[50, 250], [300, 210], [550, 50]]);
    const log = chartSvg({ data: [{ type: 'scatter', mode: 'markers', x: [10, 1000], y: [1, 1] }], layout: { margin: { l: 0, r: 0, t: 0, b: 0 }, xaxis: { type: 'log', range: [1, 3] } } }, { width: 200 });
    assert.deepEqual([...log.matchAll(/<circle cx="([\d.]+)"/g)].map((m) => Number(m[1])), [0, 200], 'log axis: range in exponents');
  });

  it('step axes have whole-number ticks, in Plotly and in the picture', () => {
    for (const n of [2, 3, 7, 40, 2000]) {
      const c = lossChart({ history: steps(n) });
      const xaxis = c.spec.layout.xaxis as { dtick?: number; tick0?: number; tickmode?: string };
      if (n <= 40) {
        assert.equal(xaxis.tickmode, 'linear');
        assert.ok(Number.isInteger(xaxis.dtick) && xaxis.dtick! >= 1 && xaxis.tick0 === 0, `${n} steps: dtick ${xaxis.dtick}`);
      } else assert.equal(xaxis.dtick, undefined, 'long runs keep automatic (whole) ticks, so zooming in finds ticks');
      const labels = tickLabels(c.svg(), 'x');
      assert.ok(labels.length >= 2, `${n} steps: ${labels.length} ticks`);
      for (const l of labels) assert.match(l, /^\d+$/, `${n} steps: tick "${l}"`);
    }
    assert.deepEqual(tickLabels(lossChart({ step: [1, 2, 3], loss: [3, 2, 1] }).svg(), 'x'), ['1', '2', '3']);
    const panels = metricsChart([{ step: 1, a: 1, b: 2 }, { step: 2, a: 2, b: 1 }], ['a', 'b']);
    for (const axis of ['x', 'x2']) for (const l of tickLabels(panels.svg(), axis)) assert.match(l, /^\d+$/);
    for (const c of [rewardAccuracyChart({ step: [1, 2], accuracy: [0.5, 0.6] }), dpoChart({ step: [1, 2], chosen: [0, 1], rejected: [0, -1] })]) {
      assert.ok(Number.isInteger((c.spec.layout.xaxis as { dtick: number }).dtick));
    }
  });

  it('ticks: 1-2-5 steps, dtick from tick0, whole numbers when asked', () => {
    assert.deepEqual(ticks(0, 1), [0, 0.2, 0.4, 0.6, 0.8, 1]);
    assert.deepEqual(ticks(0.9, 3.1, { target: 8 }), [1, 1.5, 2, 2.5, 3]);
    assert.deepEqual(ticks(0.9, 3.1, { target: 8, integer: true }), [1, 2, 3]);
    assert.deepEqual(ticks(3, 20, { dtick: 5, tick0: 0 }), [5, 10, 15, 20]);
    assert.deepEqual(integerTicks([1, 2, 3]), { tickmode: 'linear', tick0: 0, dtick: 1 });
    assert.deepEqual(integerTicks([1, 40]).dtick, 5);
    // More points than a call may have arguments: no Math.min(...values) stack overflow.
    const long = Array.from({ length: 300_000 }, (_, i) => i);
    assert.deepEqual(integerTicks(long), {});
    assert.match(chartSvg({ data: [{ type: 'scatter', mode: 'lines', x: long, y: long.map((i) => i % 7) }], layout: {} }), /^<svg/);
    assert.match(chartSvg({ data: [{ type: 'histogram', x: long }], layout: {} }), /^<svg/);
    assert.deepEqual(integerTicks([1, 2000]), {});
    assert.deepEqual(integerTicks([]), {});
  });

  it('text from data is escaped (tokens, labels, titles)', () => {
    // Plotly text is pseudo-HTML: charts escape data with plotlyText, and the picture shows it as text.
    const svg = new Chart({ data: [{ type: 'bar', name: 'a "x" & b', x: [plotlyText('<script>')], y: [1] }], layout: { title: { text: '</svg><b>t</b>' } } }).svg();
    assert.doesNotMatch(svg, /<script>|<\/svg><b>/);
    assert.match(svg, />&lt;script&gt;</);
    assert.match(svg, /data-name="a &quot;x&quot; &amp; b"/);
    assert.equal(svg.match(/<\/svg>/g)?.length, 1);
  });
});
