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
