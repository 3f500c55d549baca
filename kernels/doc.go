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
// (row block × column chunk) pairs inside each packed B panel. On amd64
// CPUs with AVX2 and FMA (checked once with golang.org/x/sys/cpu) the
// micro-kernel, dot/axpy and the FWHT butterflies run in hand-written Go
// assembly; elsewhere, and with the purego build tag, pure-Go kernels run
// (tests compare the two). There is no AVX-512 kernel: the development and
// CI machines (AMD Zen 3) lack AVX-512, and assembly that cannot be run
// here cannot be tested here.
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
// DequantGEMM takes any QuantMatrix (the quant package's packed tensors
// implement it). The generic path dequantizes L1/L2-sized tiles through
// QuantMatrix.DequantizeTile and multiplies them at once, so no full F32
// copy of the weight is ever made and the values used are bit-identical to
// the format's own dequantization.
package kernels
