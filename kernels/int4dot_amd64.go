//go:build amd64 && !purego

package kernels

import xcpu "golang.org/x/sys/cpu"

// haveF16C reports whether VCVTPH2PS is available (decided once from
// CPUID; immutable afterwards).
var haveF16C = haveSIMD && xcpu.X86.HasF16C

//go:noescape
func int4DotAVX(x *float32, codes *byte, ngroups, gs int, xsv, muls, offs *float32) float32

// int4DotSIMD returns Σ_g muls[g]·Σ_{e∈g} (code[e] − offs[g])·x[e] over
// ngroups whole groups of 4-bit integer codes (gs a multiple of 32), with
// the group scale applied once per group; xsv is int4XSums(x, gs).
func int4DotSIMD(x []float32, codes []byte, ngroups, gs int, xsv, muls, offs []float32) float32 {
	if ngroups == 0 {
		return 0
	}
	n := ngroups * gs
	_ = x[n-1]
	_ = codes[n/2-1]
	_ = xsv[8*ngroups-1]
	_ = muls[ngroups-1]
	_ = offs[ngroups-1]
	return int4DotAVX(&x[0], &codes[0], ngroups, gs, &xsv[0], &muls[0], &offs[0])
}

//go:noescape
func int4DotS16AVX(x *float32, codes *byte, ngroups, gs int, xsv *float32, scodes, zeros *byte, zstride int) float32

// int4DotS16SIMD is int4DotSIMD reading the group multipliers from
// binary16 scale codes (2 bytes a group) and the zero points from
// zeros[g·zstride]; ok is false (and nothing is computed) without F16C.
func int4DotS16SIMD(x []float32, codes []byte, ngroups, gs int, xsv []float32, scodes, zeros []byte, zstride int) (s float32, ok bool) {
	if !haveF16C {
		return 0, false
	}
	if ngroups == 0 {
		return 0, true
	}
	n := ngroups * gs
	_ = x[n-1]
	_ = codes[n/2-1]
	_ = xsv[8*ngroups-1]
	_ = scodes[2*ngroups-1]
	_ = zeros[(ngroups-1)*zstride]
	return int4DotS16AVX(&x[0], &codes[0], ngroups, gs, &xsv[0], &scodes[0], &zeros[0], zstride), true
}
