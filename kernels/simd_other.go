//go:build !amd64 || purego

package kernels

// haveSIMD reports whether the assembly kernels can run: never on this
// platform or with the purego build tag.
const haveSIMD = false

func microKernelSIMD(kc int, ap, bp, c []float32, ldc int) { microKernelGo(kc, ap, bp, c, ldc) }

func dotF32(x, y []float32) float32 { return dotGo(x, y) }

func axpyF32(a float32, x, y []float32) { axpyGo(a, x, y) }

func fwhtSIMD(x []float32, log2Block int, scale float32) { fwhtGo(x, log2Block, scale) }

func lut4DecodeSIMD(dst []float32, codes []byte, ngroups, gs int, base *[16]float32, muls, offs []float32) {
	panic("kernels: lut4DecodeSIMD without SIMD")
}

func lut4DotSIMD(xd []float32, codes []byte, ngroups, gs int, base *[16]float32, muls, offs []float32) float32 {
	panic("kernels: lut4DotSIMD without SIMD")
}

func axpy4F32(x *[4]float32, b []float32, ldb int, y []float32) { axpy4Go(x, b, ldb, y) }

func packBT16(dst, b []float32, ldb, kc int) int { return 0 }

func packB16(dst, b []float32, ldb, kc int) bool { return false }

func lut4DotBF16SIMD(xd []float32, codes []byte, ngroups, gs int, planes *[64]byte, muls, offs []float32) float32 {
	panic("kernels: lut4DotBF16SIMD without SIMD")
}

func expF32(dst, x []float32) {
	dst = dst[:len(x)]
	for i, v := range x {
		dst[i] = expGo(v)
	}
}

func dgemmKernelSIMD(kc int, ap, bp, c []float64, ldc int) { dgemmKernelGo(kc, ap, bp, c, ldc) }
