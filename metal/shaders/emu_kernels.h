// emu_kernels.h: the emulator's view of marlin.metal: argument blocks and
// kernel ids for mqemu_run (see emu_kernels.c).
#ifndef MQ_EMU_KERNELS_H
#define MQ_EMU_KERNELS_H

#include "mq_fwht.h"
#include "mq_gemm.h"
#include "mq_moe.h"

enum {
  MQEMU_DEQUANT = 0,
  MQEMU_GEMM = 1,
  MQEMU_GEMV = 2,
  MQEMU_FWHT_SIMD = 3,
  MQEMU_FWHT_TG = 4,
  MQEMU_ROUTER = 5,
  MQEMU_MOE_GEMM = 6,
  // Deliberately broken kernels that test the emulator itself.
  MQEMU_TEST_DIVERGE = 100, // odd threads return before a barrier
  MQEMU_TEST_RACE = 101,    // reads a neighbour's threadgroup slot without a barrier
  MQEMU_TEST_SGLOAD = 102,  // lanes of a SIMD group load different matrices
};

// Arguments of the quantized-weight kernels (dequant, gemm, gemv, moe_gemm).
typedef struct {
  mq_qparams p;
  const uchar *W, *S, *Z;
  const int *G;
  const float *X;
  float *C; // output (dequant writes rows×cols floats here)
  const uint *offsets, *rowmap;
  uint scale_bytes;
} mqemu_qargs;

typedef struct {
  mq_fwht_params p;
  float *x;
} mqemu_fwht_args;

typedef struct {
  mq_router_params p;
  const float *logits, *bias;
  uint *idx;
  float *w;
} mqemu_router_args;

// mqemu_run launches kernel over gx×gy×gz threadgroups of tx×ty×tz threads
// with the threadgroup memory the Metal entry declares. 0 or -1 + err.
int mqemu_run(int kernel, void *args, uint gx, uint gy, uint gz, uint tx, uint ty, uint tz,
              int order, char *err, int errlen);

#endif
