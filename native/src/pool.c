/*
 * Persistent thread pool. Workers spin briefly after a job (a train step issues products back to back),
 * then sleep on a condition variable, so an idle process costs no CPU. Tasks are handed out through an
 * atomic counter; which thread runs a task never changes what it computes, only where.
 */
#include "pool.h"
#include "gemm.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

#define POOL_MAX_THREADS 256
/* How long a worker spins after a job before it sleeps: a train step issues a product about every 0.5 ms
   (136 in a 100 ms llama-ref step), so most gaps are covered, and an idle process sleeps at once.
   50 µs and 500 µs measured the same (BENCHMARKS.md): the caller no longer waits for a worker to wake. */
#define POOL_SPIN_NS 200000L

static long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static int nthreads = 1;
static int nworkers = 0;
static pthread_t workers[POOL_MAX_THREADS];
static float *buf_a[POOL_MAX_THREADS];
static float *buf_b[POOL_MAX_THREADS];

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake_cv = PTHREAD_COND_INITIALIZER;
/* One caller at a time (several Node worker_threads may load the addon). */
static pthread_mutex_t run_mu = PTHREAD_MUTEX_INITIALIZER;

/*
 * A job lives in slot[generation & 1]; `state` packs (generation << 32 | next task). A thread claims a task
 * with a CAS on `state`, so a worker that wakes late (after the job is done, or during the next one) claims
 * nothing of a job it did not see: the generation in the CAS no longer matches. The caller waits for the
 * tasks to be *done*, not for every worker to wake: on a loaded 2-core machine a sleeping worker can take a
 * scheduler tick to run, and the caller simply does its share of the tasks meanwhile.
 * A slot is rewritten only two generations later, after its job completed, so a successful claim always
 * reads its own job's function and context.
 */
typedef struct {
  pool_task_fn fn;
  void *ctx;
  atomic_int ntasks;
  atomic_int done;
} pool_job;

static pool_job slots[2];
static _Atomic uint64_t state;
static atomic_int stopping;
static int sleepers; /* guarded by mu */
static uint32_t start_generation; /* written under run_mu before pthread_create */

static uint32_t generation_of(uint64_t s) { return (uint32_t)(s >> 32); }

/* Claims and runs tasks of job `gen` until none is left or a newer job replaced it. */
static void run_tasks(uint32_t gen, int thread) {
  pool_job *job = &slots[gen & 1];
  uint64_t s = atomic_load_explicit(&state, memory_order_acquire);
  for (;;) {
    if (generation_of(s) != gen || (int)(uint32_t)s >= atomic_load_explicit(&job->ntasks, memory_order_relaxed)) return;
    if (!atomic_compare_exchange_weak_explicit(&state, &s, s + 1, memory_order_acq_rel, memory_order_acquire)) continue;
    job->fn(job->ctx, (int)(uint32_t)s, thread);
    atomic_fetch_add_explicit(&job->done, 1, memory_order_release);
    s = atomic_load_explicit(&state, memory_order_acquire);
  }
}

static void *worker_main(void *arg) {
  int id = (int)(intptr_t)arg;
  /* The generation when the pool started, not when this thread got scheduled: a job may already be posted. */
  uint32_t seen = start_generation;
  for (;;) {
    uint32_t g = generation_of(atomic_load_explicit(&state, memory_order_acquire));
    long until = now_ns() + POOL_SPIN_NS;
    for (int s = 1; g == seen; s++) {
      cpu_relax();
      g = generation_of(atomic_load_explicit(&state, memory_order_acquire));
      if (s % 64 == 0 && now_ns() > until) break;
    }
    if (g == seen) {
      pthread_mutex_lock(&mu);
      sleepers++;
      while ((g = generation_of(atomic_load(&state))) == seen) pthread_cond_wait(&wake_cv, &mu);
      sleepers--;
      pthread_mutex_unlock(&mu);
    }
    seen = g;
    if (atomic_load(&stopping)) return NULL;
    run_tasks(g, id);
  }
}

/* Publishes a new generation with no tasks (stop, start) or the job already written to its slot. */
static uint32_t publish(void) {
  uint32_t gen = generation_of(atomic_load(&state)) + 1;
  atomic_store(&state, (uint64_t)gen << 32);
  pthread_mutex_lock(&mu);
  if (sleepers > 0) pthread_cond_broadcast(&wake_cv);
  pthread_mutex_unlock(&mu);
  return gen;
}

static void stop_workers(void) {
  if (nworkers == 0) return;
  atomic_store(&stopping, 1);
  atomic_store(&slots[(generation_of(atomic_load(&state)) + 1) & 1].ntasks, 0);
  publish();
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
      start_generation = generation_of(atomic_load(&state));
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
  pool_job *job = &slots[(generation_of(atomic_load(&state)) + 1) & 1];
  job->fn = fn;
  job->ctx = ctx;
  atomic_store(&job->done, 0);
  atomic_store(&job->ntasks, ntasks);
  uint32_t gen = publish();
  run_tasks(gen, 0);
  /* Only tasks a worker already claimed are left: they are running, so wait by spinning, yielding the
     core now and then in case that worker was preempted. */
  for (int s = 1; atomic_load_explicit(&job->done, memory_order_acquire) < ntasks; s++) {
    cpu_relax();
    if (s % 256 == 0) sched_yield();
  }
  pthread_mutex_unlock(&run_mu);
}
