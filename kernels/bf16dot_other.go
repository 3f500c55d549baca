//go:build !amd64 || purego

package kernels

func bf16DotHoistSIMD(xd []float32, codes []byte, ngroups, gs int, planes *[64]byte, muls []float32) float32 {
	panic("kernels: bf16DotHoistSIMD without SIMD")
}

func bf16DotHoistS1SIMD(xd []float32, codes []byte, ngroups, gs int, planes *[64]byte, scodes []byte, mul1 *[256]float32) float32 {
	panic("kernels: bf16DotHoistS1SIMD without SIMD")
}

func bf16Dot32S1SIMD(xd []float32, codes []byte, ngroups int, planes *[64]byte, scodes []byte, mul1 *[256]float32) float32 {
	panic("kernels: bf16Dot32S1SIMD without SIMD")
}
