/*
 * Bodies of the fused kernels (fused.h), written as plain loops that the compiler vectorises for each ISA:
 * fused.c and fused_x86.c include this file once per target and wrap each body in a function compiled for
 * it. No libm calls inside the element loops (exp is computed here), so every loop vectorises.
 */
#ifndef TUNELAB_FUSED_BODY_H
#define TUNELAB_FUSED_BODY_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "fused.h"

#define FB static inline __attribute__((always_inline))
/* Partial sums per row reduction; a fixed count, so every ISA adds in the same order. */
#define FB_LANES 16

/*
 * e^x in single precision, about 1 ulp on [-87.3, 88]: x = k·ln2 + r with |r| ≤ ln2/2, e^r by a degree-6
 * minimax polynomial, 2^k built in the exponent bits. Inputs are clamped to that range (e^-87.3 is the
 * smallest normal float, so underflow gives ~1e-38 instead of 0), NaN stays NaN.
 */
FB float fb_exp(float x) {
  x = x < -87.3f ? -87.3f : x;
  x = x > 88.0f ? 88.0f : x;
  /* Round to nearest by adding 1.5·2^23 (exact in the default rounding mode; no -ffast-math here). */
  const float k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  /* ln2 split in two so that k·ln2_hi is exact. */
  float r = x - k * 0.693359375f;
  r = r - k * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t bits = ((int32_t)k + 127) << 23;
  float scale;
  memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

FB float fb_sigmoid(float x) { return 1.0f / (1.0f + fb_exp(-x)); }

FB float fb_row_max(const float *x, long n) {
  float acc[FB_LANES];
  for (int l = 0; l < FB_LANES; l++) acc[l] = -INFINITY;
  long j = 0;
  for (; j + FB_LANES <= n; j += FB_LANES)
    for (int l = 0; l < FB_LANES; l++) acc[l] = x[j + l] > acc[l] ? x[j + l] : acc[l];
  float m = -INFINITY;
  for (int l = 0; l < FB_LANES; l++) m = acc[l] > m ? acc[l] : m;
  for (; j < n; j++) m = x[j] > m ? x[j] : m;
  return m;
}

/* Σ e^(scale·x − shift) over a row; shift is scale·max so no term overflows. */
FB float fb_row_sum_exp(const float *x, long n, float scale, float shift) {
  float acc[FB_LANES] = {0};
  long j = 0;
  for (; j + FB_LANES <= n; j += FB_LANES)
    for (int l = 0; l < FB_LANES; l++) acc[l] += fb_exp(x[j + l] * scale - shift);
  float s = 0.0f;
  for (int l = 0; l < FB_LANES; l++) s += acc[l];
  for (; j < n; j++) s += fb_exp(x[j] * scale - shift);
  return s;
}

/* Σ a·b over a row (b = NULL: Σ a; a = b: Σ a²). */
FB float fb_row_dot(const float *a, const float *b, long n) {
  float acc[FB_LANES] = {0};
  long j = 0;
  for (; j + FB_LANES <= n; j += FB_LANES)
    for (int l = 0; l < FB_LANES; l++) acc[l] += a[j + l] * (b ? b[j + l] : 1.0f);
  float s = 0.0f;
  for (int l = 0; l < FB_LANES; l++) s += acc[l];
  for (; j < n; j++) s += a[j] * (b ? b[j] : 1.0f);
  return s;
}

/* 1/√(mean(x²) + ε) of a row (RMSNorm's factor). */
FB float fb_rms_inverse(const float *x, long n, float eps) { return 1.0f / sqrtf(fb_row_dot(x, x, n) / (float)n + eps); }

/* centred = x − mean(x), returns 1/√(var + ε) (population variance): two passes, as exact as the composite's. */
FB float fb_centre(const float *x, long n, float eps, float *centred) {
  const float mean = fb_row_dot(x, NULL, n) / (float)n;
  for (long j = 0; j < n; j++) centred[j] = x[j] - mean;
  return 1.0f / sqrtf(fb_row_dot(centred, centred, n) / (float)n + eps);
}

/* ---- softmax cross-entropy: loss = logsumexp(x) − x[target]; a target outside [0, V) counts 0 ---- */

FB void fb_cross_entropy(const fused_args *a, long r0, long r1) {
  const long v = a->cols;
  const int32_t *targets = (const int32_t *)a->p[1];
  for (long r = r0; r < r1; r++) {
    const float *x = a->p[0] + r * v;
    const int32_t t = targets[r];
    const float m = fb_row_max(x, v);
    const float lse = m + logf(fb_row_sum_exp(x, v, 1.0f, m));
    a->p[2][r] = t >= 0 && t < v ? lse - x[t] : 0.0f;
  }
}

/* dlogits = dy·(softmax(x) − onehot(target)); zero for a target outside [0, V) (its loss is constant). */
FB void fb_cross_entropy_grad(const fused_args *a, long r0, long r1) {
  const long v = a->cols;
  const int32_t *targets = (const int32_t *)a->p[1];
  for (long r = r0; r < r1; r++) {
    const float *x = a->p[0] + r * v;
    float *dx = a->p[3] + r * v;
    const int32_t t = targets[r];
    const float dy = a->p[2][r];
    if (t < 0 || t >= v) {
      for (long j = 0; j < v; j++) dx[j] = 0.0f;
      continue;
    }
    const float m = fb_row_max(x, v);
    const float scale = dy / fb_row_sum_exp(x, v, 1.0f, m);
    for (long j = 0; j < v; j++) dx[j] = fb_exp(x[j] - m) * scale;
    dx[t] -= dy;
  }
}

/* ---- softmax(scale·x) over rows, and its gradient from the output ---- */

FB void fb_softmax(const fused_args *a, long r0, long r1) {
  const long c = a->cols;
  const float scale = a->s[0];
  for (long r = r0; r < r1; r++) {
    const float *x = a->p[0] + r * c;
    float *y = a->p[1] + r * c;
    /* scale > 0, so max(scale·x) = scale·max(x). */
    const float shift = scale * fb_row_max(x, c);
    for (long j = 0; j < c; j++) y[j] = fb_exp(x[j] * scale - shift);
    const float inv = 1.0f / fb_row_dot(y, NULL, c);
    for (long j = 0; j < c; j++) y[j] *= inv;
  }
}

FB void fb_softmax_grad(const fused_args *a, long r0, long r1) {
  const long c = a->cols;
  const float scale = a->s[0];
  for (long r = r0; r < r1; r++) {
    const float *y = a->p[0] + r * c, *dy = a->p[1] + r * c;
    float *dx = a->p[2] + r * c;
    const float dot = fb_row_dot(dy, y, c);
    for (long j = 0; j < c; j++) dx[j] = scale * y[j] * (dy[j] - dot);
  }
}

/* ---- GELU, tanh form: x·σ(2u) = 0.5·x·(1 + tanh u), u = √(2/π)(x + 0.044715x³) ---- */

#define FB_GELU_C 1.5957691216057308f /* 2·√(2/π) */
#define FB_GELU_A 0.044715f

FB void fb_gelu(const fused_args *a, long i0, long i1) {
  const float *x = a->p[0];
  float *y = a->p[1];
  for (long i = i0; i < i1; i++) y[i] = x[i] * fb_sigmoid(FB_GELU_C * x[i] * (1.0f + FB_GELU_A * x[i] * x[i]));
}

FB void fb_gelu_grad(const fused_args *a, long i0, long i1) {
  const float *x = a->p[0], *dy = a->p[1];
  float *dx = a->p[2];
  for (long i = i0; i < i1; i++) {
    const float xi = x[i], x2 = xi * xi;
    const float s = fb_sigmoid(FB_GELU_C * xi * (1.0f + FB_GELU_A * x2));
    dx[i] = dy[i] * (s + xi * s * (1.0f - s) * FB_GELU_C * (1.0f + 3.0f * FB_GELU_A * x2));
  }
}

/* ---- SwiGLU: silu(gate)·up ---- */

FB void fb_swiglu(const fused_args *a, long i0, long i1) {
  const float *g = a->p[0], *u = a->p[1];
  float *y = a->p[2];
  for (long i = i0; i < i1; i++) y[i] = g[i] * fb_sigmoid(g[i]) * u[i];
}

FB void fb_swiglu_grad(const fused_args *a, long i0, long i1) {
  const float *g = a->p[0], *u = a->p[1], *dy = a->p[2];
  float *dg = a->p[3], *du = a->p[4];
  for (long i = i0; i < i1; i++) {
    const float s = fb_sigmoid(g[i]);
    du[i] = dy[i] * g[i] * s;
    dg[i] = dy[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
  }
}

/* ---- RMSNorm: y = x·r·w, r = 1/√(mean(x²) + ε) ---- */

FB void fb_rms_norm(const fused_args *a, long r0, long r1) {
  const long c = a->cols;
  const float *w = a->p[1];
  for (long r = r0; r < r1; r++) {
    const float *x = a->p[0] + r * c;
    float *y = a->p[2] + r * c;
    const float rr = fb_rms_inverse(x, c, a->s[0]);
    for (long j = 0; j < c; j++) y[j] = x[j] * rr * w[j];
  }
}

/* With h = w·dy: dx = r·h − x·r³·mean(x·h); and dy·x·r, summed over rows by the caller for dw. */
FB void fb_rms_norm_grad(const fused_args *a, long r0, long r1) {
  const long c = a->cols;
  const float *w = a->p[1];
  for (long r = r0; r < r1; r++) {
    const float *x = a->p[0] + r * c, *dy = a->p[2] + r * c;
    float *dx = a->p[3] + r * c, *dyx = a->p[4] + r * c;
    const float rr = fb_rms_inverse(x, c, a->s[0]);
    float acc[FB_LANES] = {0};
    long j = 0;
    for (; j + FB_LANES <= c; j += FB_LANES)
      for (int l = 0; l < FB_LANES; l++) acc[l] += x[j + l] * w[j + l] * dy[j + l];
    float xh = 0.0f;
    for (int l = 0; l < FB_LANES; l++) xh += acc[l];
    for (; j < c; j++) xh += x[j] * w[j] * dy[j];
    const float k = rr * rr * rr * xh / (float)c;
    for (j = 0; j < c; j++) {
      dx[j] = rr * w[j] * dy[j] - x[j] * k;
      dyx[j] = dy[j] * x[j] * rr;
    }
  }
}

/* ---- LayerNorm: y = x̂·w + b, x̂ = (x − mean)/√(var + ε), population variance ---- */

FB void fb_layer_norm(const fused_args *a, long r0, long r1) {
  const long c = a->cols;
  const float *w = a->p[1], *b = a->p[2];
  for (long r = r0; r < r1; r++) {
    const float *x = a->p[0] + r * c;
    float *y = a->p[3] + r * c;
    const float rstd = fb_centre(x, c, a->s[0], y);
    for (long j = 0; j < c; j++) y[j] = y[j] * rstd * w[j] + b[j];
  }
}

/* With h = w·dy: dx = rstd·(h − mean(h) − x̂·mean(h·x̂)); and dy·x̂ for dw. */
FB void fb_layer_norm_grad(const fused_args *a, long r0, long r1) {
  const long c = a->cols;
  const float *w = a->p[1];
  for (long r = r0; r < r1; r++) {
    const float *x = a->p[0] + r * c, *dy = a->p[2] + r * c;
    float *dx = a->p[3] + r * c, *dyx = a->p[4] + r * c;
    const float rstd = fb_centre(x, c, a->s[0], dx); /* dx holds x − mean until the last loop */
    float sh[FB_LANES] = {0}, shx[FB_LANES] = {0};
    long j = 0;
    for (; j + FB_LANES <= c; j += FB_LANES)
      for (int l = 0; l < FB_LANES; l++) {
        const float h = w[j + l] * dy[j + l];
        sh[l] += h;
        shx[l] += h * dx[j + l] * rstd;
      }
    float mh = 0.0f, mhx = 0.0f;
    for (int l = 0; l < FB_LANES; l++) {
      mh += sh[l];
      mhx += shx[l];
    }
    for (; j < c; j++) {
      mh += w[j] * dy[j];
      mhx += w[j] * dy[j] * dx[j] * rstd;
    }
    mh /= (float)c;
    mhx /= (float)c;
    for (j = 0; j < c; j++) {
      const float xhat = dx[j] * rstd;
      dyx[j] = dy[j] * xhat;
      dx[j] = rstd * (w[j] * dy[j] - mh - xhat * mhx);
    }
  }
}

/* ---- AdamW: m, v moments, bias-corrected step, decoupled decay (s: lr, β1, β2, ε, λ, c1, c2, grad scale) ---- */

/* Restrict parameters (not locals): GCC keeps them through inlining, so the loop needs no alias checks. */
FB void fb_adamw_loop(const float *restrict p, const float *restrict g, const float *restrict m, const float *restrict v,
                      float *restrict po, float *restrict mo, float *restrict vo, long i0, long i1, const float *s) {
  const float lr = s[0], b1 = s[1], b2 = s[2], eps = s[3], wd = s[4], c1 = s[5], c2 = s[6], scale = s[7];
  for (long i = i0; i < i1; i++) {
    const float gi = g[i] * scale; /* gradient clipping's factor (1 when not clipped) */
    const float mi = m[i] * b1 + gi * (1.0f - b1);
    const float vi = v[i] * b2 + gi * gi * (1.0f - b2);
    const float update = (mi / c1) / (sqrtf(vi / c2) + eps) + p[i] * wd;
    mo[i] = mi;
    vo[i] = vi;
    po[i] = p[i] - update * lr;
  }
}

FB void fb_adamw(const fused_args *a, long i0, long i1) {
  fb_adamw_loop(a->p[0], a->p[1], a->p[2], a->p[3], a->p[4], a->p[5], a->p[6], i0, i1, a->s);
}

/* ---- RoPE, rotate-half layout: y = x·cos + rotate_half(x)·sin, rotate_half(x) = (−x₂, x₁) ---- */

/*
 * Rows are (b, h, t) of x viewed as [B·H·T, hd]; the tables are [T, hd] shared by every batch row, or
 * [B, T, hd] (positions per row) when s[2] is 1. s[0] = T and s[1] = H are whole numbers held as floats.
 */
FB long fb_rope_table_row(const fused_args *a, long r) {
  const long t = (long)a->s[0], h = (long)a->s[1];
  return (a->s[2] != 0.0f ? (r / (h * t)) * t : 0) + r % t;
}

FB void fb_rope(const fused_args *a, long r0, long r1) {
  const long hd = a->cols, half = hd / 2;
  for (long r = r0; r < r1; r++) {
    const float *x = a->p[0] + r * hd;
    const float *c = a->p[1] + fb_rope_table_row(a, r) * hd, *s = a->p[2] + fb_rope_table_row(a, r) * hd;
    float *y = a->p[3] + r * hd;
    for (long j = 0; j < half; j++) y[j] = x[j] * c[j] - x[j + half] * s[j];
    for (long j = half; j < hd; j++) y[j] = x[j] * c[j] + x[j - half] * s[j];
  }
}

/* The transpose: dx_j = dy_j·cos_j + dy_{j+h}·sin_{j+h} below the half, dy_j·cos_j − dy_{j−h}·sin_{j−h} above. */
FB void fb_rope_grad(const fused_args *a, long r0, long r1) {
  const long hd = a->cols, half = hd / 2;
  for (long r = r0; r < r1; r++) {
    const float *dy = a->p[0] + r * hd;
    const float *c = a->p[1] + fb_rope_table_row(a, r) * hd, *s = a->p[2] + fb_rope_table_row(a, r) * hd;
    float *dx = a->p[3] + r * hd;
    for (long j = 0; j < half; j++) dx[j] = dy[j] * c[j] + dy[j + half] * s[j + half];
    for (long j = half; j < hd; j++) dx[j] = dy[j] * c[j] - dy[j - half] * s[j - half];
  }
}

/* The table of one ISA; `T` is the target attribute (empty for the generic build). */
#define FUSED_DEFINE_ISA(NAME, T)                                                                      \
  T static void NAME##_ce(const fused_args *a, long b, long e) { fb_cross_entropy(a, b, e); }           \
  T static void NAME##_ce_grad(const fused_args *a, long b, long e) { fb_cross_entropy_grad(a, b, e); } \
  T static void NAME##_gelu(const fused_args *a, long b, long e) { fb_gelu(a, b, e); }                  \
  T static void NAME##_gelu_grad(const fused_args *a, long b, long e) { fb_gelu_grad(a, b, e); }        \
  T static void NAME##_swiglu(const fused_args *a, long b, long e) { fb_swiglu(a, b, e); }              \
  T static void NAME##_swiglu_grad(const fused_args *a, long b, long e) { fb_swiglu_grad(a, b, e); }    \
  T static void NAME##_rms(const fused_args *a, long b, long e) { fb_rms_norm(a, b, e); }               \
  T static void NAME##_rms_grad(const fused_args *a, long b, long e) { fb_rms_norm_grad(a, b, e); }     \
  T static void NAME##_ln(const fused_args *a, long b, long e) { fb_layer_norm(a, b, e); }              \
  T static void NAME##_ln_grad(const fused_args *a, long b, long e) { fb_layer_norm_grad(a, b, e); }    \
  T static void NAME##_adamw(const fused_args *a, long b, long e) { fb_adamw(a, b, e); }                \
  T static void NAME##_softmax(const fused_args *a, long b, long e) { fb_softmax(a, b, e); }            \
  T static void NAME##_softmax_grad(const fused_args *a, long b, long e) { fb_softmax_grad(a, b, e); }  \
  T static void NAME##_rope(const fused_args *a, long b, long e) { fb_rope(a, b, e); }                  \
  T static void NAME##_rope_grad(const fused_args *a, long b, long e) { fb_rope_grad(a, b, e); }        \
  T static float NAME##_dot(const float *a, const float *b, long n) { return fb_row_dot(a, b, n); }     \
  static const fused_isa NAME##_table = {#NAME,                                                        \
                                         {NAME##_ce, NAME##_ce_grad, NAME##_gelu, NAME##_gelu_grad,     \
                                          NAME##_swiglu, NAME##_swiglu_grad, NAME##_rms,                \
                                          NAME##_rms_grad, NAME##_ln, NAME##_ln_grad, NAME##_adamw,     \
                                          NAME##_softmax, NAME##_softmax_grad, NAME##_rope, NAME##_rope_grad}, \
                                         NAME##_dot};

#endif
