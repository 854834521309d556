/*
 * tunelab's packed single-precision GEMM (GotoBLAS/BLIS-style blocking, written for tunelab).
 *
 * C[b] = op(A[b % batchA]) · op(B[b % batchB]) for b < batch, every matrix row-major and contiguous;
 * op() is an optional transpose, handled while packing (no transposed copy is ever materialised).
 */
#ifndef TUNELAB_GEMM_H
#define TUNELAB_GEMM_H

#include <stddef.h>

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
} gemm_isa;

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

typedef struct {
  const float *a, *b;
  float *c;
  int batch, batch_a, batch_b;
  int m, n, k;
  int trans_a, trans_b;
} gemm_problem;

/* Runs a whole problem on the thread pool with `isa`; returns 0, or -1 when a buffer could not be allocated. */
int gemm_run(const gemm_isa *isa, const gemm_problem *p);

#endif
