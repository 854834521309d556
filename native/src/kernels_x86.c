/*
 * x86 micro-kernels, each compiled for its own ISA with a per-function target attribute, so one build runs
 * on any x86-64 CPU and the ISA is chosen at run time (gemm_isa_best) from what this CPU and OS support.
 * Each computes a fresh MR×NR sum over its kc and then stores or adds it to C, exactly like the portable
 * kernel's order of operations per element (acc = 0; acc += a·b over k; C = or += acc).
 */
#include "gemm.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

/* ---- AVX-512F: 8×32, 16 zmm accumulators ---- */

#define Z_ROW(i)                                       \
  {                                                    \
    __m512 ai = _mm512_set1_ps(A(i));                  \
    c##i##0 = _mm512_fmadd_ps(ai, b0, c##i##0);        \
    c##i##1 = _mm512_fmadd_ps(ai, b1, c##i##1);        \
  }
#define Z_STORE(i)                                                                    \
  {                                                                                   \
    float *ci = c + (long)(i) * ldc;                                                  \
    if (accumulate) {                                                                 \
      c##i##0 = _mm512_add_ps(_mm512_loadu_ps(ci), c##i##0);                          \
      c##i##1 = _mm512_add_ps(_mm512_loadu_ps(ci + 16), c##i##1);                     \
    }                                                                                 \
    _mm512_storeu_ps(ci, c##i##0);                                                    \
    _mm512_storeu_ps(ci + 16, c##i##1);                                               \
  }

__attribute__((target("avx512f,fma")))
static void kernel_avx512(int kc, const float *a, long rsa, long csa, const float *bp, float *c, long ldc, int accumulate) {
  __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
  __m512 c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00;
  if (rsa == 1) {
    /* Packed panel or Aᵀ: the 8 values of one k are adjacent. */
#define A(i) ap[i]
    const float *ap = a;
    for (int p = 0; p < kc; p++) {
      __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16);
      Z_ROW(0) Z_ROW(1) Z_ROW(2) Z_ROW(3) Z_ROW(4) Z_ROW(5) Z_ROW(6) Z_ROW(7)
      ap += csa;
      bp += 32;
    }
#undef A
  } else {
    /* Row-major A read in place: 8 row streams. */
#define A(i) r##i[p * csa]
    const float *r0 = a, *r1 = a + rsa, *r2 = a + 2 * rsa, *r3 = a + 3 * rsa;
    const float *r4 = a + 4 * rsa, *r5 = a + 5 * rsa, *r6 = a + 6 * rsa, *r7 = a + 7 * rsa;
    for (long p = 0; p < kc; p++) {
      __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16);
      Z_ROW(0) Z_ROW(1) Z_ROW(2) Z_ROW(3) Z_ROW(4) Z_ROW(5) Z_ROW(6) Z_ROW(7)
      bp += 32;
    }
#undef A
  }
  Z_STORE(0) Z_STORE(1) Z_STORE(2) Z_STORE(3) Z_STORE(4) Z_STORE(5) Z_STORE(6) Z_STORE(7)
}

/* ---- AVX2 + FMA: 6×16, 12 ymm accumulators ---- */

#define Y_ROW(i)                                       \
  {                                                    \
    __m256 ai = _mm256_broadcast_ss(&A(i));            \
    c##i##0 = _mm256_fmadd_ps(ai, b0, c##i##0);        \
    c##i##1 = _mm256_fmadd_ps(ai, b1, c##i##1);        \
  }
#define Y_STORE(i)                                                                    \
  {                                                                                   \
    float *ci = c + (long)(i) * ldc;                                                  \
    if (accumulate) {                                                                 \
      c##i##0 = _mm256_add_ps(_mm256_loadu_ps(ci), c##i##0);                          \
      c##i##1 = _mm256_add_ps(_mm256_loadu_ps(ci + 8), c##i##1);                      \
    }                                                                                 \
    _mm256_storeu_ps(ci, c##i##0);                                                    \
    _mm256_storeu_ps(ci + 8, c##i##1);                                                \
  }

__attribute__((target("avx2,fma")))
static void kernel_avx2(int kc, const float *a, long rsa, long csa, const float *bp, float *c, long ldc, int accumulate) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  if (rsa == 1) {
#define A(i) ap[i]
    const float *ap = a;
    for (int p = 0; p < kc; p++) {
      __m256 b0 = _mm256_load_ps(bp), b1 = _mm256_load_ps(bp + 8);
      Y_ROW(0) Y_ROW(1) Y_ROW(2) Y_ROW(3) Y_ROW(4) Y_ROW(5)
      ap += csa;
      bp += 16;
    }
#undef A
  } else {
#define A(i) r##i[p * csa]
    const float *r0 = a, *r1 = a + rsa, *r2 = a + 2 * rsa, *r3 = a + 3 * rsa, *r4 = a + 4 * rsa, *r5 = a + 5 * rsa;
    for (long p = 0; p < kc; p++) {
      __m256 b0 = _mm256_load_ps(bp), b1 = _mm256_load_ps(bp + 8);
      Y_ROW(0) Y_ROW(1) Y_ROW(2) Y_ROW(3) Y_ROW(4) Y_ROW(5)
      bp += 16;
    }
#undef A
  }
  Y_STORE(0) Y_STORE(1) Y_STORE(2) Y_STORE(3) Y_STORE(4) Y_STORE(5)
}

/* ---- 8×8 transpose for packing strided operands (AVX; data movement only, so no effect on sums) ---- */

__attribute__((target("avx2")))
static void transpose8_avx(const float *src, long ls, float *dst, long ds) {
  __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + ls), r2 = _mm256_loadu_ps(src + 2 * ls);
  __m256 r3 = _mm256_loadu_ps(src + 3 * ls), r4 = _mm256_loadu_ps(src + 4 * ls), r5 = _mm256_loadu_ps(src + 5 * ls);
  __m256 r6 = _mm256_loadu_ps(src + 6 * ls), r7 = _mm256_loadu_ps(src + 7 * ls);
  /* Interleave pairs of lines, then quads, then swap 128-bit halves: out_p = (line0[p], …, line7[p]). */
  __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
  __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
  __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
  __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0)), s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0)), s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0)), s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
  __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0)), s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  _mm256_storeu_ps(dst, _mm256_permute2f128_ps(s0, s4, 0x20));
  _mm256_storeu_ps(dst + ds, _mm256_permute2f128_ps(s1, s5, 0x20));
  _mm256_storeu_ps(dst + 2 * ds, _mm256_permute2f128_ps(s2, s6, 0x20));
  _mm256_storeu_ps(dst + 3 * ds, _mm256_permute2f128_ps(s3, s7, 0x20));
  _mm256_storeu_ps(dst + 4 * ds, _mm256_permute2f128_ps(s0, s4, 0x31));
  _mm256_storeu_ps(dst + 5 * ds, _mm256_permute2f128_ps(s1, s5, 0x31));
  _mm256_storeu_ps(dst + 6 * ds, _mm256_permute2f128_ps(s2, s6, 0x31));
  _mm256_storeu_ps(dst + 7 * ds, _mm256_permute2f128_ps(s3, s7, 0x31));
}

__attribute__((target("avx512f,fma")))
static void rows_avx512(const gemm_problem *p, int batch, int j0, int j1) { gemm_rows_body(p, batch, j0, j1); }
__attribute__((target("avx2,fma")))
static void rows_avx2(const gemm_problem *p, int batch, int j0, int j1) { gemm_rows_body(p, batch, j0, j1); }

static const gemm_isa isa_avx512 = {"avx512", 8, 32, 192, 256, 1536, kernel_avx512, transpose8_avx, rows_avx512};
static const gemm_isa isa_avx2 = {"avx2", 6, 16, 144, 256, 1536, kernel_avx2, transpose8_avx, rows_avx2};

/* __builtin_cpu_supports also checks that the OS saves the wider registers (XCR0). */
const gemm_isa *gemm_isa_avx512(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma") ? &isa_avx512 : NULL;
}
const gemm_isa *gemm_isa_avx2(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? &isa_avx2 : NULL;
}

#else
const gemm_isa *gemm_isa_avx512(void) { return NULL; }
const gemm_isa *gemm_isa_avx2(void) { return NULL; }
#endif
