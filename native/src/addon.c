/*
 * N-API surface of tunelab's native engine (plain node_api.h). Every call is synchronous and computes in
 * place on the memory it is given: tunelab passes the tfjs wasm heap (an ArrayBuffer) and byte offsets.
 *
 *   gemm(buffer, aOffset, bOffset, cOffset, batch, batchA, batchB, m, n, k, transposeA, transposeB)
 *   setThreads(n) → n        threads() → n
 *   setIsa(name) → name      isa() → name        isas() → names this CPU supports, best first
 *   the fused kernels of fused_napi.c (crossEntropy, gelu, rmsNorm, adamw, … and their gradients)
 */
#include <node_api.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "fused.h"
#include "gemm.h"
#include "pool.h"

int fused_register(napi_env env, napi_value exports);

static const gemm_isa *current_isa;

#define CHECK(call)                                                         \
  do {                                                                      \
    if ((call) != napi_ok) {                                                \
      napi_throw_error(env, NULL, "tunelab_native: N-API call failed: " #call); \
      return NULL;                                                          \
    }                                                                       \
  } while (0)

static int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv, const char *fn) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) {
    char msg[128];
    snprintf(msg, sizeof msg, "tunelab_native.%s: expected %zu arguments, got %zu", fn, want, argc);
    napi_throw_type_error(env, NULL, msg);
    return 0;
  }
  return 1;
}

/* A non-negative integer argument, or a thrown TypeError naming it. */
static int get_count(napi_env env, napi_value v, const char *fn, const char *name, double max, double *out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0) || d > max || floor(d) != d) {
    char msg[160];
    snprintf(msg, sizeof msg, "tunelab_native.%s: %s must be an integer in [0, %.0f]", fn, name, max);
    napi_throw_type_error(env, NULL, msg);
    return 0;
  }
  *out = d;
  return 1;
}

static napi_value make_string(napi_env env, const char *s) {
  napi_value v;
  napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v);
  return v;
}

static napi_value js_gemm(napi_env env, napi_callback_info info) {
  static const char *names[] = {"aOffset", "bOffset", "cOffset", "batch", "batchA", "batchB",
                                "m", "n", "k", "transposeA", "transposeB"};
  napi_value argv[12];
  if (!get_args(env, info, 12, argv, "gemm")) return NULL;
  void *data;
  size_t length;
  bool is_ab = false;
  napi_is_arraybuffer(env, argv[0], &is_ab);
  if (!is_ab) {
    napi_throw_type_error(env, NULL, "tunelab_native.gemm: buffer must be an ArrayBuffer (the wasm heap)");
    return NULL;
  }
  CHECK(napi_get_arraybuffer_info(env, argv[0], &data, &length));
  double v[11];
  for (int i = 0; i < 11; i++) {
    double max = i < 3 ? 9007199254740991.0 : i < 9 ? 2147483647.0 : 1.0;
    if (!get_count(env, argv[i + 1], "gemm", names[i], max, &v[i])) return NULL;
  }
  gemm_problem p = {0};
  p.batch = (int)v[3]; p.batch_a = (int)v[4]; p.batch_b = (int)v[5];
  p.m = (int)v[6]; p.n = (int)v[7]; p.k = (int)v[8];
  p.trans_a = (int)v[9]; p.trans_b = (int)v[10];
  if (p.batch_a < 1 || p.batch_b < 1) {
    napi_throw_range_error(env, NULL, "tunelab_native.gemm: batchA and batchB must be at least 1");
    return NULL;
  }
  /* Each operand must lie inside the buffer, on a float boundary. */
  double extents[3] = {(double)p.batch_a * p.m * p.k, (double)p.batch_b * p.k * p.n, (double)p.batch * p.m * p.n};
  const char *operand[3] = {"a", "b", "c"};
  for (int i = 0; i < 3; i++) {
    if (fmod(v[i], 4.0) != 0 || v[i] + 4.0 * extents[i] > (double)length) {
      char msg[200];
      snprintf(msg, sizeof msg, "tunelab_native.gemm: %s (%.0f floats at byte %.0f) is not 4-byte aligned inside the %zu-byte buffer",
               operand[i], extents[i], v[i], length);
      napi_throw_range_error(env, NULL, msg);
      return NULL;
    }
  }
  p.a = (const float *)((char *)data + (size_t)v[0]);
  p.b = (const float *)((char *)data + (size_t)v[1]);
  p.c = (float *)((char *)data + (size_t)v[2]);
  if (gemm_run(current_isa, &p) != 0) {
    napi_throw_error(env, NULL, "tunelab_native.gemm: could not allocate packing buffers");
    return NULL;
  }
  return NULL;
}

static napi_value js_set_threads(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  double n;
  if (!get_args(env, info, 1, argv, "setThreads") || !get_count(env, argv[0], "setThreads", "threads", 256, &n)) return NULL;
  if (n < 1) {
    napi_throw_range_error(env, NULL, "tunelab_native.setThreads: threads must be at least 1");
    return NULL;
  }
  if (pool_set_threads((int)n) != 0) {
    napi_throw_error(env, NULL, "tunelab_native.setThreads: could not start the worker threads");
    return NULL;
  }
  napi_value out;
  CHECK(napi_create_int32(env, pool_threads(), &out));
  return out;
}

static napi_value js_threads(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  CHECK(napi_create_int32(env, pool_threads(), &out));
  return out;
}

static napi_value js_set_isa(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv, "setIsa")) return NULL;
  char name[32];
  size_t len;
  if (napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "tunelab_native.setIsa: name must be a string");
    return NULL;
  }
  const gemm_isa *isa = gemm_isa_by_name(name);
  if (!isa) {
    char msg[160];
    snprintf(msg, sizeof msg, "tunelab_native.setIsa: \"%s\" is not supported on this CPU (expected avx512, avx2 or generic)", name);
    napi_throw_error(env, NULL, msg);
    return NULL;
  }
  current_isa = isa;
  fused_set_isa(isa->name); /* the fused kernels exist for every ISA the GEMM has */
  return make_string(env, isa->name);
}

static napi_value js_isa(napi_env env, napi_callback_info info) {
  (void)info;
  return make_string(env, current_isa->name);
}

static napi_value js_isas(napi_env env, napi_callback_info info) {
  (void)info;
  const gemm_isa *all[3] = {gemm_isa_avx512(), gemm_isa_avx2(), &gemm_isa_generic};
  napi_value arr;
  CHECK(napi_create_array(env, &arr));
  uint32_t n = 0;
  for (int i = 0; i < 3; i++)
    if (all[i]) CHECK(napi_set_element(env, arr, n++, make_string(env, all[i]->name)));
  return arr;
}

static napi_value init(napi_env env, napi_value exports) {
  if (!current_isa) {
    current_isa = gemm_isa_best();
    fused_set_isa(current_isa->name);
  }
  napi_property_descriptor props[] = {
      {"gemm", NULL, js_gemm, NULL, NULL, NULL, napi_default, NULL},
      {"setThreads", NULL, js_set_threads, NULL, NULL, NULL, napi_default, NULL},
      {"threads", NULL, js_threads, NULL, NULL, NULL, napi_default, NULL},
      {"setIsa", NULL, js_set_isa, NULL, NULL, NULL, napi_default, NULL},
      {"isa", NULL, js_isa, NULL, NULL, NULL, napi_default, NULL},
      {"isas", NULL, js_isas, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  if (fused_register(env, exports) != 0) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
