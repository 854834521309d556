import { strict as assert } from 'assert';
import { Svd, quantile, svd } from '../../src/util/linalg';
import { Rng } from '../../src/util/rng';

const randn = (rng: Rng, n: number) => Float64Array.from({ length: n }, () => rng.next() * 2 - 1);

/** U·diag(s)·Vᵀ keeping the first k triplets (all by default), row-major m×n. */
function compose(r: Svd, k = r.p): Float64Array {
  const out = new Float64Array(r.m * r.n);
  for (let i = 0; i < r.m; i++) for (let j = 0; j < r.n; j++) {
    let x = 0;
    for (let c = 0; c < k; c++) x += r.u[i * r.p + c] * r.s[c] * r.v[j * r.p + c];
    out[i * r.n + j] = x;
  }
  return out;
}

/** max |QᵀQ − I| of a row-major rows×p matrix. */
function orthoError(q: Float64Array, rows: number, p: number): number {
  let e = 0;
  for (let a = 0; a < p; a++) for (let b = 0; b < p; b++) {
    let d = 0;
    for (let k = 0; k < rows; k++) d += q[k * p + a] * q[k * p + b];
    e = Math.max(e, Math.abs(d - (a === b ? 1 : 0)));
  }
  return e;
}

const maxDiff = (x: ArrayLike<number>, y: ArrayLike<number>) => Array.from(x).reduce((e, v, i) => Math.max(e, Math.abs(v - y[i])), 0);

/** Householder reflection I − 2vvᵀ/vᵀv (n×n, row-major): an orthogonal matrix to build known spectra. */
function householder(v: Float64Array): Float64Array {
  const n = v.length;
  const vv = v.reduce((s, x) => s + x * x, 0);
  return Float64Array.from({ length: n * n }, (_, k) => (Math.floor(k / n) === k % n ? 1 : 0) - (2 * v[Math.floor(k / n)] * v[k % n]) / vv);
}

function check(r: Svd, data: ArrayLike<number>): void {
  assert.ok(maxDiff(compose(r), data) < 1e-12 * Math.max(1, r.s[0]), 'reconstruction');
  assert.ok(orthoError(r.u, r.m, r.p) < 1e-12, 'UᵀU = I');
  assert.ok(orthoError(r.v, r.n, r.p) < 1e-12, 'VᵀV = I');
  for (let c = 0; c < r.p; c++) {
    assert.ok(r.s[c] >= 0, 'non-negative');
    if (c) assert.ok(r.s[c] <= r.s[c - 1], 'sorted');
  }
}

describe('util/linalg', () => {
  it('diag(3, −2): singular values 3, 2; the sign moves into a singular vector', () => {
    const r = svd([3, 0, 0, -2], 2, 2);
    assert.deepEqual([...r.s], [3, 2]);
    check(r, [3, 0, 0, -2]);
    // u columns are signed positive at their largest entry: u = I, so v = [[1, 0], [0, −1]].
    assert.deepEqual([...r.u].map((x) => x + 0), [1, 0, 0, 1]);
    assert.deepEqual([...r.v].map((x) => x + 0), [1, 0, 0, -1]);
  });

  it('the all-ones 2×3 matrix: σ = √6, 0; U completed to an orthonormal basis', () => {
    const r = svd([1, 1, 1, 1, 1, 1], 2, 3);
    assert.ok(Math.abs(r.s[0] - Math.sqrt(6)) < 1e-14);
    assert.equal(r.s[1], 0);
    assert.ok(maxDiff([r.u[0], r.u[2]], [Math.SQRT1_2, Math.SQRT1_2]) < 1e-14);
    check(r, [1, 1, 1, 1, 1, 1]);
  });

  it('random tall, wide, square and rank-deficient matrices', () => {
    const rng = new Rng(7);
    for (const [m, n] of [[7, 4], [4, 7], [20, 20], [1, 5], [5, 1]]) {
      const data = randn(rng, m * n);
      const r = svd(data, m, n);
      assert.equal(r.p, Math.min(m, n));
      check(r, data);
    }
    const x = randn(rng, 6);
    const y = randn(rng, 4);
    const outer = Float64Array.from({ length: 24 }, (_, k) => x[Math.floor(k / 4)] * y[k % 4]);
    const r = svd(outer, 6, 4);
    check(r, outer);
    assert.ok(Math.abs(r.s[0] - Math.hypot(...x) * Math.hypot(...y)) < 1e-12);
    assert.ok(r.s[1] < 1e-14);
  });

  it('known singular values; rank-k truncation is the best rank-k approximation (Eckart–Young)', () => {
    const rng = new Rng(3);
    const [m, n] = [6, 5];
    const sigma = [5, 3, 2, 1, 0.5];
    const p = householder(randn(rng, m));
    const q = householder(randn(rng, n));
    // M = P[:, :5]·diag(σ)·Qᵀ
    const data = Float64Array.from({ length: m * n }, (_, k) => {
      const i = Math.floor(k / n);
      const j = k % n;
      return sigma.reduce((s, sg, c) => s + p[i * m + c] * sg * q[j * n + c], 0);
    });
    const r = svd(data, m, n);
    assert.ok(maxDiff(r.s, sigma) < 1e-13);
    for (let k = 1; k <= 4; k++) {
      const approx = compose(r, k);
      const err = Math.sqrt(approx.reduce((s, x, i) => s + (x - data[i]) ** 2, 0));
      const want = Math.sqrt(sigma.slice(k).reduce((s, x) => s + x * x, 0));
      assert.ok(Math.abs(err - want) < 1e-12, `rank ${k}: ‖M − M_k‖ = ${err}, want ${want}`);
    }
  });

  it('refuses bad shapes and non-finite entries, naming the entry', () => {
    assert.throws(() => svd([1, 2, 3], 2, 2), /3 values for a 2×2 matrix/);
    assert.throws(() => svd([1, NaN, 3, 4], 2, 2), /entry \(0, 1\) is NaN/);
  });

  it('quantile interpolates linearly like torch.quantile', () => {
    assert.equal(quantile([4, 1, 3, 2], 0.5), 2.5);
    assert.ok(Math.abs(quantile([1, 2, 3, 4], 0.9) - 3.7) < 1e-15);
    assert.equal(quantile([1, 2, 3, 4], 1), 4);
    assert.throws(() => quantile([1], 1.5), /q must be in \[0, 1\]/);
  });
});
