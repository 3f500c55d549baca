// mq_formats.h: element decoders, scale decoders and the dequantization of
// one weight of a packed tensor, shared by MSL and C (see mq_compat.h).
//
// Packed layout (quant.Packed): a rows×cols weight (out×in features) is
// stored row by row, each row padded to whole bytes (row_bytes =
// ceil(cols·bits/8)); inside a row element k occupies bits [k·bits,
// (k+1)·bits) of a little-endian bit stream (for 4-bit formats: the low
// nibble of byte k/2 holds the even element). Scales are one per (row,
// group), row-major, little-endian, in the encoding scale_type; zero points
// (asymmetric integer formats) are one byte per (row, group).
//
// Value of a weight, always computed in float:
//   E2M1, NF:    level[code] · scale
//   INT:         (code − zero) · scale, zero = 2^(bits−1) when symmetric
//   E4M3, E5M2:  fp8(code) · scale
//   NVFP4:       e2m1(code) · (e4m3(scale) · tensor_scale)
// exactly as quant.Packed.DequantizeRow: the group multiplier Mul is the
// decoded scale (times the FP32 tensor scale, rounded to float), then one
// float multiplication by the level. Columns map to groups by k / group,
// or through the g_idx table (GPTQ act-order) when has_gidx.
#ifndef MQ_FORMATS_H
#define MQ_FORMATS_H

#include "mq_compat.h"

// Element encodings: the values of quant.Elem.
#define MQ_ELEM_E2M1 1
#define MQ_ELEM_INT 2
#define MQ_ELEM_NF 3
#define MQ_ELEM_E4M3 4
#define MQ_ELEM_E5M2 5

// Scale encodings: the values of quant.ScaleType.
#define MQ_SCALE_NONE 0
#define MQ_SCALE_F16 1
#define MQ_SCALE_BF16 2
#define MQ_SCALE_F32 3
#define MQ_SCALE_E8M0 4
#define MQ_SCALE_E4M3 5

// mq_qparams describes a packed weight and the product it takes part in.
// Only 32-bit fields, so the layout is the same in MSL, C and Go
// (launch.QParams).
typedef struct {
  uint elem;       // MQ_ELEM_*
  uint bits;       // element width: 2, 3, 4 or 8
  uint scale_type; // MQ_SCALE_*
  uint asym;       // 1: per-group zero points in Z
  uint rows;       // N, output features
  uint cols;       // K, input features
  uint group;      // effective group size along K (cols when per-row)
  uint ngroups;    // ceil(cols / group)
  uint row_bytes;  // ceil(cols·bits / 8)
  uint has_tscale; // 1: multiply by tscale (NVFP4)
  float tscale;    // FP32 tensor scale
  uint m;          // rows of X and C (GEMM/GEMV)
  uint ldx;        // leading dimension of X (elements)
  uint ldc;        // leading dimension of C (elements)
  float beta;      // C = X·Wᵀ + beta·C; beta == 0 overwrites C
  uint experts;    // MoE: number of experts (weights stacked expert-major)
  uint has_gidx;   // 1: group of column k is G[k] (act-order), else k / group
  uint pad0, pad1, pad2;
} mq_qparams;

MQ_TABLE float mq_e2m1_values[16] = {
    0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
    -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f,
};

// NF4: the QLoRA table (bitsandbytes); NF3: quant.NF3Values.
MQ_TABLE float mq_nf4_values[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f,
};
MQ_TABLE float mq_nf3_values[8] = {
    -1.0f, -0.47862917f, -0.21714182f, 0.0f, 0.16093017f, 0.33791518f, 0.56261694f, 1.0f,
};

#define MQ_NAN_BITS 0x7fc00000u

// mq_e2m1 decodes a 4-bit FP4 E2M1 code.
MQ_FN float mq_e2m1(uint c) { return mq_e2m1_values[c & 15u]; }

// mq_e4m3 decodes an OCP FP8 E4M3 (E4M3FN) code: bias 7, no infinities,
// S.1111.111 is NaN, exponent 0 is subnormal (m·2^-9).
MQ_FN float mq_e4m3(uint c) {
  uint s = (c & 0x80u) << 24;
  uint e = (c >> 3) & 15u;
  uint m = c & 7u;
  if (e == 15u && m == 7u) {
    return mq_as_float(s | MQ_NAN_BITS);
  }
  float v;
  if (e == 0u) {
    v = (float)m * 0.001953125f; // 2^-9, exact
  } else {
    v = mq_as_float(((e + 120u) << 23) | (m << 20));
  }
  return mq_as_float(mq_as_uint(v) | s);
}

// mq_e5m2 decodes an OCP FP8 E5M2 code: bias 15, IEEE-like (0x7C is Inf,
// 0x7D..0x7F NaN), exponent 0 is subnormal (m·2^-16).
MQ_FN float mq_e5m2(uint c) {
  uint s = (c & 0x80u) << 24;
  uint e = (c >> 2) & 31u;
  uint m = c & 3u;
  if (e == 31u) {
    return mq_as_float(s | (m == 0u ? 0x7f800000u : MQ_NAN_BITS));
  }
  float v;
  if (e == 0u) {
    v = (float)m * 0.0000152587890625f; // 2^-16, exact
  } else {
    v = mq_as_float(((e + 112u) << 23) | (m << 21));
  }
  return mq_as_float(mq_as_uint(v) | s);
}

// mq_e8m0 decodes an OCP MX E8M0 scale: 2^(c−127), 255 is NaN; 2^-127 is a
// float subnormal (exact). Built from bits: no ldexp, no rounding.
MQ_FN float mq_e8m0(uint c) {
  if (c == 255u) {
    return mq_as_float(MQ_NAN_BITS);
  }
  if (c == 0u) {
    return mq_as_float(0x00400000u);
  }
  return mq_as_float(c << 23);
}

MQ_FN float mq_bf16_bits_to_float(uint b) { return mq_as_float((b & 0xffffu) << 16); }

// mq_load_scale reads the idx-th scale of S in encoding stype.
MQ_FN float mq_load_scale(MTL_DEVICE const uchar *S, uint idx, uint stype) {
  if (stype == MQ_SCALE_F16) {
    uint b = (uint)S[2u * idx] | ((uint)S[2u * idx + 1u] << 8);
    return mq_half_bits_to_float((ushort)b);
  }
  if (stype == MQ_SCALE_BF16) {
    uint b = (uint)S[2u * idx] | ((uint)S[2u * idx + 1u] << 8);
    return mq_bf16_bits_to_float(b);
  }
  if (stype == MQ_SCALE_F32) {
    uint b = (uint)S[4u * idx] | ((uint)S[4u * idx + 1u] << 8) | ((uint)S[4u * idx + 2u] << 16) |
             ((uint)S[4u * idx + 3u] << 24);
    return mq_as_float(b);
  }
  if (stype == MQ_SCALE_E8M0) {
    return mq_e8m0((uint)S[idx]);
  }
  if (stype == MQ_SCALE_E4M3) {
    return mq_e4m3((uint)S[idx]);
  }
  return 1.0f;
}

// mq_load_code extracts the code of element k from the row starting at
// byte row (LSB-first bit stream).
MQ_FN uint mq_load_code(MTL_DEVICE const uchar *W, uint row, uint k, uint bits) {
  if (bits == 8u) {
    return (uint)W[row + k];
  }
  if (bits == 4u) {
    return ((uint)W[row + (k >> 1)] >> ((k & 1u) * 4u)) & 15u;
  }
  uint bit = k * bits;
  uint at = bit >> 3;
  uint sh = bit & 7u;
  uint v = (uint)W[row + at] >> sh;
  if (sh + bits > 8u) {
    v |= (uint)W[row + at + 1u] << (8u - sh);
  }
  return v & ((1u << bits) - 1u);
}

// mq_level returns the unscaled value of a code; zero is the integer zero
// point (ignored by the floating formats).
MQ_FN float mq_level(uint elem, uint bits, uint code, uint zero) {
  if (elem == MQ_ELEM_E2M1) {
    return mq_e2m1(code);
  }
  if (elem == MQ_ELEM_INT) {
    return (float)((int)code - (int)zero);
  }
  if (elem == MQ_ELEM_NF) {
    return bits == 3u ? mq_nf3_values[code & 7u] : mq_nf4_values[code & 15u];
  }
  if (elem == MQ_ELEM_E4M3) {
    return mq_e4m3(code);
  }
  if (elem == MQ_ELEM_E5M2) {
    return mq_e5m2(code);
  }
  return mq_as_float(MQ_NAN_BITS);
}

// mq_group_zero returns the integer zero point of group gi (flat index).
MQ_FN uint mq_group_zero(mq_qparams p, MTL_DEVICE const uchar *Z, uint gi) {
  if (p.elem != MQ_ELEM_INT) {
    return 0u;
  }
  return p.asym != 0u ? (uint)Z[gi] : (1u << (p.bits - 1u));
}

// mq_group_mul returns the multiplier of group gi (flat index): the decoded
// scale, times the tensor scale when there is one.
MQ_FN float mq_group_mul(mq_qparams p, MTL_DEVICE const uchar *S, uint gi) {
  float s = mq_load_scale(S, gi, p.scale_type);
  if (p.has_tscale != 0u) {
    s = s * p.tscale;
  }
  return s;
}

// mq_group_index returns the flat index of the group of element (n, k).
MQ_FN uint mq_group_index(mq_qparams p, MTL_DEVICE const int *G, uint n, uint k) {
  uint g = p.has_gidx != 0u ? (uint)G[k] : k / p.group;
  return n * p.ngroups + g;
}

// mq_dq_elem dequantizes element (n, k) of the packed weight.
MQ_FN float mq_dq_elem(mq_qparams p, MTL_DEVICE const uchar *W, MTL_DEVICE const uchar *S,
                       MTL_DEVICE const uchar *Z, MTL_DEVICE const int *G, uint n, uint k) {
  uint gi = mq_group_index(p, G, n, k);
  uint code = mq_load_code(W, n * p.row_bytes, k, p.bits);
  float level = mq_level(p.elem, p.bits, code, mq_group_zero(p, Z, gi));
  return level * mq_group_mul(p, S, gi);
}

// mq_int_magic returns code − zero exactly with the magic-bias trick:
// 0x4B000000 is 2^23 as a float, so OR-ing a small integer into its
// mantissa yields 2^23 + code, and subtracting 2^23 + zero leaves
// code − zero without an integer-to-float conversion (the classic INT4
// dequantization trick; its half variant uses 0x6400 = 1024).
MQ_FN float mq_int_magic(uint code, uint zero) {
  return mq_as_float(0x4B000000u | code) - mq_as_float(0x4B000000u | zero);
}

// mq_dq_run dequantizes the 8 elements k0..k0+7 of row n into out; k0 must
// be a multiple of 8 (every caller's runs are), elements at k ≥ cols or
// n ≥ rows read as 0. A full run inside one group (no g_idx) of 2-, 3-, 4-
// or 8-bit codes takes the fast path: its codes are `bits` whole bytes,
// read once into two 32-bit words (no code straddles them for these
// widths), the group multiplier and zero point are read once, and integers
// use the magic-bias trick. Other runs go element by element.
MQ_FN void mq_dq_run(mq_qparams p, MTL_DEVICE const uchar *W, MTL_DEVICE const uchar *S,
                     MTL_DEVICE const uchar *Z, MTL_DEVICE const int *G, uint n, uint k0,
                     MTL_THREAD float *out) {
  if (n >= p.rows) {
    for (uint i = 0u; i < 8u; i++) {
      out[i] = 0.0f;
    }
    return;
  }
  uint b = p.bits;
  if ((b == 2u || b == 3u || b == 4u || b == 8u) && p.has_gidx == 0u && k0 + 8u <= p.cols &&
      k0 / p.group == (k0 + 7u) / p.group) {
    uint gi = n * p.ngroups + k0 / p.group;
    MTL_DEVICE const uchar *src = W + n * p.row_bytes + k0 / 8u * b;
    uint lo = 0u;
    uint hi = 0u;
    for (uint j = 0u; j < b; j++) {
      uint v = (uint)src[j];
      if (j < 4u) {
        lo |= v << (8u * j);
      } else {
        hi |= v << (8u * (j - 4u));
      }
    }
    uint mask = (1u << b) - 1u;
    float mul = mq_group_mul(p, S, gi);
    uint zero = mq_group_zero(p, Z, gi);
    for (uint i = 0u; i < 8u; i++) {
      uint sh = i * b;
      uint code = (sh < 32u ? lo >> sh : hi >> (sh - 32u)) & mask;
      float level = p.elem == MQ_ELEM_INT ? mq_int_magic(code, zero) : mq_level(p.elem, b, code, 0u);
      out[i] = level * mul;
    }
    return;
  }
  for (uint i = 0u; i < 8u; i++) {
    uint k = k0 + i;
    out[i] = k < p.cols ? mq_dq_elem(p, W, S, Z, G, n, k) : 0.0f;
  }
}

#endif // MQ_FORMATS_H
