// mq_fwht.h: fast Walsh-Hadamard transform of consecutive blocks of
// 2^log2b floats, in natural (Sylvester) order, H_2n = [[H, H], [H, -H]].
// Stages run h = 1, 2, 4, ...; each butterfly is (a, b) -> (a + b, a - b)
// and the scale is applied once at the end, so the result is bit-identical
// to kernels.FWHT on the CPU. Shared by MSL and C (see mq_compat.h).
#ifndef MQ_FWHT_H
#define MQ_FWHT_H

#include "mq_compat.h"

typedef struct {
  uint total;  // rows·cols elements
  uint log2b;  // block = 2^log2b
  uint scaled; // 1: multiply by scale at the end
  float scale; // 1/sqrt(block) for the orthonormal transform
} mq_fwht_params;

// Blocks of up to 32 elements: one element per lane, butterflies through
// simd_shuffle_xor. Threadgroups of MQ_FWHT_SIMD_THREADS threads cover the
// flat array; blocks never straddle a SIMD group because 32 is a multiple of
// the block and the array a multiple of the block.
#define MQ_FWHT_SIMD_THREADS 128u
#define MQ_FWHT_SIMD_MAXLOG2 5u

MQ_FN void mq_fwht_simd_body(mq_fwht_params p, MTL_DEVICE float *x, uint gid, uint lane) {
  float v = gid < p.total ? x[gid] : 0.0f;
  uint b = 1u << p.log2b;
  for (uint h = 1u; h < b; h <<= 1) {
    float o = MQ_SIMD_SHUFFLE_XOR(v, h);
    // The lower element of a pair keeps a + b, the upper one a - b, with a
    // the lower element: exactly the CPU's butterfly.
    v = (lane & h) != 0u ? o - v : v + o;
  }
  if (p.scaled != 0u) {
    v = v * p.scale;
  }
  if (gid < p.total) {
    x[gid] = v;
  }
}

// Larger blocks (up to 2^MQ_FWHT_TG_MAXLOG2): one threadgroup per block,
// held in threadgroup memory, one barrier per stage.
#define MQ_FWHT_TG_THREADS 256u
#define MQ_FWHT_TG_MAXLOG2 12u
#define MQ_FWHT_TG_FLOATS (1u << MQ_FWHT_TG_MAXLOG2)

MQ_FN void mq_fwht_tg_body(mq_fwht_params p, MTL_DEVICE float *x, MTL_THREADGROUP float *s,
                           uint block, uint tid, uint nthreads) {
  uint b = 1u << p.log2b;
  MTL_DEVICE float *xb = x + block * b;
  for (uint i = tid; i < b; i += nthreads) {
    s[i] = xb[i];
  }
  MQ_TG_BARRIER();
  uint half_b = b >> 1;
  for (uint h = 1u; h < b; h <<= 1) {
    for (uint q = tid; q < half_b; q += nthreads) {
      uint j = (q / h) * (2u * h) + (q % h);
      float a = s[j];
      float c = s[j + h];
      s[j] = a + c;
      s[j + h] = a - c;
    }
    MQ_TG_BARRIER();
  }
  for (uint i = tid; i < b; i += nthreads) {
    float v = s[i];
    if (p.scaled != 0u) {
      v = v * p.scale;
    }
    xb[i] = v;
  }
}

#endif // MQ_FWHT_H
