// Package quant defines marlin's number formats bit for bit, their packing,
// round-to-nearest (RTN) quantization with optional scale search, and error
// reports. Methods (quant/gptq), kernels (kernels/, metal/) and exporters
// build on this API; they should mirror the codecs here exactly.
//
// # Formats
//
// A Format (registry: Lookup, Names) describes an element encoding (Elem,
// Bits), a group size along the input dimension (0 = one group per row), a
// scale encoding (ScaleType), an optional FP32 tensor scale and optional
// zero points:
//
//	name        elem   bits  group  scale           notes
//	fp4         E2M1   4     128    F16             native Marlin FP4, s = absmax/6
//	mxfp4       E2M1   4     32*    E8M0            OCP MX v1.0, s = 2^(floor(log2 amax) − 2)
//	nvfp4       E2M1   4     16*    E4M3 + FP32     g = amax(T)/(6·448), s = e4m3(amax/6/g)
//	int4/3/2    int    4/3/2 128    F16             symmetric, s = absmax/(2^(b−1)−1)
//	int*_asym   int    4/3/2 128    F16 + U8 zero   GPTQ min/max rule
//	int8        int    8     128    F16             symmetric
//	nf4 / nf3   NF     4/3   64     F16             QLoRA level tables, s = absmax
//	fp8_e4m3    E4M3   8     row    F32             OCP E4M3FN, s = absmax/448
//	fp8_e5m2    E5M2   8     row    F32             OCP E5M2, s = absmax/57344
//	fp8_*_tensor E4M3/E5M2 8 row*   F32             one s = absmax(T)/max for the tensor,
//	                                                stored in every row (PerTensor)
//	bf16, f16   -      16    -      -               kept (rounded to the type)
//
// (* fixed by the spec.) WithGroupSize and WithScale derive variants
// (e.g. int4 with F32 scales, which is what the golden `rtn_int4_g128_sym`
// perplexities use). BitsPerWeight counts elements, scales, zeros and the
// tensor scale.
//
// # Codecs
//
// The element codecs are small pure functions and tables that kernels can
// copy: E2M1Values/EncodeE2M1 (RNE to the even code, saturating at ±6),
// EncodeE4M3/EncodeE5M2/E4M3Values/E5M2Values (OCP FP8, RNE, saturating;
// NaN kept), EncodeE8M0/DecodeE8M0/MXSharedExp (OCP MX shared exponent,
// exact from the float bits), NF4Values/NF3Values (and NormalMap, their
// construction), EncodeF16/EncodeBF16 (RNE). The FP8, F16 and BF16 codecs
// wrap package tensor's conversions (F16 via github.com/x448/float16), with
// E5M2 saturation added; the rest is hand-written because each is a few
// lines whose exact rounding and saturation the spec fixes and which no
// Go library provides for FP4/E8M0.
//
// # Packing
//
// Packed holds one quantized [Rows, Cols] weight: Codes (rows byte-aligned,
// each row a little-endian bit stream, nibbles low first: the GPTQ int32
// packing read byte-wise; GPTQWords gives GPTQ's transposed qweight words),
// Scales (encoded, row-major [Rows, Groups]), Zeros (asymmetric),
// TensorScale (NVFP4) and an optional act-order GIdx. Dequantize and
// DequantizeRow define the value of every code. ToTensors/FromTensors
// convert to self-describing tensor.Tensors (Meta keys Meta*), which is what
// the quantize stage checkpoints and the exporters read; FromTensors
// validates everything (fuzzed).
//
// # RTN
//
// Quantize, QuantizeContext and QuantizeTensor (BF16/F16/F32 input, streamed
// row by row, optionally parallel) fit each group's scale (FitGroup) and
// round every element to the nearest grid point, ties to even
// (QuantizeValue). Options.ScaleSearch searches clipping ratios per group
// (DefaultClipRatios) for the least squared error. NaN/Inf weights are an
// error (*NonFiniteError, naming tensor, row and column) unless
// Options.NonFinite is NonFinitePass. Measure produces a Report (MSE, max
// abs error, cosine, SQNR dB, bits per weight); Summarize aggregates a
// model's reports (average bits per weight, formats chosen).
//
// Speed: MXFP4 has table paths (the block scale is a power of two, so
// scaling only shifts exponent bits and the E2M1 code is a lookup in a
// 641-entry table indexed by the shifted BF16 bits; float32 inputs use their
// BF16 truncation plus a round-up bit for the ties that round down; BF16
// block absmax is a SIMD-within-a-register max), tested against
// EncodeE2M1 and byte-equal across the BF16 and float32 paths. On amd64
// with AVX2, runs of ordinary BF16 blocks go through an assembly encoder
// (mxfp4_amd64.s: the seven E2M1 thresholds, shifted by the block exponent,
// compared in 16-bit lanes), tested byte-equal to the Go path; assembly is
// used because Go does not vectorise and this loop is the quantize stage's
// hot path for the default format. fp4/nvfp4 groups likewise divide and
// encode 16 weights at a time in AVX2 (e2m1_amd64.s; VDIVPS rounds as the
// scalar division). Other formats use branch-free
// per-group loops (division by the scale, as the reference definitions).
// BenchmarkQuantizeBF16 reports GB/s of BF16 input per format, single core
// and all cores, plus GB per CPU-second for loaded machines.
//
// # Verification
//
// Known-answer tests per format (from the specs: zero, ±max, saturation,
// subnormals, halfway ties, NaN/Inf, all-zero groups), exhaustive FP4/FP8
// round trips, brute-force nearest-value checks, byte-equality with PyTorch
// on 10^6 values per codec (testdata/xcheck.json, made by
// testdata/xcheck.py: torch float8 casts, README definitions of MXFP4 and
// NVFP4), and bit-exact dequantized weights of the golden RTN recipes on the
// three nano models (testdata/rtn_reference.json).
//
// # What GPTQ uses
//
// GPTQ quantizes column by column and picks a group's scale when it reaches
// the group's first column (with act-order, the first column of the group in
// the permuted order; the group of original column c is then GIdx[c]):
//
//	p, _ := quant.NewPacked(f, rows, cols)
//	p.TensorScale = f.TensorScaleFor(absmax(W)) // NVFP4: fix before any group
//	gs := f.FitGroup(W[r][group columns], p.TensorScale, &quant.FitOptions{ClipRatios: ..., Weights: hdiag})
//	p.SetGroup(r, g, gs)
//	code, deq := f.QuantizeValue(w, gs)         // per element; deq feeds the error update
//	p.SetCode(r, c, code)
//	p.GIdx = gidx                               // act-order only
//
// FitGroup only reads the slice it is given, so GPTQ may pass the current
// (error-updated) weights. Everything here is safe for concurrent use on
// distinct rows; no package state is mutable.
package quant
