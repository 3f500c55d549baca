// mq_moe.h: MoE router top-k and the expert-grouped dequant-GEMM. Shared by
// MSL and C (see mq_compat.h).
#ifndef MQ_MOE_H
#define MQ_MOE_H

#include "mq_gemm.h"

// Router modes.
#define MQ_ROUTER_SOFTMAX 0u // softmax over all experts, then top-k (Qwen3-MoE)
#define MQ_ROUTER_SIGMOID 1u // sigmoid scores, top-k on score + bias (GLM-4.x, DeepSeek-V3)

#define MQ_TOPK_MAXE 256u
#define MQ_TOPK_MAXK 8u
#define MQ_TOPK_SG 4u
#define MQ_TOPK_THREADS (32u * MQ_TOPK_SG)

typedef struct {
  uint tokens;
  uint experts; // ≤ MQ_TOPK_MAXE
  uint k;       // ≤ MQ_TOPK_MAXK
  uint mode;    // MQ_ROUTER_*
  uint has_bias;
  uint norm;     // 1: weights divided by their sum (+ norm_eps)
  float norm_eps;
  float scaling; // routed scaling factor applied last
} mq_router_params;

// mq_order_key maps a float to a uint whose unsigned order is the float
// order, with NaN below every number (kernels.TopK's convention).
MQ_FN uint mq_order_key(float f) {
  uint u = mq_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    return 0u;
  }
  return (u & 0x80000000u) != 0u ? ~u : (u | 0x80000000u);
}

// mq_router_body: SIMD group sg of threadgroup tg routes token tg·4 + sg.
// Lane l owns experts l, l+32, ...; each of the k rounds picks the largest
// key (ties to the lower expert index) with simd_max/simd_min.
MQ_FN void mq_router_body(mq_router_params p, MTL_DEVICE const float *logits,
                          MTL_DEVICE const float *bias, MTL_DEVICE uint *out_idx,
                          MTL_DEVICE float *out_w, uint tg, uint lane, uint sg) {
  uint t = tg * MQ_TOPK_SG + sg;
  bool active = t < p.tokens;
  float score[MQ_TOPK_MAXE / 32u];
  uint key[MQ_TOPK_MAXE / 32u];
  float lmax = -INFINITY;
  for (uint j = 0u; j < MQ_TOPK_MAXE / 32u; j++) {
    uint e = lane + 32u * j;
    float l = (active && e < p.experts) ? logits[t * p.experts + e] : -INFINITY;
    score[j] = l;
    lmax = l > lmax ? l : lmax;
  }
  if (p.mode == MQ_ROUTER_SOFTMAX) {
    float mx = MQ_SIMD_MAX(lmax);
    float sum = 0.0f;
    for (uint j = 0u; j < MQ_TOPK_MAXE / 32u; j++) {
      float ex = (lane + 32u * j < p.experts && active) ? MQ_EXP(score[j] - mx) : 0.0f;
      score[j] = ex;
      sum += ex;
    }
    float tot = MQ_SIMD_SUM(sum);
    for (uint j = 0u; j < MQ_TOPK_MAXE / 32u; j++) {
      score[j] = score[j] / tot;
    }
  } else {
    for (uint j = 0u; j < MQ_TOPK_MAXE / 32u; j++) {
      score[j] = 1.0f / (1.0f + MQ_EXP(-score[j]));
    }
  }
  for (uint j = 0u; j < MQ_TOPK_MAXE / 32u; j++) {
    uint e = lane + 32u * j;
    float kv = score[j];
    if (p.has_bias != 0u && e < p.experts) {
      kv = kv + bias[e];
    }
    // Keys are order-preserving codes + 1 so that 0 means "not a candidate".
    key[j] = (e < p.experts && active) ? mq_min_u(mq_order_key(kv), 0xfffffffeu) + 1u : 0u;
  }
  float wsel[MQ_TOPK_MAXK];
  uint isel[MQ_TOPK_MAXK];
  for (uint r = 0u; r < MQ_TOPK_MAXK; r++) {
    wsel[r] = 0.0f;
    isel[r] = 0u;
    if (r >= p.k) {
      continue; // p.k is uniform: every lane skips together
    }
    uint best = 0u;
    uint bidx = 0xffffffffu;
    for (uint j = 0u; j < MQ_TOPK_MAXE / 32u; j++) {
      if (key[j] > best) { // ascending e within a lane: ties keep the lower index
        best = key[j];
        bidx = lane + 32u * j;
      }
    }
    uint gbest = MQ_SIMD_MAX_U(best);
    uint gidx = MQ_SIMD_MIN_U(best == gbest ? bidx : 0xffffffffu);
    float w = 0.0f;
    if (gidx != 0xffffffffu && gidx % 32u == lane) {
      key[gidx / 32u] = 0u;
      w = score[gidx / 32u];
    }
    wsel[r] = MQ_SIMD_SUM(w); // one lane contributes, the others add +0
    isel[r] = gidx;
  }
  if (!active || lane != 0u) {
    return;
  }
  float denom = 1.0f;
  if (p.norm != 0u) {
    float s = 0.0f;
    for (uint r = 0u; r < p.k; r++) {
      s += wsel[r];
    }
    denom = s + p.norm_eps;
  }
  for (uint r = 0u; r < p.k; r++) {
    float w = wsel[r];
    if (p.norm != 0u) {
      w = w / denom;
    }
    out_idx[t * p.k + r] = isel[r];
    out_w[t * p.k + r] = w * p.scaling;
  }
}

// mq_moe_gemm_body: expert-grouped dequant-GEMM. Assignments (token,
// expert) are sorted by expert: rows offsets[e] .. offsets[e+1]-1 of the
// output belong to expert e and read X row rowmap[row]. Threadgroup
// (tn, tm, e) computes a 32x32 tile of expert e's rows with expert e's
// weights (experts stacked: W + e·rows·row_bytes, S, Z and G likewise).
// Threadgroups past an expert's row count return before any barrier.
MQ_FN void mq_moe_gemm_body(mq_qparams p, MTL_DEVICE const float *X, MTL_DEVICE const uchar *W,
                            MTL_DEVICE const uchar *S, MTL_DEVICE const uchar *Z,
                            MTL_DEVICE const int *G, MTL_DEVICE float *C, MTL_DEVICE const uint *offsets,
                            MTL_DEVICE const uint *rowmap, uint tn, uint tm, uint e,
                            MTL_THREADGROUP float *xs, MTL_THREADGROUP float *ws, uint tid,
                            uint sg, uint scale_bytes) {
  if (e >= p.experts) {
    return;
  }
  uint base = offsets[e];
  uint cnt = offsets[e + 1u] - base;
  if (tm * MQ_BM >= cnt) {
    return;
  }
  uint wstride = p.rows * p.row_bytes;
  uint gstride = p.rows * p.ngroups;
  uint gxstride = p.has_gidx != 0u ? p.cols : 0u;
  mq_gemm_body(p, X, W + e * wstride, S + e * gstride * scale_bytes, Z + e * gstride,
               G + e * gxstride, C, rowmap, 1u, base, cnt, tn, tm, xs, ws, tid, sg);
}

#endif // MQ_MOE_H
