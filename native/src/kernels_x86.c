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
    __m512 ai = _mm512_set1_ps(ap[i]);                 \
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
static void kernel_avx512(int kc, const float *ap, const float *bp, float *c, long ldc, int accumulate) {
  __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
  __m512 c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00;
  for (int p = 0; p < kc; p++) {
    __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16);
    Z_ROW(0) Z_ROW(1) Z_ROW(2) Z_ROW(3) Z_ROW(4) Z_ROW(5) Z_ROW(6) Z_ROW(7)
    ap += 8;
    bp += 32;
  }
  Z_STORE(0) Z_STORE(1) Z_STORE(2) Z_STORE(3) Z_STORE(4) Z_STORE(5) Z_STORE(6) Z_STORE(7)
}

/* ---- AVX2 + FMA: 6×16, 12 ymm accumulators ---- */

#define Y_ROW(i)                                       \
  {                                                    \
    __m256 ai = _mm256_broadcast_ss(ap + (i));         \
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
static void kernel_avx2(int kc, const float *ap, const float *bp, float *c, long ldc, int accumulate) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  for (int p = 0; p < kc; p++) {
    __m256 b0 = _mm256_load_ps(bp), b1 = _mm256_load_ps(bp + 8);
    Y_ROW(0) Y_ROW(1) Y_ROW(2) Y_ROW(3) Y_ROW(4) Y_ROW(5)
    ap += 6;
    bp += 16;
  }
  Y_STORE(0) Y_STORE(1) Y_STORE(2) Y_STORE(3) Y_STORE(4) Y_STORE(5)
}

static const gemm_isa isa_avx512 = {"avx512", 8, 32, 192, 256, 1536, kernel_avx512};
static const gemm_isa isa_avx2 = {"avx2", 6, 16, 144, 256, 1536, kernel_avx2};

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
