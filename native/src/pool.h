/* A persistent thread pool: the caller's thread plus (threads - 1) workers that sleep between jobs. */
#ifndef TUNELAB_POOL_H
#define TUNELAB_POOL_H

/* Runs fn(ctx, task, thread) for task in [0, ntasks) across the pool (on the caller's thread alone when
   `serial`); thread < pool_threads(). Blocks until done; one caller at a time. */
typedef void (*pool_task_fn)(void *ctx, int task, int thread);
void pool_run(pool_task_fn fn, void *ctx, int ntasks, int serial);

/* Resizes the pool (1 = the caller only); returns 0 or -1 when a thread could not start. */
int pool_set_threads(int threads);
int pool_threads(void);

/* Per-thread packing buffers (64-byte aligned), allocated with the pool. */
float *pool_buffer_a(int thread);
float *pool_buffer_b(int thread);

#endif
