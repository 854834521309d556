/*
 * Persistent thread pool. Workers spin briefly after a job (a train step issues products back to back),
 * then sleep on a condition variable, so an idle process costs no CPU. Tasks are handed out through an
 * atomic counter; which thread runs a task never changes what it computes, only where.
 */
#include "pool.h"
#include "gemm.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

#define POOL_MAX_THREADS 256
/* About 20-60 µs of pause instructions: covers the gap between products of one step, not idle time. */
#define POOL_SPINS 2000

static int nthreads = 1;
static int nworkers = 0;
static pthread_t workers[POOL_MAX_THREADS];
static float *buf_a[POOL_MAX_THREADS];
static float *buf_b[POOL_MAX_THREADS];

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake_cv = PTHREAD_COND_INITIALIZER;
static pthread_cond_t done_cv = PTHREAD_COND_INITIALIZER;
/* One caller at a time (several Node worker_threads may load the addon). */
static pthread_mutex_t run_mu = PTHREAD_MUTEX_INITIALIZER;

static atomic_uint generation;
static atomic_int stopping;
static atomic_int next_task;
static atomic_int pending;
static int sleepers; /* guarded by mu */
static unsigned start_generation; /* written under run_mu before pthread_create */
static pool_task_fn job_fn;
static void *job_ctx;
static int job_ntasks;

static void run_tasks(int thread) {
  int t;
  while ((t = atomic_fetch_add_explicit(&next_task, 1, memory_order_relaxed)) < job_ntasks) job_fn(job_ctx, t, thread);
}

static void *worker_main(void *arg) {
  int id = (int)(intptr_t)arg;
  /* The generation when the pool started, not when this thread got scheduled: a job may already be posted. */
  unsigned seen = start_generation;
  for (;;) {
    unsigned g = atomic_load_explicit(&generation, memory_order_acquire);
    for (int s = 0; g == seen && s < POOL_SPINS; s++) {
      cpu_relax();
      g = atomic_load_explicit(&generation, memory_order_acquire);
    }
    if (g == seen) {
      pthread_mutex_lock(&mu);
      sleepers++;
      while ((g = atomic_load(&generation)) == seen) pthread_cond_wait(&wake_cv, &mu);
      sleepers--;
      pthread_mutex_unlock(&mu);
    }
    seen = g;
    if (atomic_load(&stopping)) return NULL;
    run_tasks(id);
    if (atomic_fetch_sub_explicit(&pending, 1, memory_order_acq_rel) == 1) {
      pthread_mutex_lock(&mu);
      pthread_cond_signal(&done_cv);
      pthread_mutex_unlock(&mu);
    }
  }
}

static void wake_all(void) {
  pthread_mutex_lock(&mu);
  if (sleepers > 0) pthread_cond_broadcast(&wake_cv);
  pthread_mutex_unlock(&mu);
}

static void stop_workers(void) {
  if (nworkers == 0) return;
  atomic_store(&stopping, 1);
  atomic_fetch_add_explicit(&generation, 1, memory_order_release);
  pthread_mutex_lock(&mu);
  pthread_cond_broadcast(&wake_cv);
  pthread_mutex_unlock(&mu);
  for (int i = 0; i < nworkers; i++) pthread_join(workers[i], NULL);
  nworkers = 0;
  atomic_store(&stopping, 0);
}

static int ensure_buffers(int threads) {
  for (int i = 0; i < threads; i++) {
    if (!buf_a[i]) buf_a[i] = aligned_alloc(64, sizeof(float) * GEMM_MAX_MC * GEMM_MAX_KC);
    if (!buf_b[i]) buf_b[i] = aligned_alloc(64, sizeof(float) * GEMM_MAX_KC * GEMM_MAX_NC);
    if (!buf_a[i] || !buf_b[i]) return -1;
  }
  return 0;
}

int pool_set_threads(int threads) {
  if (threads < 1) threads = 1;
  if (threads > POOL_MAX_THREADS) threads = POOL_MAX_THREADS;
  pthread_mutex_lock(&run_mu);
  int rc = 0;
  if (ensure_buffers(1) != 0) rc = -1;
  if (rc == 0 && threads != nthreads) {
    stop_workers();
    nthreads = 1;
    if (ensure_buffers(threads) != 0) {
      rc = -1;
    } else {
      start_generation = atomic_load(&generation);
      for (int i = 1; i < threads; i++) {
        if (pthread_create(&workers[nworkers], NULL, worker_main, (void *)(intptr_t)i) != 0) { rc = -1; break; }
        nworkers++;
      }
      nthreads = 1 + nworkers;
    }
  }
  pthread_mutex_unlock(&run_mu);
  return rc;
}

int pool_threads(void) { return nthreads; }
float *pool_buffer_a(int thread) { return buf_a[thread]; }
float *pool_buffer_b(int thread) { return buf_b[thread]; }

void pool_run(pool_task_fn fn, void *ctx, int ntasks, int serial) {
  pthread_mutex_lock(&run_mu);
  if (serial || nworkers == 0 || ntasks <= 1) {
    for (int t = 0; t < ntasks; t++) fn(ctx, t, 0);
    pthread_mutex_unlock(&run_mu);
    return;
  }
  job_fn = fn;
  job_ctx = ctx;
  job_ntasks = ntasks;
  atomic_store_explicit(&next_task, 0, memory_order_relaxed);
  atomic_store_explicit(&pending, nworkers, memory_order_relaxed);
  atomic_fetch_add_explicit(&generation, 1, memory_order_release);
  wake_all();
  run_tasks(0);
  for (int s = 0; atomic_load_explicit(&pending, memory_order_acquire) > 0 && s < POOL_SPINS * 50; s++) cpu_relax();
  if (atomic_load_explicit(&pending, memory_order_acquire) > 0) {
    pthread_mutex_lock(&mu);
    while (atomic_load(&pending) > 0) pthread_cond_wait(&done_cv, &mu);
    pthread_mutex_unlock(&mu);
  }
  pthread_mutex_unlock(&run_mu);
}
