//go:build amd64 && !purego

package kernels

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
