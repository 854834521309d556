/*
 * tunelab's fused kernels: the parts of a train step around the products, one pass over memory each
 * (cross-entropy, GELU, SwiGLU, RMSNorm, LayerNorm with their gradients, the AdamW update).
 *
 * Every kernel is a body over a range of elements or rows (fused_body.h), compiled once per ISA like the
 * GEMM's micro-kernels and run in fixed chunks on the thread pool. Each element or row is computed by one
 * thread in one order, so results never depend on the thread count. Reductions along a row use 16 partial
 * sums in a fixed order, so every ISA also computes the same sums (up to FMA contraction).
 */
#ifndef TUNELAB_FUSED_H
#define TUNELAB_FUSED_H

/* Operands of one call: float/int32 pointers into the caller's memory, sizes, and float options. */
typedef struct {
  float *p[8];
  long rows, cols; /* elementwise ops: rows = element count, cols = 1 */
  float s[8];
} fused_args;

/* A body: elements or rows [begin, end) of one call. */
typedef void (*fused_body_fn)(const fused_args *a, long begin, long end);

typedef enum {
  FUSED_CROSS_ENTROPY,      /* p: logits[R,V], targets(int32)[R], loss[R] */
  FUSED_CROSS_ENTROPY_GRAD, /* p: logits, targets, dy[R], dlogits[R,V] */
  FUSED_GELU,               /* p: x, y */
  FUSED_GELU_GRAD,          /* p: x, dy, dx */
  FUSED_SWIGLU,             /* p: gate, up, y */
  FUSED_SWIGLU_GRAD,        /* p: gate, up, dy, dgate, dup */
  FUSED_RMS_NORM,           /* p: x[R,C], w[C], y; s: eps */
  FUSED_RMS_NORM_GRAD,      /* p: x, w, dy, dx, dy·x̂ (for dw); s: eps */
  FUSED_LAYER_NORM,         /* p: x, w, b, y; s: eps */
  FUSED_LAYER_NORM_GRAD,    /* p: x, w, dy, dx, dy·x̂; s: eps */
  FUSED_ADAMW,              /* p: param, grad, m, v, param', m', v'; s: lr, β1, β2, ε, λ, 1−β1ᵗ, 1−β2ᵗ, g scale */
  FUSED_SOFTMAX,            /* p: x[R,C], y; s: scale — y = softmax(scale·x) per row */
  FUSED_SOFTMAX_GRAD,       /* p: y, dy, dx; s: scale — dx = scale·y·(dy − Σ dy·y) */
  FUSED_ROPE,               /* p: x[R,hd], cos, sin, y; s: T, H, batched tables (0/1) — rotate-half RoPE */
  FUSED_ROPE_GRAD,          /* p: dy, cos, sin, dx; s: as FUSED_ROPE */
  FUSED_COUNT
} fused_op;

/* Whether an op works on rows (else on elements). */
int fused_by_rows(fused_op op);

/* One ISA's bodies, indexed by fused_op. */
typedef struct {
  const char *name;
  fused_body_fn body[FUSED_COUNT];
  /* Σ a·b over n floats with the row reductions' fixed order. */
  float (*dot)(const float *a, const float *b, long n);
} fused_isa;

extern const fused_isa fused_isa_generic;
const fused_isa *fused_isa_avx2(void);   /* NULL off x86 */
const fused_isa *fused_isa_avx512(void); /* NULL off x86 */

/* Selects the bodies by ISA name ("avx512", "avx2", "generic"); returns 0, or -1 when unknown here. */
int fused_set_isa(const char *name);

/* Runs one op over the whole call on the thread pool. */
void fused_run(fused_op op, const fused_args *a);

/*
 * Σ x² over every element of n arrays (the squared global norm of a set of gradients), in double: fixed
 * chunks of each array are summed in float on the pool, then added in order. Returns NaN when a buffer
 * cannot be allocated.
 */
double fused_sum_squares(const float *const *arrays, const long *counts, int n);

#endif
