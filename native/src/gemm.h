/*
 * tunelab's packed single-precision GEMM (GotoBLAS/BLIS-style blocking, written for tunelab).
 *
 * C[b] = op(A[b % batchA]) · op(B[b % batchB]) for b < batch, every matrix row-major and contiguous;
 * op() is an optional transpose, handled while packing (no transposed copy is ever materialised).
 */
#ifndef TUNELAB_GEMM_H
#define TUNELAB_GEMM_H

#include <stddef.h>

typedef struct {
  const float *a, *b;
  float *c;
  int batch, batch_a, batch_b;
  int m, n, k;
  int trans_a, trans_b;
} gemm_problem;

/*
 * A register-blocked micro-kernel: C[MR×NR] (row stride ldc) = or += A[MR×kc]·Bp[kc×NR]. Bp is a packed
 * panel; A element (i, p) is read at a[i*rsa + p*csa]: a packed panel is rsa = 1, csa = MR, and small
 * products read A where it lies. The sums are the same either way (same products, same order).
 */
typedef void (*gemm_kernel_fn)(int kc, const float *a, long rsa, long csa, const float *bp, float *c, long ldc, int accumulate);

typedef struct {
  const char *name; /* "avx512", "avx2", "generic" */
  int mr, nr;       /* register block */
  int mc, kc, nc;   /* cache blocks: A block mc×kc stays in L2, B panel kc×nc in L3 */
  gemm_kernel_fn kernel;
  /* Optional: dst[p*ds + l] = src[l*ls + p] for an 8×8 block (packing a strided operand); NULL: scalar. */
  void (*transpose8)(const float *src, long ls, float *dst, long ds);
  /* Columns [j0, j1) of one batch of a small-M product with B row-major (gemm_rows_body). */
  void (*rows)(const gemm_problem *p, int batch, int j0, int j1);
} gemm_isa;

/*
 * Products of at most this many rows with B stored row-major (decoding one token, Sum as ones·X) skip
 * packing: packing B would cost as much as the product. C's rows accumulate A[i,p]·B[p,:] over p.
 */
#define GEMM_ROWS_MAX_M 4
#define GEMM_ROWS_BLOCK_N 2048

/* The rows path's body, inlined into one function per ISA (each compiled for its own target). */
static inline __attribute__((always_inline)) void gemm_rows_body(const gemm_problem *pr, int batch, int j0, int j1) {
  const int m = pr->m, n = pr->n, k = pr->k;
  const float *a = pr->a + (long)(batch % pr->batch_a) * m * k;
  const float *b = pr->b + (long)(batch % pr->batch_b) * k * n;
  float *c = pr->c + (long)batch * m * n;
  const long rsa = pr->trans_a ? 1 : k, csa = pr->trans_a ? m : 1;
  for (int jb = j0; jb < j1; jb += GEMM_ROWS_BLOCK_N) {
    const int je = j1 - jb < GEMM_ROWS_BLOCK_N ? j1 : jb + GEMM_ROWS_BLOCK_N;
    for (int i = 0; i < m; i++)
      for (int j = jb; j < je; j++) c[(long)i * n + j] = 0.0f;
    for (int p = 0; p < k; p++) {
      const float *restrict bp = b + (long)p * n;
      for (int i = 0; i < m; i++) {
        const float aip = a[i * rsa + (long)p * csa];
        float *restrict ci = c + (long)i * n;
        for (int j = jb; j < je; j++) ci[j] += aip * bp[j];
      }
    }
  }
}

/* Upper bounds over every ISA, for the per-thread packing buffers. */
#define GEMM_MAX_MC 192
#define GEMM_MAX_KC 384
#define GEMM_MAX_NC 1536
#define GEMM_MAX_MR 16
#define GEMM_MAX_NR 32

extern const gemm_isa gemm_isa_generic;
/* NULL where the compiler cannot target the ISA (non-x86 builds). */
const gemm_isa *gemm_isa_avx2(void);
const gemm_isa *gemm_isa_avx512(void);

/* The best ISA this CPU and OS support, and lookup by name (NULL when unknown or unsupported here). */
const gemm_isa *gemm_isa_best(void);
const gemm_isa *gemm_isa_by_name(const char *name);


/* Runs a whole problem on the thread pool with `isa`; returns 0, or -1 when a buffer could not be allocated. */
int gemm_run(const gemm_isa *isa, const gemm_problem *p);

#endif
