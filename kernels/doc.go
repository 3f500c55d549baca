// Package kernels is the seam between marlin's math and the hardware: the
// Backend interface (SGEMM with transposes, fused dequant-GEMM/GEMV on packed
// quantized weights, blocked Walsh-Hadamard transforms, Cholesky, triangular
// solve/inverse, SPD inverse, and the RMSNorm/softmax/SwiGLU/RoPE/top-k
// helpers of the forward pass), a registry of backends by name, and the CPU
// backend, which is the reference and the default.
//
// # Selecting a backend
//
// Backends register from init functions (Register) into a table that is
// read-only afterwards; Open(name, opts) returns one: "cpu", "metal", or
// "auto" (the first accelerated backend that opens, else "cpu"). There is no
// process-wide current backend: callers pass the Backend they opened.
//
// # CPU backend
//
// SGEMM follows the BLIS design: five loops around a 6×16 micro-kernel over
// packed panels (KC=256, MC=120, NC=4096), with the parallel tasks being
// (row block × column chunk) pairs inside each packed B panel; m = 1 is a
// GEMV (dot products for op(B) = Bᵀ, 4-row axpy otherwise). On amd64
// CPUs with AVX2 and FMA (checked once with golang.org/x/sys/cpu) the
// micro-kernel, the Bᵀ panel transpose, dot/axpy, the FWHT butterflies,
// the 4-bit dequant kernels and a float32 exp (Cephes polynomial, ~3 ulp,
// used by softmax, SiLU and sigmoid) run in hand-written Go assembly
// (simd_amd64.s); elsewhere, and with the purego build tag, pure-Go
// kernels run, and the tests run both and compare them with naive float64
// references (the FWHT butterflies and dequantized tiles bit for bit).
//
// The assembly is written by hand rather than generated with avo: it is
// about 800 lines of straight-line AVX2 with no register allocation to
// automate, avo is not among the modules this project can fetch, and every
// routine has a pure-Go twin that the tests check it against. There is no
// AVX-512 kernel: not every machine this runs and is tested on has
// AVX-512 (the first development machine, AMD Zen 3, did not), and an
// AVX-512 twin of each routine would be code that CI may never run.
//
// The Cholesky, triangular solve and triangular inverse are recursive
// (cache-oblivious) algorithms that put nearly all their flops into the
// SGEMM above; their small base cases accumulate in float64.
//
// # Why not gonum
//
// gonum (in go.mod) is used by the tests as an independent float64
// reference for the factorizations. The backend does not call it: gonum's
// BLAS and LAPACK are float64-oriented pure Go (its Sgemm has no packed,
// register-blocked kernel and runs several times slower than the assembly
// micro-kernel here), and GPTQ, calibration and the forward pass work in
// float32 on matrices whose cost is dominated by GEMM.
//
// # Dequantization
//
// DequantGEMM takes the quant package's *quant.Packed directly (so kernels
// imports quant; quant must never import kernels — GPTQ lives in
// quant/gptq). Every weight value used is fl((element − zero)·Mul) with
// Mul exactly as quant.Packed.Group computes it, i.e. bit-identical to
// quant.Packed.Dequantize (tests compare every decoded tile bit for bit;
// only the summation order of the dot products differs). The paths:
//
//   - m < 8 (decode GEMV) of mxfp4, nvfp4, fp4, int4 and int4_asym weights
//     with a multiple of 256 columns (fp4 and int4 in groups of 32, 64 or
//     128), unless Options.F32Activations: the activations are quantized
//     to int8 in blocks of 32 (one float32 scale each, as llama.cpp's
//     Q8_0) and the dot products are exact integer sums over eight
//     columns (VPMADDUBSW on the codes' doubled values through VPSHUFB),
//     scaled once per group; see q8gemv.go. The error against the exact weights
//     is bounded by the activation rounding, Σ|w|·d_b/2, which the tests
//     check; on qwen3-nano MXFP4 the token-by-token perplexity moves by
//     0.035%. This is what makes 4-bit decode faster than F32 even when
//     the F32 weights fit in cache (2-2.5x per GEMV at 768×256, 6x at
//     4096×4096 on 2 cores).
//   - m < 8 otherwise, 4-bit codes in contiguous groups: fused
//     decode-and-dot assembly that never stores a weight. Where every
//     product of an element value and a group multiplier is exact (E2M1
//     or integer codes with E8M0, E4M3 or binary16 scales and no tensor
//     scale: fp4, mxfp4, int4, int4_asym), the multiplier is factored out
//     of each group: the kernel sums element·x per group and multiplies by
//     Mul once (integers: Mul·(Σ code·x − zero·Σx), with the per-group Σx
//     formed once per call in the kernel's own summation order, so a group
//     of zero-point codes gives exactly 0). E2M1 values come from their two
//     bfloat16 bytes through VPSHUFB; integer codes need no table at all
//     (broadcast, VPSRLVD, VCVTDQ2PS); 1-byte and binary16 (VCVTPH2PS)
//     scale codes are read by the kernels themselves. The result equals
//     Σ w·x with w bit-identical to quant's up to float32 rounding of the
//     sums (within the tested tolerance). Other scales use the same
//     bfloat16 decode with one VSUBPS/VMULPS per vector; NF4, NVFP4
//     (groups of 16) and the rest use per-group 16-entry tables with
//     VPERMPS.
//   - m ≥ 8 (prefill, calibration): X is packed once and W is decoded
//     gemmKC columns at a time straight into packed GEMM panels, which the
//     SGEMM micro-kernel consumes; decoding costs one pass over W however
//     large m is.
//   - every other shape or format (3/2/8-bit, fp8, act-order g_idx, odd
//     group sizes): per-group tables of 2^bits values in Go, decoded into
//     L1/L2-sized tiles; bf16/f16 tiles come from
//     quant.Packed.DequantizeRow itself.
//
// No full F32 copy of a weight is ever made.
package kernels
