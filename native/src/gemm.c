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

/*
 * dst[p*width + l] = src[l*ls + p] for l < lines ≤ width, p < kc: `lines` contiguous source lines become
 * the columns of a panel. 8×8 blocks go through the ISA's in-register transpose when it has one.
 */
static void pack_lines(const gemm_isa *isa, int lines, int kc, const float *src, long ls, int width, float *dst) {
  int l = 0;
  if (isa->transpose8) {
    for (; l + 8 <= lines; l += 8) {
      int p = 0;
      for (; p + 8 <= kc; p += 8) isa->transpose8(src + l * ls + p, ls, dst + (long)p * width + l, width);
      for (; p < kc; p++)
        for (int i = 0; i < 8; i++) dst[(long)p * width + l + i] = src[(l + i) * ls + p];
    }
  }
  for (; l < lines; l++) {
    const float *s = src + l * ls;
    for (int p = 0; p < kc; p++) dst[(long)p * width + l] = s[p];
  }
  for (l = lines; l < width; l++)
    for (int p = 0; p < kc; p++) dst[(long)p * width + l] = 0.0f;
}

/*
 * Packs `lines` × kc elements, element (l, p) at src[l*ls + p*ps], into width-line panels [kc][width],
 * zero-padded: A blocks (lines = rows of op(A), width MR) and B blocks (lines = columns of op(B), width NR).
 */
static void pack_panels(const gemm_isa *isa, int lines, int kc, const float *src, long ls, long ps, int width, float *dst) {
  for (int l0 = 0; l0 < lines; l0 += width) {
    int h = lines - l0 < width ? lines - l0 : width;
    const float *s0 = src + (long)l0 * ls;
    if (ls == 1) {
      /* The panel's values for one p are adjacent (Aᵀ or B stored row-major). */
      for (int p = 0; p < kc; p++) {
        const float *s = s0 + (long)p * ps;
        float *d = dst + (long)p * width;
        int l = 0;
        for (; l < h; l++) d[l] = s[l];
        for (; l < width; l++) d[l] = 0.0f;
      }
    } else {
      /* ps = 1: each line is contiguous (row-major A, or Bᵀ) and becomes a column of the panel. */
      pack_lines(isa, h, kc, s0, ls, width, dst);
    }
    dst += (long)kc * width;
  }
}

/* ---- portable micro-kernel: 4×8 on GCC/Clang generic vectors (SSE2, NEON, or scalar code) ---- */

#define G_MR 4
#define G_NR 8
typedef float v4f __attribute__((vector_size(16)));

static void kernel_generic(int kc, const float *a, long rsa, long csa, const float *bp, float *c, long ldc, int accumulate) {
  v4f acc[G_MR][2] = {{{0}}};
  for (int p = 0; p < kc; p++) {
    v4f b0, b1;
    memcpy(&b0, bp, sizeof b0);
    memcpy(&b1, bp + 4, sizeof b1);
    const float *ap = a + (long)p * csa;
    for (int i = 0; i < G_MR; i++) {
      float x = ap[i * rsa];
      v4f ai = {x, x, x, x};
      acc[i][0] += ai * b0;
      acc[i][1] += ai * b1;
    }
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

static void rows_generic(const gemm_problem *p, int batch, int j0, int j1) { gemm_rows_body(p, batch, j0, j1); }

const gemm_isa gemm_isa_generic = {"generic", G_MR, G_NR, 96, 256, 1024, kernel_generic, NULL, rows_generic};

/* ---- the loop nest over one rectangle of C ---- */

/* Up to this many NR-wide panels of B per block, A is read in place instead of packed. */
#define GEMM_DIRECT_A_MAX_PANELS 4

typedef struct {
  const gemm_isa *isa;
  const gemm_problem *p;
  int rows;             /* small M, B row-major: isa->rows instead of the packed loop nest */
  int m_parts, n_parts;  /* C of each batch is split into m_parts × n_parts rectangles */
  int m_step, n_step;    /* rectangle size, multiples of MR / NR */
  int batch_step;        /* whole batches per task when C is not split */
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
      pack_panels(isa, nc, kc, b + pc * rsb + jc * csb, csb, rsb, nr, bp);
      for (int ic = i0; ic < i1; ic += isa->mc) {
        int mc = i1 - ic < isa->mc ? i1 - ic : isa->mc;
        const float *ablock = a + ic * rsa + pc * csa;
        /* Packing A pays off when its panels are reused across many B panels; with few, the kernel reads
           A where it lies (full panels only: a tail panel is packed, zero-padded). */
        int direct = nc <= GEMM_DIRECT_A_MAX_PANELS * nr;
        if (!direct) pack_panels(isa, mc, kc, ablock, rsa, csa, mr, ap);
        else if (mc % mr) pack_panels(isa, mc % mr, kc, ablock + (long)(mc - mc % mr) * rsa, rsa, csa, mr, ap);
        for (int jr = 0; jr < nc; jr += nr) {
          int w = nc - jr < nr ? nc - jr : nr;
          const float *bpanel = bp + (long)jr * kc;
          for (int ir = 0; ir < mc; ir += mr) {
            int h = mc - ir < mr ? mc - ir : mr;
            const float *apanel = !direct ? ap + (long)ir * kc : h == mr ? ablock + (long)ir * rsa : ap;
            long ars = !direct || h < mr ? 1 : rsa, acs = !direct || h < mr ? mr : csa;
            float *ct = c + (long)(ic + ir) * n + jc + jr;
            if (h == mr && w == nr) {
              isa->kernel(kc, apanel, ars, acs, bpanel, ct, n, acc);
            } else {
              /* Same kernel, same sums; only the valid h×w corner is written back. */
              isa->kernel(kc, apanel, ars, acs, bpanel, tile, nr, 0);
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
  if (i0 >= i1 || j0 >= j1) return;
  int b0 = batch * job->batch_step, b1 = b0 + job->batch_step < job->p->batch ? b0 + job->batch_step : job->p->batch;
  for (int b = b0; b < b1; b++) {
    if (job->rows)
      job->isa->rows(job->p, b, j0, j1);
    else
      gemm_rect(job->isa, job->p, b, i0, i1, j0, j1, thread);
  }
}

static int ceil_div(long a, long b) { return (int)((a + b - 1) / b); }

/* Below this many multiply-adds a product runs on the caller's thread: waking workers costs more. */
#define GEMM_PARALLEL_MIN_MACS (1L << 18)

int gemm_run(const gemm_isa *isa, const gemm_problem *p) {
  if (p->batch <= 0 || p->m <= 0 || p->n <= 0) return 0;
  if (!pool_buffer_a(0) && pool_set_threads(pool_threads()) != 0) return -1;
  /* Chosen from the shape alone, so every thread count takes the same path (same sums). */
  gemm_job job = {isa, p, p->m <= GEMM_ROWS_MAX_M && !p->trans_b, 1, 1, p->m, p->n, 1};
  int threads = pool_threads();
  double macs = (double)p->batch * p->m * p->n * (p->k > 0 ? p->k : 1);
  if (threads > 1 && macs >= GEMM_PARALLEL_MIN_MACS && p->batch < 2 * threads) {
    /* Too few batches to keep every thread busy: split each C into rectangles, about two per thread for
       balance on a loaded machine. Every rectangle packs its own share of one operand and all of the other:
       split along M, each task packs all of B (K×N); along N, all of A (M×K, or none when read in place).
       So split the side that is longer in elements (comparing micro-tiles instead, MR 8 against NR 32,
       split the weight gradients Xᵀ·dY [128,1024]·[1024,344] along M and packed their large B four times). */
    int parts = ceil_div(2L * threads, p->batch);
    int m_tiles = ceil_div(p->m, isa->mr), n_tiles = ceil_div(p->n, isa->nr);
    if (p->n >= p->m) {
      job.n_parts = parts < n_tiles ? parts : n_tiles;
      job.n_step = ceil_div(n_tiles, job.n_parts) * isa->nr;
      job.n_parts = ceil_div(p->n, job.n_step);
    } else {
      job.m_parts = parts < m_tiles ? parts : m_tiles;
      job.m_step = ceil_div(m_tiles, job.m_parts) * isa->mr;
      job.m_parts = ceil_div(p->m, job.m_step);
    }
  }
  int serial = threads == 1 || macs < GEMM_PARALLEL_MIN_MACS;
  /* Many batches (attention's batch × heads, each ~1 µs at T = 64): about four runs of whole batches per
     thread instead of one task per batch, so claims (a shared atomic) stay rare next to the work. */
  if (serial) job.batch_step = p->batch;
  else if (job.m_parts * job.n_parts == 1) job.batch_step = ceil_div(p->batch, 4L * threads);
  int ntasks = ceil_div(p->batch, job.batch_step) * job.m_parts * job.n_parts;
  pool_run(gemm_task, &job, ntasks, serial);
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
