// mq_gemm.h: kernel bodies for dequantization, fused dequant-GEMM (8x8
// simdgroup_matrix tiles, double-buffered threadgroup tiles) and the
// dequant-GEMV used for decoding. Shared by MSL and C (see mq_compat.h); the
// `kernel` entry points that call these bodies are in marlin.metal (GPU) and
// emu_kernels.c (emulator).
#ifndef MQ_GEMM_H
#define MQ_GEMM_H

#include "mq_formats.h"

// ------------------------------------------------------------------ dequant
// Grid: one thread per run of 8 elements: threads (ceil(cols/8), rows).
#define MQ_DEQUANT_TG_X 32u
#define MQ_DEQUANT_TG_Y 4u

MQ_FN void mq_dequant_body(mq_qparams p, MTL_DEVICE const uchar *W, MTL_DEVICE const uchar *S,
                           MTL_DEVICE const uchar *Z, MTL_DEVICE const int *G, MTL_DEVICE float *out,
                           uint gx, uint gy) {
  uint n = gy;
  uint k0 = gx * 8u;
  if (n >= p.rows || k0 >= p.cols) {
    return;
  }
  float v[8];
  mq_dq_run(p, W, S, Z, G, n, k0, v);
  uint cnt = mq_min_u(8u, p.cols - k0);
  for (uint i = 0u; i < cnt; i++) {
    out[n * p.cols + k0 + i] = v[i];
  }
}

// --------------------------------------------------------------------- GEMM
// C[m, n] = sum_k X[m, k]·W[n, k] + beta·C[m, n].
// A threadgroup of 128 threads (4 SIMD groups) computes a 32x32 tile of C;
// SIMD group s owns the 16x16 quarter (s/2, s%2) as four 8x8 accumulators.
// K advances in steps of 32: X and the dequantized W tile are staged in
// threadgroup memory, two buffers each, so that loading step t+1 overlaps
// computing step t with a single barrier per step. Out-of-range rows,
// columns and k are loaded as zeros, so any M, N, K works.
#define MQ_BM 32u
#define MQ_BN 32u
#define MQ_BK 32u
#define MQ_GEMM_THREADS 128u
// Threadgroup floats: X tiles then W tiles (the X area is reused to stage C).
#define MQ_GEMM_XS_FLOATS (2u * MQ_BM * MQ_BK)
#define MQ_GEMM_WS_FLOATS (2u * MQ_BK * MQ_BN)

// mq_gemm_load stages k-step kt into buffer buf: X rows m0.. (through the
// row map when use_map) as xs[r][c], and W rows n0.. dequantized and
// transposed as ws[c][r], so that both feed simdgroup_load untransposed.
MQ_FN void mq_gemm_load(mq_qparams p, MTL_DEVICE const float *X, MTL_DEVICE const uchar *W,
                        MTL_DEVICE const uchar *S, MTL_DEVICE const uchar *Z, MTL_DEVICE const int *G,
                        MTL_DEVICE const uint *rowmap, uint use_map, uint base, uint mcount, uint m0,
                        uint n0, uint kt, uint buf, MTL_THREADGROUP float *xs,
                        MTL_THREADGROUP float *ws, uint tid) {
  MTL_THREADGROUP float *xb = xs + buf * (MQ_BM * MQ_BK);
  MTL_THREADGROUP float *wb = ws + buf * (MQ_BK * MQ_BN);
  uint kbase = kt * MQ_BK;
  for (uint i = 0u; i < (MQ_BM * MQ_BK) / MQ_GEMM_THREADS; i++) {
    uint idx = tid + i * MQ_GEMM_THREADS;
    uint r = idx / MQ_BK;
    uint c = idx % MQ_BK;
    uint m = m0 + r;
    uint k = kbase + c;
    float v = 0.0f;
    if (m < mcount && k < p.cols) {
      uint xr = use_map != 0u ? rowmap[base + m] : m;
      v = X[xr * p.ldx + k];
    }
    xb[idx] = v;
  }
  // 128 threads x 8 elements: thread t dequantizes row t/4, k-run (t%4)*8.
  uint r = tid / 4u;
  uint cc = (tid % 4u) * 8u;
  float v[8];
  mq_dq_run(p, W, S, Z, G, n0 + r, kbase + cc, v);
  for (uint i = 0u; i < 8u; i++) {
    wb[(cc + i) * MQ_BN + r] = v[i];
  }
}

// mq_gemm_body computes one 32x32 tile (tile tn of N, tm of the mcount rows).
// X rows are X[rowmap[base+m]] when use_map (MoE), else X[m]; C rows are
// C[base+m]. Must be called by all 128 threads of the threadgroup.
MQ_FN void mq_gemm_body(mq_qparams p, MTL_DEVICE const float *X, MTL_DEVICE const uchar *W,
                        MTL_DEVICE const uchar *S, MTL_DEVICE const uchar *Z, MTL_DEVICE const int *G,
                        MTL_DEVICE float *C, MTL_DEVICE const uint *rowmap, uint use_map, uint base, uint mcount,
                        uint tn, uint tm, MTL_THREADGROUP float *xs, MTL_THREADGROUP float *ws,
                        uint tid, uint sg) {
  uint m0 = tm * MQ_BM;
  uint n0 = tn * MQ_BN;
  uint sr = sg >> 1;
  uint sc = sg & 1u;
  mq_sgmat c00, c01, c10, c11;
  MQ_SG_ZERO(c00);
  MQ_SG_ZERO(c01);
  MQ_SG_ZERO(c10);
  MQ_SG_ZERO(c11);
  uint steps = mq_ceil_div(p.cols, MQ_BK);
  if (steps > 0u) {
    mq_gemm_load(p, X, W, S, Z, G, rowmap, use_map, base, mcount, m0, n0, 0u, 0u, xs, ws, tid);
  }
  MQ_TG_BARRIER();
  for (uint t = 0u; t < steps; t++) {
    uint cur = t & 1u;
    if (t + 1u < steps) {
      mq_gemm_load(p, X, W, S, Z, G, rowmap, use_map, base, mcount, m0, n0, t + 1u, cur ^ 1u, xs,
                   ws, tid);
    }
    MTL_THREADGROUP float *xb = xs + cur * (MQ_BM * MQ_BK) + (sr * 16u) * MQ_BK;
    MTL_THREADGROUP float *wb = ws + cur * (MQ_BK * MQ_BN) + sc * 16u;
    for (uint kk = 0u; kk < MQ_BK; kk += 8u) {
      mq_sgmat a0, a1, b0, b1;
      MQ_SG_LOAD(a0, xb + kk, MQ_BK);
      MQ_SG_LOAD(a1, xb + 8u * MQ_BK + kk, MQ_BK);
      MQ_SG_LOAD(b0, wb + kk * MQ_BN, MQ_BN);
      MQ_SG_LOAD(b1, wb + kk * MQ_BN + 8u, MQ_BN);
      MQ_SG_MMA(c00, a0, b0, c00);
      MQ_SG_MMA(c01, a0, b1, c01);
      MQ_SG_MMA(c10, a1, b0, c10);
      MQ_SG_MMA(c11, a1, b1, c11);
    }
    MQ_TG_BARRIER();
  }
  // Stage the 32x32 result in the X area, then write the in-range part.
  MTL_THREADGROUP float *cs = xs + (sr * 16u) * MQ_BN + sc * 16u;
  MQ_SG_STORE(c00, cs, MQ_BN);
  MQ_SG_STORE(c01, cs + 8u, MQ_BN);
  MQ_SG_STORE(c10, cs + 8u * MQ_BN, MQ_BN);
  MQ_SG_STORE(c11, cs + 8u * MQ_BN + 8u, MQ_BN);
  MQ_TG_BARRIER();
  for (uint i = 0u; i < (MQ_BM * MQ_BN) / MQ_GEMM_THREADS; i++) {
    uint idx = tid + i * MQ_GEMM_THREADS;
    uint m = m0 + idx / MQ_BN;
    uint n = n0 + idx % MQ_BN;
    if (m < mcount && n < p.rows) {
      MTL_DEVICE float *dst = C + (base + m) * p.ldc + n;
      float v = xs[idx];
      if (p.beta != 0.0f) {
        v = v + p.beta * dst[0];
      }
      dst[0] = v;
    }
  }
}

// --------------------------------------------------------------------- GEMV
// Decode path for small M: SIMD group s of threadgroup (tx, ty) computes
// output column n = tx·4 + s for rows ty·8 .. ty·8+7 of X. Lane l walks runs
// of 8 weights k0 = 8·(l + 32·i), dequantizes each run once and uses it for
// all rows; simd_sum reduces the 32 partial sums.
#define MQ_GEMV_SG 4u
#define MQ_GEMV_THREADS (32u * MQ_GEMV_SG)
#define MQ_GEMV_MAXM 8u

MQ_FN void mq_gemv_body(mq_qparams p, MTL_DEVICE const float *X, MTL_DEVICE const uchar *W,
                        MTL_DEVICE const uchar *S, MTL_DEVICE const uchar *Z, MTL_DEVICE const int *G,
                        MTL_DEVICE float *C, uint tx, uint ty, uint lane, uint sg) {
  uint n = tx * MQ_GEMV_SG + sg;
  uint m0 = ty * MQ_GEMV_MAXM;
  uint mb = p.m > m0 ? mq_min_u(MQ_GEMV_MAXM, p.m - m0) : 0u;
  float acc[MQ_GEMV_MAXM];
  for (uint i = 0u; i < MQ_GEMV_MAXM; i++) {
    acc[i] = 0.0f;
  }
  if (n < p.rows) {
    for (uint k0 = lane * 8u; k0 < p.cols; k0 += 256u) {
      float w[8];
      mq_dq_run(p, W, S, Z, G, n, k0, w);
      uint cnt = mq_min_u(8u, p.cols - k0);
      for (uint mi = 0u; mi < mb; mi++) {
        MTL_DEVICE const float *x = X + (m0 + mi) * p.ldx + k0;
        float a = acc[mi];
        for (uint i = 0u; i < cnt; i++) {
          a += x[i] * w[i];
        }
        acc[mi] = a;
      }
    }
  }
  // Every lane takes part in every reduction (uniform control flow).
  for (uint mi = 0u; mi < MQ_GEMV_MAXM; mi++) {
    float s = MQ_SIMD_SUM(acc[mi]);
    if (lane == 0u && mi < mb && n < p.rows) {
      MTL_DEVICE float *dst = C + (m0 + mi) * p.ldc + n;
      float v = s;
      if (p.beta != 0.0f) {
        v = v + p.beta * dst[0];
      }
      dst[0] = v;
    }
  }
}

#endif // MQ_GEMM_H
