/*
 * Fused kernels: the portable build of the bodies, ISA selection, and the driver that splits a call into
 * fixed chunks on the thread pool (fused.h).
 */
#include "fused.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fused_body.h"
#include "pool.h"

FUSED_DEFINE_ISA(generic, )
const fused_isa fused_isa_generic = generic_table;

static const fused_isa *current = &fused_isa_generic;

int fused_by_rows(fused_op op) {
  switch (op) {
    case FUSED_GELU: case FUSED_GELU_GRAD: case FUSED_SWIGLU: case FUSED_SWIGLU_GRAD: case FUSED_ADAMW:
      return 0;
    default:
      return 1;
  }
}

int fused_set_isa(const char *name) {
  const fused_isa *isa = strcmp(name, "generic") == 0 ? &fused_isa_generic
                         : strcmp(name, "avx2") == 0  ? fused_isa_avx2()
                         : strcmp(name, "avx512") == 0 ? fused_isa_avx512()
                                                       : NULL;
  if (!isa) return -1;
  current = isa;
  return 0;
}

/* Elements per task: big enough that a task outweighs its hand-off (~1 µs), small enough to balance. */
#define FUSED_CHUNK 16384L
/* Calls below this many elements run on the caller alone: waking a worker costs more. */
#define FUSED_PARALLEL_MIN 32768L

typedef struct {
  fused_body_fn body;
  const fused_args *args;
  long total, step;
} fused_job;

static void fused_task(void *ctx, int task, int thread) {
  (void)thread;
  const fused_job *job = ctx;
  const long begin = (long)task * job->step;
  const long end = begin + job->step < job->total ? begin + job->step : job->total;
  job->body(job->args, begin, end);
}

void fused_run(fused_op op, const fused_args *a) {
  const int rows = fused_by_rows(op);
  const long total = a->rows;
  const long width = rows ? (a->cols > 0 ? a->cols : 1) : 1;
  if (total <= 0) return;
  long step = FUSED_CHUNK / width;
  if (step < 1) step = 1;
  fused_job job = {current->body[op], a, total, step};
  const long ntasks = (total + step - 1) / step;
  const int serial = pool_threads() == 1 || total * width < FUSED_PARALLEL_MIN || ntasks == 1;
  pool_run(fused_task, &job, (int)ntasks, serial);
}

typedef struct {
  const float **ptr;
  long *len;
  double *partial;
  float (*dot)(const float *, const float *, long);
} squares_job;

static void squares_task(void *ctx, int task, int thread) {
  (void)thread;
  const squares_job *job = ctx;
  job->partial[task] = job->dot(job->ptr[task], job->ptr[task], job->len[task]);
}

double fused_sum_squares(const float *const *arrays, const long *counts, int n) {
  long chunks = 0;
  for (int i = 0; i < n; i++) chunks += (counts[i] + FUSED_CHUNK - 1) / FUSED_CHUNK;
  if (chunks == 0) return 0.0;
  squares_job job = {malloc(sizeof(float *) * chunks), malloc(sizeof(long) * chunks), malloc(sizeof(double) * chunks), current->dot};
  double total = NAN;
  if (job.ptr && job.len && job.partial) {
    long c = 0, elements = 0;
    for (int i = 0; i < n; i++)
      for (long at = 0; at < counts[i]; at += FUSED_CHUNK, c++) {
        job.ptr[c] = arrays[i] + at;
        job.len[c] = counts[i] - at < FUSED_CHUNK ? counts[i] - at : FUSED_CHUNK;
        elements += job.len[c];
      }
    pool_run(squares_task, &job, (int)chunks, pool_threads() == 1 || elements < FUSED_PARALLEL_MIN);
    total = 0.0;
    for (long i = 0; i < chunks; i++) total += job.partial[i];
  }
  free(job.ptr);
  free(job.len);
  free(job.partial);
  return total;
}
