//go:build amd64 && !purego

package kernels

//go:noescape
func bf16DotHoistAVX(x *float32, codes *byte, ngroups, gs int, planes *[64]byte, muls *float32) float32

// bf16DotHoistSIMD returns Σ_g muls[g]·Σ_{e∈g} base[code[e]]·x[e] over
// ngroups whole groups (gs a multiple of 32) for element tables exact in
// bfloat16 with no zero point (E2M1); xd is x permuted by deinterleave8.
func bf16DotHoistSIMD(xd []float32, codes []byte, ngroups, gs int, planes *[64]byte, muls []float32) float32 {
	if ngroups == 0 {
		return 0
	}
	n := ngroups * gs
	_ = xd[n-1]
	_ = codes[n/2-1]
	_ = muls[ngroups-1]
	return bf16DotHoistAVX(&xd[0], &codes[0], ngroups, gs, planes, &muls[0])
}

//go:noescape
func bf16DotHoistS1AVX(x *float32, codes *byte, ngroups, gs int, planes *[64]byte, scodes *byte, mul1 *[256]float32) float32

// bf16DotHoistS1SIMD is bf16DotHoistSIMD with the multiplier of group g
// read as mul1[scodes[g]] (1-byte scale codes).
func bf16DotHoistS1SIMD(xd []float32, codes []byte, ngroups, gs int, planes *[64]byte, scodes []byte, mul1 *[256]float32) float32 {
	if ngroups == 0 {
		return 0
	}
	n := ngroups * gs
	_ = xd[n-1]
	_ = codes[n/2-1]
	_ = scodes[ngroups-1]
	return bf16DotHoistS1AVX(&xd[0], &codes[0], ngroups, gs, planes, &scodes[0], mul1)
}

//go:noescape
func bf16Dot32S1AVX(x *float32, codes *byte, ngroups int, planes *[64]byte, scodes *byte, mul1 *[256]float32) float32

// bf16Dot32S1SIMD is bf16DotHoistS1SIMD for groups of exactly 32, with xd
// permuted by deinterleave16w.
func bf16Dot32S1SIMD(xd []float32, codes []byte, ngroups int, planes *[64]byte, scodes []byte, mul1 *[256]float32) float32 {
	if ngroups == 0 {
		return 0
	}
	n := ngroups * 32
	_ = xd[n-1]
	_ = codes[n/2-1]
	_ = scodes[ngroups-1]
	return bf16Dot32S1AVX(&xd[0], &codes[0], ngroups, planes, &scodes[0], mul1)
}
