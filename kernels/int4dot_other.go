//go:build !amd64 || purego

package kernels

// haveF16C is false without the assembly kernels.
const haveF16C = false

func int4DotSIMD(x []float32, codes []byte, ngroups, gs int, xsv, muls, offs []float32) float32 {
	return int4DotGo(x, codes, ngroups, gs, xsv, muls, offs)
}

func int4DotS16SIMD(x []float32, codes []byte, ngroups, gs int, xsv []float32, scodes, zeros []byte, zstride int) (float32, bool) {
	return 0, false
}
