//go:build amd64 && !purego

package kernels

import xcpu "golang.org/x/sys/cpu"

// haveSIMD reports whether the AVX2+FMA assembly kernels can run (decided
// once from CPUID; immutable afterwards).
var haveSIMD = xcpu.X86.HasAVX2 && xcpu.X86.HasFMA && xcpu.X86.HasAVX

// Assembly kernels (simd_amd64.s). The Go wrappers below check the slice
// bounds the assembly relies on.

//go:noescape
func gemm6x16(kc int, a, b, c *float32, ldc int)

//go:noescape
func dotAVX(x, y *float32, n int) float32

//go:noescape
func axpyAVX(a float32, x, y *float32, n int)

//go:noescape
func fwhtLow3AVX(x *float32, n int)

//go:noescape
func fwhtPassAVX(x *float32, n, h int)

//go:noescape
func scaleAVX(x *float32, n int, s float32)

//go:noescape
func lut4DecodeAVX(dst *float32, codes *byte, ngroups, gs int, base *[16]float32, muls, offs *float32)

func microKernelSIMD(kc int, ap, bp, c []float32, ldc int) {
	_ = ap[kc*gemmMR-1]
	_ = bp[kc*gemmNR-1]
	_ = c[(gemmMR-1)*ldc+gemmNR-1]
	gemm6x16(kc, &ap[0], &bp[0], &c[0], ldc)
}

func dotF32(x, y []float32) float32 {
	n := len(x)
	if !haveSIMD || n < 16 {
		return dotGo(x, y)
	}
	y = y[:n]
	v := n &^ 7
	s := dotAVX(&x[0], &y[0], v)
	for i := v; i < n; i++ {
		s += x[i] * y[i]
	}
	return s
}

func axpyF32(a float32, x, y []float32) {
	n := len(x)
	if !haveSIMD || n < 16 {
		axpyGo(a, x, y)
		return
	}
	y = y[:n]
	v := n &^ 7
	axpyAVX(a, &x[0], &y[0], v)
	for i := v; i < n; i++ {
		y[i] += a * x[i]
	}
}

// fwhtSIMD is fwhtGo with vector butterflies; it performs the same float
// operations in the same order, so results are bit-identical.
func fwhtSIMD(x []float32, log2Block int, scale float32) {
	if log2Block < 3 || len(x) == 0 {
		fwhtGo(x, log2Block, scale)
		return
	}
	bs := 1 << log2Block
	// Chunks of whole blocks of about 2 Ki floats (8 KiB, in L1): stages
	// 1-3 on every group of 8, then the wider stages (a stage of distance
	// h < bs over whole blocks only pairs elements of the same block, so
	// the operations per element are those of fwhtGo).
	cs := max(bs, 2048)
	for off := 0; off+bs <= len(x); off += cs {
		n := min(cs, (len(x)-off)/bs*bs)
		p := &x[off]
		fwhtLow3AVX(p, n)
		for h := 8; h < bs; h *= 2 {
			fwhtPassAVX(p, n, h)
		}
		if scale != 1 {
			scaleAVX(p, n, scale)
		}
	}
}

func lut4DecodeSIMD(dst []float32, codes []byte, ngroups, gs int, base *[16]float32, muls, offs []float32) {
	if ngroups == 0 {
		return
	}
	n := ngroups * gs
	_ = dst[n-1]
	_ = codes[n/2-1]
	_ = muls[ngroups-1]
	_ = offs[ngroups-1]
	lut4DecodeAVX(&dst[0], &codes[0], ngroups, gs, base, &muls[0], &offs[0])
}

//go:noescape
func lut4DotAVX(x *float32, codes *byte, ngroups, gs int, base *[16]float32, muls, offs *float32) float32

// lut4DotSIMD returns Σ w·x over ngroups whole groups (gs a multiple of 16);
// xd is x de-interleaved per 16 elements (see deinterleave16).
func lut4DotSIMD(xd []float32, codes []byte, ngroups, gs int, base *[16]float32, muls, offs []float32) float32 {
	if ngroups == 0 {
		return 0
	}
	n := ngroups * gs
	_ = xd[n-1]
	_ = codes[n/2-1]
	_ = muls[ngroups-1]
	_ = offs[ngroups-1]
	return lut4DotAVX(&xd[0], &codes[0], ngroups, gs, base, &muls[0], &offs[0])
}

//go:noescape
func axpy4AVX(x *[4]float32, b *float32, ldb int, y *float32, n int)

// axpy4F32 computes y[j] += Σ_{i<4} x[i]·b[i*ldb+j] for j < len(y).
func axpy4F32(x *[4]float32, b []float32, ldb int, y []float32) {
	n := len(y)
	if !haveSIMD || n < 16 {
		axpy4Go(x, b, ldb, y)
		return
	}
	_ = b[3*ldb+n-1]
	v := n &^ 7
	axpy4AVX(x, &b[0], ldb, &y[0], v)
	for j := v; j < n; j++ {
		y[j] += x[0]*b[j] + x[1]*b[ldb+j] + x[2]*b[2*ldb+j] + x[3]*b[3*ldb+j]
	}
}

//go:noescape
func packBT16AVX(dst, src *float32, ldb, kc8 int)

//go:noescape
func packB16AVX(dst, src *float32, ldb, kc int)

// packB16 packs op(B)[p][j] = b[p*ldb+j] for 16 full columns j and kc
// steps p: a copy call per 64-byte row costs more than the bytes (the
// Hessians' XᵀX products spent a third of their time in it). It returns
// false without SIMD.
func packB16(dst, b []float32, ldb, kc int) bool {
	if !haveSIMD || kc <= 0 {
		return false
	}
	_ = dst[kc*gemmNR-1]
	_ = b[(kc-1)*ldb+gemmNR-1]
	packB16AVX(&dst[0], &b[0], ldb, kc)
	return true
}

// packBT16 packs op(B)[p][j] = b[j*ldb+p] for 16 full columns j and the
// first kc8*8 steps p with the AVX transpose; it returns how many steps it
// did (0 without SIMD).
func packBT16(dst, b []float32, ldb, kc int) int {
	if !haveSIMD || kc < 8 {
		return 0
	}
	kc8 := kc / 8
	_ = dst[kc8*8*gemmNR-1]
	_ = b[15*ldb+kc8*8-1]
	packBT16AVX(&dst[0], &b[0], ldb, kc8)
	return kc8 * 8
}

//go:noescape
func lut4DotBF16AVX(x *float32, codes *byte, ngroups, gs int, planes *[64]byte, muls, offs *float32) float32

// lut4DotBF16SIMD returns Σ w·x over ngroups whole groups (gs a multiple of
// 32) for bfloat16-exact element tables; xd is x permuted by deinterleave8.
func lut4DotBF16SIMD(xd []float32, codes []byte, ngroups, gs int, planes *[64]byte, muls, offs []float32) float32 {
	if ngroups == 0 {
		return 0
	}
	n := ngroups * gs
	_ = xd[n-1]
	_ = codes[n/2-1]
	_ = muls[ngroups-1]
	_ = offs[ngroups-1]
	return lut4DotBF16AVX(&xd[0], &codes[0], ngroups, gs, planes, &muls[0], &offs[0])
}

//go:noescape
func expAVX(dst, src *float32, n int)

// expF32 writes dst[i] = e^x[i] (float32, about 2 ulp; results below the
// smallest normal float are 0). dst may alias x.
func expF32(dst, x []float32) {
	n := len(x)
	dst = dst[:n]
	v := 0
	if haveSIMD && n >= 8 {
		v = n &^ 7
		expAVX(&dst[0], &x[0], v)
	}
	for i := v; i < n; i++ {
		dst[i] = expGo(x[i])
	}
}

//go:noescape
func dgemm6x8(kc int, a, b, c *float64, ldc int)

// dgemmKernelSIMD is dgemmKernelGo in AVX2/FMA assembly.
func dgemmKernelSIMD(kc int, ap, bp, c []float64, ldc int) {
	_ = ap[kc*dgemmMR-1]
	_ = bp[kc*dgemmNR-1]
	_ = c[(dgemmMR-1)*ldc+dgemmNR-1]
	dgemm6x8(kc, &ap[0], &bp[0], &c[0], ldc)
}
