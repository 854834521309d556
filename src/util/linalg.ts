/**
 * Dense linear algebra on the host in float64, for the small matrices (a few hundred wide) where tfjs has
 * no kernel: the singular value decomposition that re-factorises merged LoRA updates to a target rank.
 */

/** A thin SVD M = U·diag(s)·Vᵀ of an m×n matrix, p = min(m, n); all row-major. */
export interface Svd {
  /** m×p, orthonormal columns. */
  u: Float64Array;
  /** p singular values, non-negative, in decreasing order. */
  s: Float64Array;
  /** n×p, orthonormal columns. */
  v: Float64Array;
  m: number;
  n: number;
  p: number;
}

/**
 * Thin SVD of the row-major m×n matrix `data` by one-sided Jacobi (Hestenes 1958; Demmel & Veselić 1992):
 * plane rotations orthogonalise the columns of M·V until every pair is orthogonal to working precision,
 * so the singular values are the column norms, accurate even for small ones (no Gram matrix is formed).
 * Each pair of singular vectors is signed so that the u column's largest-magnitude entry is positive,
 * which makes the result deterministic. Columns of U for zero singular values complete an orthonormal basis.
 *
 * @example
 * const { u, s, v } = svd([3, 0, 0, -2], 2, 2);   // s = [3, 2]
 */
export function svd(data: ArrayLike<number>, m: number, n: number): Svd {
  if (!Number.isInteger(m) || !Number.isInteger(n) || m < 1 || n < 1) throw new Error(`svd: shape must be positive integers (got ${m}×${n})`);
  if (data.length !== m * n) throw new Error(`svd: ${data.length} values for a ${m}×${n} matrix`);
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) throw new Error(`svd: entry (${Math.floor(i / n)}, ${i % n}) is ${data[i]}`);
  }
  if (m < n) {
    // Work on Mᵀ (more rows than columns keeps the rotated set small), then swap the roles of U and V.
    const t = new Float64Array(m * n);
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) t[j * m + i] = data[i * n + j];
    const r = svd(t, n, m);
    return { u: r.v, s: r.s, v: r.u, m, n, p: r.p };
  }
  const p = n;
  // Columns of M (length m) and of V (length n), rotated together.
  const a = Array.from({ length: n }, (_, j) => Float64Array.from({ length: m }, (_, i) => data[i * n + j]));
  const w = Array.from({ length: n }, (_, j) => Float64Array.from({ length: n }, (_, i) => (i === j ? 1 : 0)));
  const eps = 1e-15;
  for (let sweep = 0; sweep < 100; sweep++) {
    let rotated = false;
    for (let i = 0; i < n - 1; i++) {
      for (let j = i + 1; j < n; j++) {
        const ai = a[i];
        const aj = a[j];
        let alpha = 0;
        let beta = 0;
        let gamma = 0;
        for (let k = 0; k < m; k++) {
          alpha += ai[k] * ai[k];
          beta += aj[k] * aj[k];
          gamma += ai[k] * aj[k];
        }
        if (gamma === 0 || Math.abs(gamma) <= eps * Math.sqrt(alpha * beta)) continue;
        rotated = true;
        const zeta = (beta - alpha) / (2 * gamma);
        const t = Math.sign(zeta || 1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t);
        const s = c * t;
        rotate(ai, aj, c, s);
        rotate(w[i], w[j], c, s);
      }
    }
    if (!rotated) break;
  }
  const norms = a.map(norm2);
  const order = norms.map((_, j) => j).sort((x, y) => norms[y] - norms[x] || x - y);
  const sv = Float64Array.from(order, (j) => norms[j]);
  const tol = Math.max(m, n) * 2.3e-16 * (sv[0] || 0);
  const uCols: Float64Array[] = [];
  const vCols: Float64Array[] = [];
  for (const j of order) {
    if (norms[j] > tol && norms[j] > 0) {
      const col = a[j].map((x) => x / norms[j]);
      let big = 0;
      for (let k = 1; k < m; k++) if (Math.abs(col[k]) > Math.abs(col[big])) big = k;
      const sg = col[big] < 0 ? -1 : 1;
      uCols.push(col.map((x) => x * sg));
      vCols.push(w[j].map((x) => x * sg));
    } else {
      uCols.push(new Float64Array(0)); // completed below
      vCols.push(w[j]);
    }
  }
  // Zero singular values: any orthonormal completion of U is valid; Gram–Schmidt over the standard basis.
  let e = 0;
  for (let c = 0; c < p; c++) {
    if (uCols[c].length) continue;
    for (; e < m; e++) {
      const cand = new Float64Array(m);
      cand[e] = 1;
      for (let pass = 0; pass < 2; pass++) {
        for (const q of uCols) {
          if (!q.length) continue;
          let d = 0;
          for (let k = 0; k < m; k++) d += q[k] * cand[k];
          for (let k = 0; k < m; k++) cand[k] -= d * q[k];
        }
      }
      const nr = norm2(cand);
      if (nr > 0.5) {
        uCols[c] = cand.map((x) => x / nr);
        e++;
        break;
      }
    }
    sv[c] = 0;
  }
  const u = new Float64Array(m * p);
  const v = new Float64Array(n * p);
  for (let c = 0; c < p; c++) {
    for (let k = 0; k < m; k++) u[k * p + c] = uCols[c][k];
    for (let k = 0; k < n; k++) v[k * p + c] = vCols[c][k];
  }
  return { u, s: sv, v, m, n, p };
}

function norm2(x: Float64Array): number {
  let s = 0;
  for (let k = 0; k < x.length; k++) s += x[k] * x[k];
  return Math.sqrt(s);
}

function rotate(x: Float64Array, y: Float64Array, c: number, s: number): void {
  for (let k = 0; k < x.length; k++) {
    const xi = x[k];
    const yi = y[k];
    x[k] = c * xi - s * yi;
    y[k] = s * xi + c * yi;
  }
}

/**
 * The q-quantile of `values` with linear interpolation between order statistics (numpy's and
 * `torch.quantile`'s default), q in [0, 1].
 */
export function quantile(values: ArrayLike<number>, q: number): number {
  if (!(q >= 0 && q <= 1)) throw new Error(`quantile: q must be in [0, 1] (got ${q})`);
  if (values.length === 0) throw new Error('quantile: no values');
  const sorted = Float64Array.from(values).sort();
  const pos = q * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (pos - lo) * (sorted[hi] - sorted[lo]);
}
