// mq_compat.h: the dialect shared by Metal Shading Language and C.
//
// Every header in this directory is compiled twice: by Apple's Metal
// compiler (from the .metal files, at run time through newLibraryWithSource)
// and by a C11 compiler (gcc/clang through cgo) in the Linux tests, where the
// kernels run under the grid emulator in emu.c. Write only code that means
// the same in both:
//   - scalar types float, half, uint, ushort, uchar, int, bool; no vector types
//     except uint3 member access (.x .y .z);
//   - pointers carry an address-space macro (MTL_DEVICE, MTL_THREADGROUP,
//     MTL_CONSTANT, MTL_THREAD) that is empty in C;
//   - functions are MQ_FN (static inline); structs are typedef'd; parameters
//     are passed by value;
//   - half arithmetic is done in float: parameters of type half are avoided
//     because Apple's compiler rounds fractional half inline arguments, and
//     C (gcc's _Float16) and MSL may differ in excess precision;
//   - bit casts go through mq_as_float/mq_as_uint/mq_half_bits_to_float;
//   - barriers, SIMD-group reductions and simdgroup_matrix operations go
//     through the MQ_ macros below, which are the Metal built-ins on the GPU
//     and the emulator's functions in C.
#ifndef MQ_COMPAT_H
#define MQ_COMPAT_H

#ifdef __METAL_VERSION__
// ---------------------------------------------------------------- Metal side
#include <metal_stdlib>
#include <metal_simdgroup>
#include <metal_simdgroup_matrix>
using namespace metal;

#define MTL_DEVICE device
#define MTL_THREADGROUP threadgroup
#define MTL_CONSTANT constant
#define MTL_THREAD thread
#define MQ_FN static inline
#define MQ_TABLE constant

MQ_FN float mq_as_float(uint u) { return as_type<float>(u); }
MQ_FN uint mq_as_uint(float f) { return as_type<uint>(f); }
MQ_FN float mq_half_bits_to_float(ushort h) { return float(as_type<half>(h)); }
MQ_FN ushort mq_float_to_half_bits(float f) { return as_type<ushort>(half(f)); }

#define MQ_TG_BARRIER() threadgroup_barrier(mem_flags::mem_threadgroup)
#define MQ_SIMD_SUM(v) simd_sum(v)
#define MQ_SIMD_MAX(v) simd_max(v)
#define MQ_SIMD_MIN_U(v) simd_min(v)
#define MQ_SIMD_MAX_U(v) simd_max(v)
#define MQ_EXP(x) precise::exp(x)
#define MQ_SIMD_SHUFFLE_XOR(v, m) simd_shuffle_xor((v), (ushort)(m))

typedef simdgroup_float8x8 mq_sgmat;
#define MQ_SG_ZERO(m) ((m) = make_filled_simdgroup_matrix<float, 8, 8>(0.0f))
#define MQ_SG_LOAD(m, p, stride) simdgroup_load((m), (p), (stride))
#define MQ_SG_STORE(m, p, stride) simdgroup_store((m), (p), (stride))
#define MQ_SG_MMA(d, a, b, c) simdgroup_multiply_accumulate((d), (a), (b), (c))

#else
// -------------------------------------------------------------------- C side
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <math.h>

#define MTL_DEVICE
#define MTL_THREADGROUP
#define MTL_CONSTANT
#define MTL_THREAD
#define MQ_FN static inline
#define MQ_TABLE static const

typedef unsigned int uint;
typedef unsigned short ushort;
typedef unsigned char uchar;
typedef _Float16 half;
typedef struct {
  uint x, y, z;
} uint3;

MQ_FN float mq_as_float(uint u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
MQ_FN uint mq_as_uint(float f) {
  uint u;
  memcpy(&u, &f, 4);
  return u;
}
MQ_FN float mq_half_bits_to_float(ushort h) {
  half x;
  memcpy(&x, &h, 2);
  return (float)x;
}
MQ_FN ushort mq_float_to_half_bits(float f) {
  half x = (half)f;
  ushort h;
  memcpy(&h, &x, 2);
  return h;
}

// The emulator (emu.c) implements these for the thread that is running.
void emu_tg_barrier(void);
float emu_simd_sum(float v);
float emu_simd_max(float v);
uint emu_simd_min_u(uint v);
uint emu_simd_max_u(uint v);
float emu_simd_shuffle_xor(float v, uint mask);

#define MQ_TG_BARRIER() emu_tg_barrier()
#define MQ_SIMD_SUM(v) emu_simd_sum(v)
#define MQ_SIMD_MAX(v) emu_simd_max(v)
#define MQ_SIMD_MIN_U(v) emu_simd_min_u(v)
#define MQ_SIMD_MAX_U(v) emu_simd_max_u(v)
#define MQ_EXP(x) expf(x)
#define MQ_SIMD_SHUFFLE_XOR(v, m) emu_simd_shuffle_xor((v), (m))

// A simdgroup_float8x8 is distributed over the 32 lanes of a SIMD group on
// the GPU. The emulator gives every lane a full copy and makes every lane do
// the whole operation: the results are the same as long as the SIMD group
// executes the operation uniformly, which Metal requires anyway.
typedef struct {
  float v[64];
} mq_sgmat;
void emu_sg_load(mq_sgmat *m, const float *p, uint stride);
void emu_sg_store(const mq_sgmat *m, float *p, uint stride);
void emu_sg_mma(mq_sgmat *d, const mq_sgmat *a, const mq_sgmat *b, const mq_sgmat *c);
#define MQ_SG_ZERO(m) memset(&(m), 0, sizeof(m))
#define MQ_SG_LOAD(m, p, stride) emu_sg_load(&(m), (p), (stride))
#define MQ_SG_STORE(m, p, stride) emu_sg_store(&(m), (p), (stride))
#define MQ_SG_MMA(d, a, b, c) emu_sg_mma(&(d), &(a), &(b), &(c))
#endif

MQ_FN uint mq_min_u(uint a, uint b) { return a < b ? a : b; }
MQ_FN uint mq_max_u(uint a, uint b) { return a > b ? a : b; }
MQ_FN uint mq_ceil_div(uint a, uint b) { return (a + b - 1) / b; }

#endif // MQ_COMPAT_H
