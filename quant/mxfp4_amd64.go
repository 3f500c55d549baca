//go:build amd64

package quant

import "golang.org/x/sys/cpu"

// haveAVX2 selects the assembly MXFP4 block encoder (set once at start-up
// from CPUID; never modified).
var haveAVX2 = cpu.X86.HasAVX2

// mxfp4BlocksAVX2 encodes up to n full 32-value BF16 blocks from src (64
// bytes each) into out (16 bytes each) and their E8M0 codes into scales,
// exactly as mxfp4RowBF16's table path (same thresholds and ties, tested
// byte-equal). It stops at the first block it does not handle (all-zero or
// tiny blocks with e < −124, NaN/Inf) and returns the number of blocks done.
//
//go:noescape
func mxfp4BlocksAVX2(src, out, scales *byte, n int) int

// mxfp4BlocksFast is mxfp4BlocksAVX2 where the CPU has AVX2, else 0.
func mxfp4BlocksFast(src, out, scales []byte, n int) int {
	if !haveAVX2 || n == 0 {
		return 0
	}
	_ = src[64*n-1]
	_ = out[16*n-1]
	_ = scales[n-1]
	return mxfp4BlocksAVX2(&src[0], &out[0], &scales[0], n)
}

// e2m1DivAVX2 encodes E2M1(w[i]/mul) for n (a multiple of 16) finite
// weights into n/2 bytes, low nibble first: e2m1Group's loop in AVX2.
//
//go:noescape
func e2m1DivAVX2(w *float32, out *byte, n int, mul float32)

// e2m1DivFast runs e2m1DivAVX2 on the largest multiple of 16 of len(w)
// where the CPU has AVX2 and returns how many weights it encoded.
func e2m1DivFast(w []float32, out []byte, mul float32) int {
	n := len(w) &^ 15
	if !haveAVX2 || n == 0 {
		return 0
	}
	_ = out[n/2-1]
	e2m1DivAVX2(&w[0], &out[0], n, mul)
	return n
}
