/* The fused kernels' bodies compiled for AVX2 + FMA and for AVX-512 (chosen at run time, fused_set_isa). */
#include "fused.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include "fused_body.h"

FUSED_DEFINE_ISA(avx2, __attribute__((target("avx2,fma"))))
FUSED_DEFINE_ISA(avx512, __attribute__((target("avx512f,fma"))))

const fused_isa *fused_isa_avx2(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? &avx2_table : NULL;
}
const fused_isa *fused_isa_avx512(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma") ? &avx512_table : NULL;
}
#else
const fused_isa *fused_isa_avx2(void) { return NULL; }
const fused_isa *fused_isa_avx512(void) { return NULL; }
#endif
