// marlin.metal: the Metal entry points. Each kernel only binds its
// arguments, declares its threadgroup memory and calls the body from the
// shared headers; the Linux emulator (emu_kernels.c) calls the same bodies.
// Buffer indices and grid shapes are set by the host (package launch: Bindings, Plan*).
#include "mq_compat.h"
#include "mq_formats.h"
#include "mq_gemm.h"
#include "mq_fwht.h"
#include "mq_moe.h"

kernel void mq_dequant(constant mq_qparams &p [[buffer(0)]],
                       device const uchar *W [[buffer(1)]],
                       device const uchar *S [[buffer(2)]],
                       device const uchar *Z [[buffer(3)]],
                       device const int *G [[buffer(4)]],
                       device float *out [[buffer(5)]],
                       uint3 gid [[thread_position_in_grid]]) {
  mq_dequant_body(p, W, S, Z, G, out, gid.x, gid.y);
}

kernel void mq_gemm(constant mq_qparams &p [[buffer(0)]],
                    device const float *X [[buffer(1)]],
                    device const uchar *W [[buffer(2)]],
                    device const uchar *S [[buffer(3)]],
                    device const uchar *Z [[buffer(4)]],
                    device const int *G [[buffer(5)]],
                    device float *C [[buffer(6)]],
                    uint3 tg [[threadgroup_position_in_grid]],
                    uint tid [[thread_index_in_threadgroup]],
                    uint sg [[simdgroup_index_in_threadgroup]]) {
  threadgroup float xs[MQ_GEMM_XS_FLOATS];
  threadgroup float ws[MQ_GEMM_WS_FLOATS];
  mq_gemm_body(p, X, W, S, Z, G, C, (device const uint *)X, 0u, 0u, p.m, tg.x, tg.y, xs, ws, tid, sg);
}

kernel void mq_gemv(constant mq_qparams &p [[buffer(0)]],
                    device const float *X [[buffer(1)]],
                    device const uchar *W [[buffer(2)]],
                    device const uchar *S [[buffer(3)]],
                    device const uchar *Z [[buffer(4)]],
                    device const int *G [[buffer(5)]],
                    device float *C [[buffer(6)]],
                    uint3 tg [[threadgroup_position_in_grid]],
                    uint lane [[thread_index_in_simdgroup]],
                    uint sg [[simdgroup_index_in_threadgroup]]) {
  mq_gemv_body(p, X, W, S, Z, G, C, tg.x, tg.y, lane, sg);
}

kernel void mq_fwht_simd(constant mq_fwht_params &p [[buffer(0)]],
                         device float *x [[buffer(1)]],
                         uint3 gid [[thread_position_in_grid]],
                         uint lane [[thread_index_in_simdgroup]]) {
  mq_fwht_simd_body(p, x, gid.x, lane);
}

kernel void mq_fwht_tg(constant mq_fwht_params &p [[buffer(0)]],
                       device float *x [[buffer(1)]],
                       uint3 tg [[threadgroup_position_in_grid]],
                       uint tid [[thread_index_in_threadgroup]],
                       uint3 tptg [[threads_per_threadgroup]]) {
  threadgroup float s[MQ_FWHT_TG_FLOATS];
  mq_fwht_tg_body(p, x, s, tg.x, tid, tptg.x);
}

kernel void mq_router_topk(constant mq_router_params &p [[buffer(0)]],
                           device const float *logits [[buffer(1)]],
                           device const float *bias [[buffer(2)]],
                           device uint *out_idx [[buffer(3)]],
                           device float *out_w [[buffer(4)]],
                           uint3 tg [[threadgroup_position_in_grid]],
                           uint lane [[thread_index_in_simdgroup]],
                           uint sg [[simdgroup_index_in_threadgroup]]) {
  mq_router_body(p, logits, bias, out_idx, out_w, tg.x, lane, sg);
}

kernel void mq_moe_gemm(constant mq_qparams &p [[buffer(0)]],
                        device const float *X [[buffer(1)]],
                        device const uchar *W [[buffer(2)]],
                        device const uchar *S [[buffer(3)]],
                        device const uchar *Z [[buffer(4)]],
                        device const int *G [[buffer(5)]],
                        device float *C [[buffer(6)]],
                        device const uint *offsets [[buffer(7)]],
                        device const uint *rowmap [[buffer(8)]],
                        constant uint &scale_bytes [[buffer(9)]],
                        uint3 tg [[threadgroup_position_in_grid]],
                        uint tid [[thread_index_in_threadgroup]],
                        uint sg [[simdgroup_index_in_threadgroup]]) {
  threadgroup float xs[MQ_GEMM_XS_FLOATS];
  threadgroup float ws[MQ_GEMM_WS_FLOATS];
  mq_moe_gemm_body(p, X, W, S, Z, G, C, offsets, rowmap, tg.x, tg.y, tg.z, xs, ws, tid, sg,
                   scale_bytes);
}
