import { strict as assert } from 'assert';
import { bootstrapInterval, meanStderr, normalQuantile, wilsonInterval } from '../../../src/eval/tasks/ci';
import { quantile } from '../../../src/util/linalg';

const close = (a: number, b: number, tol: number, what: string) => assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b}`);

describe('eval/tasks/ci', () => {
  it('normalQuantile gives the two-sided z of common levels', () => {
    close(normalQuantile(0.95), 1.959964, 2e-6, 'z 95%');
    close(normalQuantile(0.9), 1.644854, 2e-6, 'z 90%');
    close(normalQuantile(0.99), 2.575829, 2e-6, 'z 99%');
    assert.throws(() => normalQuantile(1), /confidence must be in \(0, 1\) \(got 1\)/);
  });

  it('wilsonInterval equals the hand-computed score interval on known counts', () => {
    // 8 of 10 at 95 %: p = 0.8, z² = 3.841459; centre (0.8 + 0.192073) / 1.384146 = 0.716740,
    // half-width (1.959964 / 1.384146) · √(0.016 + 0.009604) = 0.226636.
    const a = wilsonInterval(8, 10);
    close(a.low, 0.490162, 1e-5, 'low 8/10');
    close(a.high, 0.943318, 1e-5, 'high 8/10');
    // 0 of 10: [0, z² / (n + z²)] = [0, 3.841459 / 13.841459].
    const b = wilsonInterval(0, 10);
    close(b.low, 0, 1e-12, "low 0/10");
    close(b.high, 3.841459 / 13.841459, 1e-6, 'high 0/10');
    // Symmetric: k of n mirrors n − k of n.
    const c = wilsonInterval(3, 40);
    const d = wilsonInterval(37, 40);
    close(c.low, 1 - d.high, 1e-12, 'mirror low');
    close(c.high, 1 - d.low, 1e-12, 'mirror high');
    // 50 of 100: a textbook value, [0.4038, 0.5962].
    const e = wilsonInterval(50, 100);
    close(e.low, 0.403831, 1e-5, 'low 50/100');
    close(e.high, 0.596169, 1e-5, 'high 50/100');
    assert.ok(Number.isNaN(wilsonInterval(0, 0).low));
    assert.throws(() => wilsonInterval(11, 10), /0 ≤ successes ≤ n \(got 11 of 10\)/);
  });

  it('bootstrapInterval is seeded, brackets the statistic, and matches Wilson on a large 0/1 sample', () => {
    const xs = Array.from({ length: 400 }, (_, i) => (i % 10 < 3 ? 1 : 0)); // p = 0.3
    const mean = (s: readonly number[]) => s.reduce((a, b) => a + b, 0) / s.length;
    const a = bootstrapInterval(xs, mean, { seed: 7, iters: 2000 });
    const b = bootstrapInterval(xs, mean, { seed: 7, iters: 2000 });
    assert.deepEqual(a, b);
    assert.notDeepEqual(bootstrapInterval(xs, mean, { seed: 8, iters: 2000 }), a);
    assert.ok(a.low < 0.3 && a.high > 0.3);
    const w = wilsonInterval(120, 400);
    close(a.low, w.low, 0.01, 'bootstrap vs Wilson low');
    close(a.high, w.high, 0.01, 'bootstrap vs Wilson high');
    // A constant sample has no spread.
    assert.deepEqual(bootstrapInterval([2, 2, 2], mean), { low: 2, high: 2 });
    // One item has no interval (it resamples to itself), rather than a misleading zero width.
    assert.ok(Number.isNaN(bootstrapInterval([2], mean).low));
  });

  it('quantile interpolates linearly (numpy default) and meanStderr is s/√n', () => {
    assert.equal(quantile([1, 2, 3, 4], 0.5), 2.5);
    assert.equal(quantile([1, 2, 3, 4], 0), 1);
    assert.equal(quantile([1, 2, 3, 4], 1), 4);
    // mean 0.75, sample variance 0.25, / 4 → 0.0625, √ → 0.25
    assert.equal(meanStderr([1, 0, 1, 1]), 0.25);
    assert.ok(Number.isNaN(meanStderr([1])));
  });
});
