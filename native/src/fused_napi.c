/*
 * N-API surface of the fused kernels: one function per op, all of the form
 *
 *   name(buffer, offset_0, …, offset_k, rows, cols, option_0, …)
 *
 * with byte offsets of the operands inside `buffer` (the wasm heap), sizes, and float options. Each
 * operand's extent follows from rows and cols; one that does not lie inside the buffer on a 4-byte boundary
 * is a RangeError naming it, before anything is computed.
 */
#include <node_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "fused.h"

/* Operand extents in elements: R·C, R, C; RoPE's tables: T·C, or B·T·C when batched (options T, H, batched). */
typedef enum { EXT_RC, EXT_R, EXT_C, EXT_ROPE_TABLE } extent;

typedef struct {
  const char *js_name;
  fused_op op;
  int noperands;
  const char *operand[8];
  extent ext[8];
  int noptions;
  const char *option[8];
} fused_desc;

static const fused_desc descs[] = {
    {"crossEntropy", FUSED_CROSS_ENTROPY, 3, {"logits", "targets", "loss"}, {EXT_RC, EXT_R, EXT_R}, 0, {0}},
    {"crossEntropyGrad", FUSED_CROSS_ENTROPY_GRAD, 4, {"logits", "targets", "dy", "dlogits"}, {EXT_RC, EXT_R, EXT_R, EXT_RC}, 0, {0}},
    {"gelu", FUSED_GELU, 2, {"x", "y"}, {EXT_R, EXT_R}, 0, {0}},
    {"geluGrad", FUSED_GELU_GRAD, 3, {"x", "dy", "dx"}, {EXT_R, EXT_R, EXT_R}, 0, {0}},
    {"swiglu", FUSED_SWIGLU, 3, {"gate", "up", "y"}, {EXT_R, EXT_R, EXT_R}, 0, {0}},
    {"swigluGrad", FUSED_SWIGLU_GRAD, 5, {"gate", "up", "dy", "dgate", "dup"}, {EXT_R, EXT_R, EXT_R, EXT_R, EXT_R}, 0, {0}},
    {"rmsNorm", FUSED_RMS_NORM, 3, {"x", "weight", "y"}, {EXT_RC, EXT_C, EXT_RC}, 1, {"eps"}},
    {"rmsNormGrad", FUSED_RMS_NORM_GRAD, 5, {"x", "weight", "dy", "dx", "dyXhat"}, {EXT_RC, EXT_C, EXT_RC, EXT_RC, EXT_RC}, 1, {"eps"}},
    {"layerNorm", FUSED_LAYER_NORM, 4, {"x", "weight", "bias", "y"}, {EXT_RC, EXT_C, EXT_C, EXT_RC}, 1, {"eps"}},
    {"layerNormGrad", FUSED_LAYER_NORM_GRAD, 5, {"x", "weight", "dy", "dx", "dyXhat"}, {EXT_RC, EXT_C, EXT_RC, EXT_RC, EXT_RC}, 1, {"eps"}},
    {"adamw", FUSED_ADAMW, 7, {"param", "grad", "m", "v", "paramOut", "mOut", "vOut"}, {EXT_R, EXT_R, EXT_R, EXT_R, EXT_R, EXT_R, EXT_R},
     8, {"lr", "beta1", "beta2", "eps", "weightDecay", "biasCorrection1", "biasCorrection2", "gradScale"}},
    {"softmax", FUSED_SOFTMAX, 2, {"x", "y"}, {EXT_RC, EXT_RC}, 1, {"scale"}},
    {"softmaxGrad", FUSED_SOFTMAX_GRAD, 3, {"y", "dy", "dx"}, {EXT_RC, EXT_RC, EXT_RC}, 1, {"scale"}},
    {"rope", FUSED_ROPE, 4, {"x", "cos", "sin", "y"}, {EXT_RC, EXT_ROPE_TABLE, EXT_ROPE_TABLE, EXT_RC}, 3, {"seqLen", "heads", "batchedTables"}},
    {"ropeGrad", FUSED_ROPE_GRAD, 4, {"dy", "cos", "sin", "dx"}, {EXT_RC, EXT_ROPE_TABLE, EXT_ROPE_TABLE, EXT_RC}, 3, {"seqLen", "heads", "batchedTables"}},
};

static napi_value throw_range(napi_env env, const fused_desc *d, const char *what) {
  char msg[256];
  snprintf(msg, sizeof msg, "tunelab_native.%s: %s", d->js_name, what);
  napi_throw_range_error(env, NULL, msg);
  return NULL;
}

static napi_value js_fused(napi_env env, napi_callback_info info) {
  const fused_desc *d;
  napi_value argv[20];
  size_t argc = 20;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, (void **)&d) != napi_ok) return NULL;
  const size_t want = 1 + (size_t)d->noperands + 2 + (size_t)d->noptions;
  if (argc < want) {
    char msg[128];
    snprintf(msg, sizeof msg, "tunelab_native.%s: expected %zu arguments, got %zu", d->js_name, want, argc);
    napi_throw_type_error(env, NULL, msg);
    return NULL;
  }
  bool is_ab = false;
  void *data;
  size_t length;
  napi_is_arraybuffer(env, argv[0], &is_ab);
  if (!is_ab || napi_get_arraybuffer_info(env, argv[0], &data, &length) != napi_ok) {
    napi_throw_type_error(env, NULL, "tunelab_native: buffer must be an ArrayBuffer (the wasm heap)");
    return NULL;
  }
  double v[20];
  for (size_t i = 1; i < want; i++) {
    if (napi_get_value_double(env, argv[i], &v[i]) != napi_ok || !isfinite(v[i])) {
      char msg[160];
      snprintf(msg, sizeof msg, "argument %zu must be a finite number", i);
      return throw_range(env, d, msg);
    }
  }
  const int k = d->noperands;
  const double rows = v[1 + k], cols = v[2 + k];
  if (rows < 0 || cols < 1 || floor(rows) != rows || floor(cols) != cols || rows * cols > 4e9)
    return throw_range(env, d, "rows and cols must be integers, rows ≥ 0 and cols ≥ 1");
  fused_args a = {{0}, (long)rows, (long)cols, {0}};
  double table = 0;
  if (d->op == FUSED_ROPE || d->op == FUSED_ROPE_GRAD) {
    /* rows = B·H·T whole (b, h, t) rows and an even head size; tables T·hd, or B·T·hd when batched. */
    const double t = v[3 + k], h = v[4 + k];
    if (t < 1 || h < 1 || floor(t) != t || floor(h) != h || fmod(rows, t * h) != 0 || fmod(cols, 2) != 0 || t * h > 16777216)
      return throw_range(env, d, "rows must be a whole number of heads × seqLen rows, and the head size even");
    table = (v[5 + k] != 0 ? rows / h : t) * cols;
  }
  for (int i = 0; i < k; i++) {
    const double count = d->ext[i] == EXT_RC ? rows * cols : d->ext[i] == EXT_R ? rows : d->ext[i] == EXT_C ? cols : table;
    const double off = v[1 + i];
    if (off < 0 || fmod(off, 4.0) != 0 || off + 4.0 * count > (double)length) {
      char msg[200];
      snprintf(msg, sizeof msg, "%s (%.0f elements at byte %.0f) is not 4-byte aligned inside the %zu-byte buffer",
               d->operand[i], count, off, length);
      return throw_range(env, d, msg);
    }
    a.p[i] = (float *)((char *)data + (size_t)off);
  }
  for (int i = 0; i < d->noptions; i++) a.s[i] = (float)v[3 + k + i];
  fused_run(d->op, &a);
  return NULL;
}

/*
 * sumSquares(buffer, offsets, counts) → Σ x² over each (byte offset, float count) array in buffer, as a
 * double: the squared global norm of a set of gradients in one call.
 */
static napi_value js_sum_squares(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  size_t argc = 3;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3) {
    napi_throw_type_error(env, NULL, "tunelab_native.sumSquares: expected (buffer, offsets, counts)");
    return NULL;
  }
  bool is_ab = false;
  void *data;
  size_t length;
  uint32_t n = 0, n2 = 0;
  napi_is_arraybuffer(env, argv[0], &is_ab);
  if (!is_ab || napi_get_arraybuffer_info(env, argv[0], &data, &length) != napi_ok ||
      napi_get_array_length(env, argv[1], &n) != napi_ok || napi_get_array_length(env, argv[2], &n2) != napi_ok || n != n2) {
    napi_throw_type_error(env, NULL, "tunelab_native.sumSquares: expected an ArrayBuffer and two arrays of equal length");
    return NULL;
  }
  const float **arrays = malloc(sizeof(float *) * (n ? n : 1));
  long *counts = malloc(sizeof(long) * (n ? n : 1));
  napi_value result = NULL;
  if (!arrays || !counts) {
    napi_throw_error(env, NULL, "tunelab_native.sumSquares: out of memory");
    goto done;
  }
  for (uint32_t i = 0; i < n; i++) {
    napi_value ov, cv;
    double off, count;
    if (napi_get_element(env, argv[1], i, &ov) != napi_ok || napi_get_element(env, argv[2], i, &cv) != napi_ok ||
        napi_get_value_double(env, ov, &off) != napi_ok || napi_get_value_double(env, cv, &count) != napi_ok ||
        !(off >= 0) || !(count >= 0) || fmod(off, 4.0) != 0 || floor(count) != count || off + 4.0 * count > (double)length) {
      char msg[160];
      snprintf(msg, sizeof msg, "tunelab_native.sumSquares: array %u is not a whole float array inside the %zu-byte buffer", i, length);
      napi_throw_range_error(env, NULL, msg);
      goto done;
    }
    arrays[i] = (const float *)((const char *)data + (size_t)off);
    counts[i] = (long)count;
  }
  napi_create_double(env, fused_sum_squares(arrays, counts, (int)n), &result);
done:
  free(arrays);
  free(counts);
  return result;
}

/* Adds the fused functions to the addon's exports; returns 0 or -1. */
int fused_register(napi_env env, napi_value exports) {
  for (size_t i = 0; i < sizeof descs / sizeof descs[0]; i++) {
    napi_value fn;
    if (napi_create_function(env, descs[i].js_name, NAPI_AUTO_LENGTH, js_fused, (void *)&descs[i], &fn) != napi_ok ||
        napi_set_named_property(env, exports, descs[i].js_name, fn) != napi_ok)
      return -1;
  }
  napi_value fn;
  if (napi_create_function(env, "sumSquares", NAPI_AUTO_LENGTH, js_sum_squares, NULL, &fn) != napi_ok ||
      napi_set_named_property(env, exports, "sumSquares", fn) != napi_ok)
    return -1;
  return 0;
}
