//go:build linux && cgo

// emu.c: runs Metal compute kernels on the CPU, one threadgroup at a time.
//
// Each thread of a threadgroup is a fiber (ucontext) with its own stack; a
// fiber runs until it reaches a barrier and then yields to the scheduler,
// which resumes the fibers whose barrier has opened. Barriers:
//   - threadgroup_barrier: all threads of the threadgroup;
//   - SIMD-group operations (simd_sum, simd_max, simd_min, simd_shuffle_xor):
//     the threads of one 32-wide SIMD group (linear thread index / 32)
//     exchange values through slots and a SIMD-group barrier.
// If no fiber can run while some are unfinished (a barrier that some
// threads never reach, or threads that returned while others wait), the
// launch fails with a "barrier divergence" error instead of hanging.
// The order in which runnable fibers are resumed is forward, reverse or
// shuffled: a kernel whose result depends on it has a race between barriers.
#define _GNU_SOURCE
#include "emu.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#define EMU_STACK (64 * 1024)
#define EMU_MAX_THREADS 1024

typedef struct {
  int count;
  unsigned gen;
  int participants;
} emu_bar;

typedef struct {
  emu_bar bar;
  uint nlanes;
  float fslot[2][32];
  uint uslot[2][32];
  const void *pslot[2][32];
} emu_simdgroup;

typedef struct {
  ucontext_t ctx;
  char *stack;
  emu_ids ids;
  int done;
  emu_bar *wait;
  unsigned wait_gen;
  unsigned simd_phase;
} emu_fiber;

typedef struct {
  ucontext_t sched;
  emu_fiber *f;
  int n;
  int running;
  emu_bar tgbar;
  emu_simdgroup *sg;
  emu_entry entry;
  void *args;
  void *tgmem;
  char err[256]; // first non-barrier error of the launch (non-uniform SIMD-group op)
} emu_state;

static _Thread_local emu_state *cur;

static void fiber_main(void) {
  emu_state *s = cur;
  emu_fiber *f = &s->f[s->running];
  s->entry(s->args, &f->ids, s->tgmem);
  f->done = 1;
  // returning resumes uc_link, the scheduler
}

static void wait_on(emu_bar *b) {
  emu_state *s = cur;
  emu_fiber *f = &s->f[s->running];
  b->count++;
  if (b->count == b->participants) {
    b->count = 0;
    b->gen++;
    return;
  }
  f->wait = b;
  f->wait_gen = b->gen;
  swapcontext(&f->ctx, &s->sched);
}

void emu_tg_barrier(void) { wait_on(&cur->tgbar); }

static emu_simdgroup *my_sg(emu_fiber **fp, unsigned *ph) {
  emu_fiber *f = &cur->f[cur->running];
  *fp = f;
  *ph = f->simd_phase++ & 1u;
  return &cur->sg[f->ids.sg];
}

// Reductions combine lanes as a butterfly (lane i with lane i+16, then +8,
// ...), the shape of a shuffle-based reduction; missing lanes count as the
// identity.
float emu_simd_sum(float v) {
  emu_fiber *f;
  unsigned ph;
  emu_simdgroup *g = my_sg(&f, &ph);
  g->fslot[ph][f->ids.lane] = v;
  wait_on(&g->bar);
  float t[32];
  for (uint i = 0; i < 32; i++) {
    t[i] = i < g->nlanes ? g->fslot[ph][i] : 0.0f;
  }
  for (uint off = 16; off > 0; off >>= 1) {
    for (uint i = 0; i < off; i++) {
      t[i] = t[i] + t[i + off];
    }
  }
  return t[0];
}

float emu_simd_max(float v) {
  emu_fiber *f;
  unsigned ph;
  emu_simdgroup *g = my_sg(&f, &ph);
  g->fslot[ph][f->ids.lane] = v;
  wait_on(&g->bar);
  float m = g->fslot[ph][0];
  for (uint i = 1; i < g->nlanes; i++) {
    m = fmaxf(m, g->fslot[ph][i]);
  }
  return m;
}

static uint simd_u(uint v, int want_max) {
  emu_fiber *f;
  unsigned ph;
  emu_simdgroup *g = my_sg(&f, &ph);
  g->uslot[ph][f->ids.lane] = v;
  wait_on(&g->bar);
  uint m = g->uslot[ph][0];
  for (uint i = 1; i < g->nlanes; i++) {
    uint x = g->uslot[ph][i];
    if (want_max ? x > m : x < m) {
      m = x;
    }
  }
  return m;
}

uint emu_simd_min_u(uint v) { return simd_u(v, 0); }
uint emu_simd_max_u(uint v) { return simd_u(v, 1); }

float emu_simd_shuffle_xor(float v, uint mask) {
  emu_fiber *f;
  unsigned ph;
  emu_simdgroup *g = my_sg(&f, &ph);
  g->fslot[ph][f->ids.lane] = v;
  wait_on(&g->bar);
  uint src = f->ids.lane ^ mask;
  return src < g->nlanes ? g->fslot[ph][src] : 0.0f;
}

// sg_uniform checks that every lane of the SIMD group performs the same
// simdgroup_matrix load or store (same address and stride): the GPU
// executes it once for the whole SIMD group, so lanes that disagree (or
// skip it, which shows as barrier divergence) are a bug.
static void sg_uniform(const char *op, const void *p, uint stride) {
  emu_fiber *f;
  unsigned ph;
  emu_simdgroup *g = my_sg(&f, &ph);
  g->pslot[ph][f->ids.lane] = p;
  g->uslot[ph][f->ids.lane] = stride;
  wait_on(&g->bar);
  for (uint i = 1; i < g->nlanes; i++) {
    if ((g->pslot[ph][i] != g->pslot[ph][0] || g->uslot[ph][i] != g->uslot[ph][0]) &&
        cur->err[0] == 0) {
      snprintf(cur->err, sizeof cur->err,
               "emu: non-uniform %s in SIMD group %u: lane 0 at %p stride %u, lane %u at %p "
               "stride %u",
               op, f->ids.sg, g->pslot[ph][0], g->uslot[ph][0], i, g->pslot[ph][i],
               g->uslot[ph][i]);
    }
  }
}

// simdgroup_matrix<float, 8, 8>: element (r, c) is at p[r*stride + c].
void emu_sg_load(mq_sgmat *m, const float *p, uint stride) {
  sg_uniform("simdgroup_load", p, stride);
  for (uint r = 0; r < 8; r++) {
    for (uint c = 0; c < 8; c++) {
      m->v[r * 8 + c] = p[r * stride + c];
    }
  }
}

void emu_sg_store(const mq_sgmat *m, float *p, uint stride) {
  sg_uniform("simdgroup_store", p, stride);
  for (uint r = 0; r < 8; r++) {
    for (uint c = 0; c < 8; c++) {
      p[r * stride + c] = m->v[r * 8 + c];
    }
  }
}

// d = a·b + c, each dot product accumulated in k order in float, starting
// from c. (The GPU's order is unspecified; tests allow for that.)
void emu_sg_mma(mq_sgmat *d, const mq_sgmat *a, const mq_sgmat *b, const mq_sgmat *c) {
  mq_sgmat t;
  for (uint r = 0; r < 8; r++) {
    for (uint col = 0; col < 8; col++) {
      float s = c->v[r * 8 + col];
      for (uint k = 0; k < 8; k++) {
        s += a->v[r * 8 + k] * b->v[k * 8 + col];
      }
      t.v[r * 8 + col] = s;
    }
  }
  *d = t;
}

static void make_order(int *ord, int n, int order, unsigned seed) {
  for (int i = 0; i < n; i++) {
    ord[i] = order == EMU_ORDER_REVERSE ? n - 1 - i : i;
  }
  if (order == EMU_ORDER_SHUFFLE) {
    unsigned x = seed * 2654435761u + 12345u;
    for (int i = n - 1; i > 0; i--) {
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      int j = (int)(x % (unsigned)(i + 1));
      int t = ord[i];
      ord[i] = ord[j];
      ord[j] = t;
    }
  }
}

int emu_launch(emu_entry entry, void *args, uint gx, uint gy, uint gz, uint tx, uint ty, uint tz,
               unsigned long tg_bytes, int order, char *err, int errlen) {
  unsigned long n = (unsigned long)tx * ty * tz;
  if (n == 0 || n > EMU_MAX_THREADS) {
    snprintf(err, errlen, "emu: threadgroup of %ux%ux%u threads (want 1..%d)", tx, ty, tz,
             EMU_MAX_THREADS);
    return -1;
  }
  if (tg_bytes > 32768) {
    snprintf(err, errlen, "emu: %lu bytes of threadgroup memory (Metal allows 32768)", tg_bytes);
    return -1;
  }
  emu_state s;
  memset(&s, 0, sizeof s);
  s.n = (int)n;
  s.entry = entry;
  s.args = args;
  s.f = calloc(n, sizeof(emu_fiber));
  int nsg = (int)((n + 31) / 32);
  s.sg = calloc((size_t)nsg, sizeof(emu_simdgroup));
  s.tgmem = malloc(tg_bytes > 0 ? tg_bytes : 1);
  int *ord = malloc(n * sizeof(int));
  int rc = 0;
  if (!s.f || !s.sg || !s.tgmem || !ord) {
    snprintf(err, errlen, "emu: out of memory");
    rc = -1;
    goto out;
  }
  for (unsigned long i = 0; i < n; i++) {
    s.f[i].stack = malloc(EMU_STACK);
    if (!s.f[i].stack) {
      snprintf(err, errlen, "emu: out of memory for stacks");
      rc = -1;
      goto out;
    }
  }
  emu_state *saved = cur;
  cur = &s;
  for (uint z = 0; z < gz && rc == 0; z++) {
    for (uint y = 0; y < gy && rc == 0; y++) {
      for (uint x = 0; x < gx && rc == 0; x++) {
        memset(s.tgmem, 0xff, tg_bytes); // NaN: reading before writing shows
        s.tgbar.count = 0;
        s.tgbar.participants = (int)n;
        for (int g = 0; g < nsg; g++) {
          s.sg[g].bar.count = 0;
          s.sg[g].nlanes = (uint)((unsigned long)(g + 1) * 32 <= n ? 32 : n - (unsigned long)g * 32);
          s.sg[g].bar.participants = (int)s.sg[g].nlanes;
        }
        for (unsigned long i = 0; i < n; i++) {
          emu_fiber *f = &s.f[i];
          f->done = 0;
          f->wait = NULL;
          f->simd_phase = 0;
          uint lx = (uint)(i % tx), ly = (uint)((i / tx) % ty), lz = (uint)(i / ((unsigned long)tx * ty));
          f->ids.tgid = (uint3){x, y, z};
          f->ids.tid3 = (uint3){lx, ly, lz};
          f->ids.tptg = (uint3){tx, ty, tz};
          f->ids.gid = (uint3){x * tx + lx, y * ty + ly, z * tz + lz};
          f->ids.tidx = (uint)i;
          f->ids.lane = (uint)(i % 32);
          f->ids.sg = (uint)(i / 32);
          getcontext(&f->ctx);
          f->ctx.uc_stack.ss_sp = f->stack;
          f->ctx.uc_stack.ss_size = EMU_STACK;
          f->ctx.uc_link = &s.sched;
          makecontext(&f->ctx, fiber_main, 0);
        }
        make_order(ord, (int)n, order, x + 7919u * y + 104729u * z);
        s.err[0] = 0;
        for (;;) {
          int alive = 0, progress = 0;
          for (unsigned long o = 0; o < n; o++) {
            emu_fiber *f = &s.f[ord[o]];
            if (f->done) {
              continue;
            }
            alive++;
            if (f->wait && f->wait->gen == f->wait_gen) {
              continue;
            }
            f->wait = NULL;
            s.running = ord[o];
            swapcontext(&s.sched, &f->ctx);
            progress = 1;
          }
          if (!alive) {
            if (s.err[0] != 0) {
              snprintf(err, errlen, "%s (threadgroup %u,%u,%u)", s.err, x, y, z);
              rc = -1;
            }
            break;
          }
          if (!progress) {
            int waiting_tg = 0, waiting_simd = 0, done = 0;
            for (unsigned long i = 0; i < n; i++) {
              if (s.f[i].done) {
                done++;
              } else if (s.f[i].wait == &s.tgbar) {
                waiting_tg++;
              } else {
                waiting_simd++;
              }
            }
            snprintf(err, errlen,
                     "emu: barrier divergence in threadgroup (%u,%u,%u): %d threads at "
                     "threadgroup_barrier, %d at a SIMD-group operation, %d returned",
                     x, y, z, waiting_tg, waiting_simd, done);
            rc = -1;
            break;
          }
        }
      }
    }
  }
  cur = saved;
out:
  if (s.f) {
    for (unsigned long i = 0; i < n; i++) {
      free(s.f[i].stack);
    }
  }
  free(s.f);
  free(s.sg);
  free(s.tgmem);
  free(ord);
  return rc;
}
