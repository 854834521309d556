/*
 * Packed GEMM driver: the loop nest of Goto & van de Geijn ("Anatomy of high-performance matrix
 * multiplication", 2008) as refined in BLIS: NC columns of B → KC rows packed into NR-wide panels,
 * MC rows of A packed into MR-tall panels, an MR×NR micro-kernel over each pair of panels.
 *
 * Determinism: every C element is the kernel's sum over k in [pc, pc+KC) in order, added to C block by
 * block in increasing pc. Tails run the same kernel on zero-padded panels. How M, N and the batch are split
 * across threads changes neither, so results are bit-identical for any thread count.
 */
#include "gemm.h"
#include "pool.h"

#include <string.h>

/* ---- packing: any strides, so the four transpose forms need no transposed copy ---- */

/* A block (rows × kc) from element (i, p) at a[i*rs + p*cs] into MR-tall panels [kc][MR], zero-padded. */
static void pack_a(int rows, int kc, const float *a, long rs, long cs, int mr, float *ap) {
  for (int i0 = 0; i0 < rows; i0 += mr) {
    int h = rows - i0 < mr ? rows - i0 : mr;
    const float *src = a + (long)i0 * rs;
    if (rs == 1) {
      /* Aᵀ stored: the MR values of one k are contiguous. */
      for (int p = 0; p < kc; p++) {
        const float *s = src + (long)p * cs;
        float *d = ap + (long)p * mr;
        int i = 0;
        for (; i < h; i++) d[i] = s[i];
        for (; i < mr; i++) d[i] = 0.0f;
      }
    } else {
      /* Row-major A: read each row contiguously, write with stride MR. */
      for (int i = 0; i < h; i++) {
        const float *s = src + (long)i * rs;
        float *d = ap + i;
        for (int p = 0; p < kc; p++) d[(long)p * mr] = s[(long)p * cs];
      }
      for (int i = h; i < mr; i++)
        for (int p = 0; p < kc; p++) ap[(long)p * mr + i] = 0.0f;
    }
    ap += (long)kc * mr;
  }
}

/* B block (kc × cols) from element (p, j) at b[p*rs + j*cs] into NR-wide panels [kc][NR], zero-padded. */
static void pack_b(int kc, int cols, const float *b, long rs, long cs, int nr, float *bp) {
  for (int j0 = 0; j0 < cols; j0 += nr) {
    int w = cols - j0 < nr ? cols - j0 : nr;
    const float *src = b + (long)j0 * cs;
    if (cs == 1) {
      for (int p = 0; p < kc; p++) {
        const float *s = src + (long)p * rs;
        float *d = bp + (long)p * nr;
        int j = 0;
        for (; j < w; j++) d[j] = s[j];
        for (; j < nr; j++) d[j] = 0.0f;
      }
    } else {
      /* Bᵀ stored: read each column of B (a row of Bᵀ) contiguously. */
      for (int j = 0; j < w; j++) {
        const float *s = src + (long)j * cs;
        float *d = bp + j;
        for (int p = 0; p < kc; p++) d[(long)p * nr] = s[(long)p * rs];
      }
      for (int j = w; j < nr; j++)
        for (int p = 0; p < kc; p++) bp[(long)p * nr + j] = 0.0f;
    }
    bp += (long)kc * nr;
  }
}

/* ---- portable micro-kernel: 4×8 on GCC/Clang generic vectors (SSE2, NEON, or scalar code) ---- */

#define G_MR 4
#define G_NR 8
typedef float v4f __attribute__((vector_size(16)));

static void kernel_generic(int kc, const float *ap, const float *bp, float *c, long ldc, int accumulate) {
  v4f acc[G_MR][2] = {{{0}}};
  for (int p = 0; p < kc; p++) {
    v4f b0, b1;
    memcpy(&b0, bp, sizeof b0);
    memcpy(&b1, bp + 4, sizeof b1);
    for (int i = 0; i < G_MR; i++) {
      v4f ai = {ap[i], ap[i], ap[i], ap[i]};
      acc[i][0] += ai * b0;
      acc[i][1] += ai * b1;
    }
    ap += G_MR;
    bp += G_NR;
  }
  for (int i = 0; i < G_MR; i++) {
    float *ci = c + (long)i * ldc;
    float out[G_NR];
    memcpy(out, acc[i], sizeof out);
    if (accumulate)
      for (int j = 0; j < G_NR; j++) ci[j] += out[j];
    else
      for (int j = 0; j < G_NR; j++) ci[j] = out[j];
  }
}

const gemm_isa gemm_isa_generic = {"generic", G_MR, G_NR, 96, 256, 1024, kernel_generic};

/* ---- the loop nest over one rectangle of C ---- */

typedef struct {
  const gemm_isa *isa;
  const gemm_problem *p;
  int m_parts, n_parts;  /* C of each batch is split into m_parts × n_parts rectangles */
  int m_step, n_step;    /* rectangle size, multiples of MR / NR */
} gemm_job;

static void gemm_rect(const gemm_isa *isa, const gemm_problem *pr, int batch, int i0, int i1, int j0, int j1, int thread) {
  const int m = pr->m, n = pr->n, k = pr->k;
  const int mr = isa->mr, nr = isa->nr;
  const float *a = pr->a + (long)(batch % pr->batch_a) * m * k;
  const float *b = pr->b + (long)(batch % pr->batch_b) * k * n;
  float *c = pr->c + (long)batch * m * n;
  /* Strides of element (i, p) of op(A) and (p, j) of op(B). */
  const long rsa = pr->trans_a ? 1 : k, csa = pr->trans_a ? m : 1;
  const long rsb = pr->trans_b ? 1 : n, csb = pr->trans_b ? k : 1;
  float *ap = pool_buffer_a(thread), *bp = pool_buffer_b(thread);
  float tile[GEMM_MAX_MR * GEMM_MAX_NR] __attribute__((aligned(64)));

  if (k == 0) {
    for (int i = i0; i < i1; i++) memset(c + (long)i * n + j0, 0, sizeof(float) * (j1 - j0));
    return;
  }
  for (int jc = j0; jc < j1; jc += isa->nc) {
    int nc = j1 - jc < isa->nc ? j1 - jc : isa->nc;
    for (int pc = 0; pc < k; pc += isa->kc) {
      int kc = k - pc < isa->kc ? k - pc : isa->kc;
      int acc = pc > 0;
      pack_b(kc, nc, b + pc * rsb + jc * csb, rsb, csb, nr, bp);
      for (int ic = i0; ic < i1; ic += isa->mc) {
        int mc = i1 - ic < isa->mc ? i1 - ic : isa->mc;
        pack_a(mc, kc, a + ic * rsa + pc * csa, rsa, csa, mr, ap);
        for (int jr = 0; jr < nc; jr += nr) {
          int w = nc - jr < nr ? nc - jr : nr;
          const float *bpanel = bp + (long)jr * kc;
          for (int ir = 0; ir < mc; ir += mr) {
            int h = mc - ir < mr ? mc - ir : mr;
            const float *apanel = ap + (long)ir * kc;
            float *ct = c + (long)(ic + ir) * n + jc + jr;
            if (h == mr && w == nr) {
              isa->kernel(kc, apanel, bpanel, ct, n, acc);
            } else {
              /* Same kernel, same sums; only the valid h×w corner is written back. */
              isa->kernel(kc, apanel, bpanel, tile, nr, 0);
              for (int i = 0; i < h; i++) {
                float *ci = ct + (long)i * n;
                const float *ti = tile + i * nr;
                if (acc)
                  for (int j = 0; j < w; j++) ci[j] += ti[j];
                else
                  for (int j = 0; j < w; j++) ci[j] = ti[j];
              }
            }
          }
        }
      }
    }
  }
}

static void gemm_task(void *ctx, int task, int thread) {
  const gemm_job *job = ctx;
  int per_batch = job->m_parts * job->n_parts;
  int batch = task / per_batch, r = task % per_batch;
  int mi = r / job->n_parts, ni = r % job->n_parts;
  int i0 = mi * job->m_step, j0 = ni * job->n_step;
  int i1 = i0 + job->m_step < job->p->m ? i0 + job->m_step : job->p->m;
  int j1 = j0 + job->n_step < job->p->n ? j0 + job->n_step : job->p->n;
  if (i0 < i1 && j0 < j1) gemm_rect(job->isa, job->p, batch, i0, i1, j0, j1, thread);
}

static int ceil_div(long a, long b) { return (int)((a + b - 1) / b); }

/* Below this many multiply-adds a product runs on the caller's thread: waking workers costs more. */
#define GEMM_PARALLEL_MIN_MACS (1L << 18)

int gemm_run(const gemm_isa *isa, const gemm_problem *p) {
  if (p->batch <= 0 || p->m <= 0 || p->n <= 0) return 0;
  if (!pool_buffer_a(0) && pool_set_threads(pool_threads()) != 0) return -1;
  gemm_job job = {isa, p, 1, 1, p->m, p->n};
  int threads = pool_threads();
  double macs = (double)p->batch * p->m * p->n * (p->k > 0 ? p->k : 1);
  if (threads > 1 && macs >= GEMM_PARALLEL_MIN_MACS && p->batch < 2 * threads) {
    /* Too few batches to keep every thread busy: split each C into rectangles along its longer side
       (in micro-tiles), about two per thread for balance on a loaded machine. */
    int parts = ceil_div(2L * threads, p->batch);
    int m_tiles = ceil_div(p->m, isa->mr), n_tiles = ceil_div(p->n, isa->nr);
    if (n_tiles >= m_tiles) {
      job.n_parts = parts < n_tiles ? parts : n_tiles;
      job.n_step = ceil_div(n_tiles, job.n_parts) * isa->nr;
      job.n_parts = ceil_div(p->n, job.n_step);
    } else {
      job.m_parts = parts < m_tiles ? parts : m_tiles;
      job.m_step = ceil_div(m_tiles, job.m_parts) * isa->mr;
      job.m_parts = ceil_div(p->m, job.m_step);
    }
  }
  int ntasks = p->batch * job.m_parts * job.n_parts;
  pool_run(gemm_task, &job, ntasks, threads == 1 || macs < GEMM_PARALLEL_MIN_MACS);
  return 0;
}

/* ---- run-time ISA selection ---- */

const gemm_isa *gemm_isa_best(void) {
  const gemm_isa *isa = gemm_isa_avx512();
  if (!isa) isa = gemm_isa_avx2();
  return isa ? isa : &gemm_isa_generic;
}

const gemm_isa *gemm_isa_by_name(const char *name) {
  if (strcmp(name, "generic") == 0) return &gemm_isa_generic;
  if (strcmp(name, "avx2") == 0) return gemm_isa_avx2();
  if (strcmp(name, "avx512") == 0) return gemm_isa_avx512();
  return NULL;
}
