//go:build linux && cgo

// emu_kernels.c: the emulator's copies of the entry points in marlin.metal.
// Each one binds the arguments exactly as its Metal twin and calls the same
// body from the shared headers.
#include "emu_kernels.h"

#include <stdio.h>

#include "emu.h"

static void k_dequant(void *a, const emu_ids *id, void *tg) {
  (void)tg;
  mqemu_qargs *q = a;
  mq_dequant_body(q->p, q->W, q->S, q->Z, q->G, q->C, id->gid.x, id->gid.y);
}

static void k_gemm(void *a, const emu_ids *id, void *tg) {
  mqemu_qargs *q = a;
  float *xs = tg;
  float *ws = xs + MQ_GEMM_XS_FLOATS;
  mq_gemm_body(q->p, q->X, q->W, q->S, q->Z, q->G, q->C, (const uint *)q->X, 0u, 0u, q->p.m, id->tgid.x,
               id->tgid.y, xs, ws, id->tidx, id->sg);
}

static void k_gemv(void *a, const emu_ids *id, void *tg) {
  (void)tg;
  mqemu_qargs *q = a;
  mq_gemv_body(q->p, q->X, q->W, q->S, q->Z, q->G, q->C, id->tgid.x, id->tgid.y, id->lane, id->sg);
}

static void k_fwht_simd(void *a, const emu_ids *id, void *tg) {
  (void)tg;
  mqemu_fwht_args *f = a;
  mq_fwht_simd_body(f->p, f->x, id->gid.x, id->lane);
}

static void k_fwht_tg(void *a, const emu_ids *id, void *tg) {
  mqemu_fwht_args *f = a;
  mq_fwht_tg_body(f->p, f->x, (float *)tg, id->tgid.x, id->tidx, id->tptg.x);
}

static void k_router(void *a, const emu_ids *id, void *tg) {
  (void)tg;
  mqemu_router_args *r = a;
  mq_router_body(r->p, r->logits, r->bias, r->idx, r->w, id->tgid.x, id->lane, id->sg);
}

static void k_moe_gemm(void *a, const emu_ids *id, void *tg) {
  mqemu_qargs *q = a;
  float *xs = tg;
  float *ws = xs + MQ_GEMM_XS_FLOATS;
  mq_moe_gemm_body(q->p, q->X, q->W, q->S, q->Z, q->G, q->C, q->offsets, q->rowmap, id->tgid.x,
                   id->tgid.y, id->tgid.z, xs, ws, id->tidx, id->sg, q->scale_bytes);
}

static void k_test_diverge(void *a, const emu_ids *id, void *tg) {
  (void)a;
  (void)tg;
  if (id->tidx & 1u) {
    return;
  }
  MQ_TG_BARRIER();
}

static void k_test_race(void *a, const emu_ids *id, void *tg) {
  float *s = tg;
  float *out = ((mqemu_fwht_args *)a)->x;
  s[id->tidx] = (float)id->tidx;
  out[id->tidx] = s[(id->tidx + 1u) % id->tptg.x]; // missing barrier
}

static void k_test_sgload(void *a, const emu_ids *id, void *tg) {
  (void)a;
  float *s = tg;
  mq_sgmat m;
  MQ_SG_LOAD(m, s + (id->lane & 1u) * 8u, 16u); // odd lanes elsewhere
}

int mqemu_run(int kernel, void *args, uint gx, uint gy, uint gz, uint tx, uint ty, uint tz,
              int order, char *err, int errlen) {
  emu_entry e;
  unsigned long tg = 0;
  switch (kernel) {
  case MQEMU_DEQUANT:
    e = k_dequant;
    break;
  case MQEMU_GEMM:
    e = k_gemm;
    tg = (MQ_GEMM_XS_FLOATS + MQ_GEMM_WS_FLOATS) * sizeof(float);
    break;
  case MQEMU_GEMV:
    e = k_gemv;
    break;
  case MQEMU_FWHT_SIMD:
    e = k_fwht_simd;
    break;
  case MQEMU_FWHT_TG:
    e = k_fwht_tg;
    tg = MQ_FWHT_TG_FLOATS * sizeof(float);
    break;
  case MQEMU_ROUTER:
    e = k_router;
    break;
  case MQEMU_MOE_GEMM:
    e = k_moe_gemm;
    tg = (MQ_GEMM_XS_FLOATS + MQ_GEMM_WS_FLOATS) * sizeof(float);
    break;
  case MQEMU_TEST_DIVERGE:
    e = k_test_diverge;
    break;
  case MQEMU_TEST_RACE:
    e = k_test_race;
    tg = 1024 * sizeof(float);
    break;
  case MQEMU_TEST_SGLOAD:
    e = k_test_sgload;
    tg = 1024 * sizeof(float);
    break;
  default:
    snprintf(err, errlen, "emu: unknown kernel %d", kernel);
    return -1;
  }
  return emu_launch(e, args, gx, gy, gz, tx, ty, tz, tg, order, err, errlen);
}
