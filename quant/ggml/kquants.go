package ggml

import (
	"encoding/binary"
	"math"
)

// groupMaxEps is GROUP_MAX_EPS: a sub-block whose magnitudes all stay below
// it quantizes to zero.
const groupMaxEps = 1e-15

// clampI returns v clamped to [lo, hi].
func clampI(v, lo, hi int32) int32 {
	if v < lo {
		return lo
	}
	if v > hi {
		return hi
	}
	return v
}

// makeQXQuants is make_qx_quants with rmse_type 1 and no importance
// weights (w = x²), the Q6_K sub-block fit: a symmetric scale searched over
// 19 candidate steps around nmax/max. L receives codes in [0, 2·nmax).
func makeQXQuants(nmax int32, x []float32, L []int8) float32 {
	var max, amax float32
	for _, v := range x {
		if a := absf(v); a > amax {
			amax, max = a, v
		}
	}
	if amax < groupMaxEps {
		for i := range L[:len(x)] {
			L[i] = 0
		}
		return 0
	}
	fn := float32(nmax)
	iscale := -fn / max
	var sumlx, suml2 float32
	for i, v := range x {
		l := clampI(nearestInt(float32(iscale*v)), -nmax, nmax-1)
		L[i] = int8(l + nmax)
		w := float32(v * v)
		fl := float32(l)
		sumlx += float32(float32(w*v) * fl)
		suml2 += float32(float32(w*fl) * fl)
	}
	var scale float32
	if suml2 != 0 {
		scale = sumlx / suml2
	}
	best := float32(scale * sumlx)
	for is := int32(-9); is <= 9; is++ {
		if is == 0 {
			continue
		}
		iscale = -(fn + float32(float32(0.1)*float32(is))) / max
		sumlx, suml2 = 0, 0
		for _, v := range x {
			l := clampI(nearestInt(float32(iscale*v)), -nmax, nmax-1)
			w := float32(v * v)
			fl := float32(l)
			sumlx += float32(float32(w*v) * fl)
			suml2 += float32(float32(w*fl) * fl)
		}
		if suml2 > 0 && float32(sumlx*sumlx) > float32(best*suml2) {
			for i, v := range x {
				l := clampI(nearestInt(float32(iscale*v)), -nmax, nmax-1)
				L[i] = int8(nmax + l)
			}
			scale = sumlx / suml2
			best = float32(scale * sumlx)
		}
	}
	return scale
}

// makeQKX2Quants is make_qkx2_quants with use_mad false: an asymmetric
// (scale, min) fit of x to codes [0, nmax] minimising the weighted squared
// error over nstep+1 candidate scales. It returns the scale and −min.
func makeQKX2Quants(nmax int32, x, weights []float32, L, Laux []uint8, rmin, rdelta float32, nstep int) (scale, theMin float32) {
	n := len(x)
	min, max := x[0], x[0]
	sumW := weights[0]
	sumX := float32(sumW * x[0])
	for i := 1; i < n; i++ {
		if x[i] < min {
			min = x[i]
		}
		if x[i] > max {
			max = x[i]
		}
		w := weights[i]
		sumW += w
		sumX += float32(w * x[i])
	}
	if min > 0 {
		min = 0
	}
	if max == min {
		for i := 0; i < n; i++ {
			L[i] = 0
		}
		return 0, -min
	}
	fn := float32(nmax)
	iscale := fn / (max - min)
	scale = 1 / iscale
	var bestError float32
	for i := 0; i < n; i++ {
		l := clampI(nearestInt(float32(iscale*float32(x[i]-min))), 0, nmax)
		L[i] = uint8(l)
		diff := float32(float32(float32(scale*float32(l))+min) - x[i])
		diff = float32(diff * diff)
		bestError += float32(weights[i] * diff)
	}
	if nstep < 1 {
		return scale, -min
	}
	for is := 0; is <= nstep; is++ {
		iscale = float32(float32(rmin+float32(rdelta*float32(is)))+fn) / (max - min)
		var sumL, sumL2, sumXL float32
		for i := 0; i < n; i++ {
			l := clampI(nearestInt(float32(iscale*float32(x[i]-min))), 0, nmax)
			Laux[i] = uint8(l)
			w := weights[i]
			fl := float32(l)
			wl := float32(w * fl)
			sumL += wl
			sumL2 += float32(wl * fl)
			sumXL += float32(wl * x[i])
		}
		D := float32(float32(sumW*sumL2) - float32(sumL*sumL))
		if D > 0 {
			thisScale := float32(float32(sumW*sumXL)-float32(sumX*sumL)) / D
			thisMin := float32(float32(sumL2*sumX)-float32(sumL*sumXL)) / D
			if thisMin > 0 {
				thisMin = 0
				thisScale = sumXL / sumL2
			}
			var curError float32
			for i := 0; i < n; i++ {
				diff := float32(float32(float32(thisScale*float32(Laux[i]))+thisMin) - x[i])
				diff = float32(diff * diff)
				curError += float32(weights[i] * diff)
			}
			if curError < bestError {
				copy(L[:n], Laux[:n])
				bestError = curError
				scale = thisScale
				min = thisMin
			}
		}
	}
	return scale, -min
}

// scaleMinK4 is get_scale_min_k4: the j-th 6-bit scale and min of a Q4_K
// block's 12 packed scale bytes.
func scaleMinK4(j int, q []byte) (d, m uint8) {
	if j < 4 {
		return q[j] & 63, q[j+4] & 63
	}
	return q[j+4]&0xf | (q[j-4]>>6)<<4, q[j+4]>>4 | (q[j]>>6)<<4
}

// fitKBlock is what quantize_row_q4_K_ref and quantize_row_q5_K_ref share
// for one super-block xb: the eight sub-blocks of 32 are fitted with
// make_qkx2_quants (weights rms(sub-block) + |x|, nstep+1 candidate scales
// from rmin), their scales and mins quantized to 6 bits against the fp16
// super-block scale and min written to b[:4+kScaleSize], and every element
// requantized against the stored values into L (0..nmax).
func fitKBlock(xb []float32, b []byte, L *[QKK]uint8, nmax int32, rmin float32, nstep int) {
	var (
		Laux    [32]uint8
		weights [32]float32
		mins    [QKK / 32]float32
		scales  [QKK / 32]float32
	)
	var maxScale, maxMin float32
	for j := 0; j < QKK/32; j++ {
		xs := xb[32*j : 32*j+32]
		var sumX2 float32
		for _, v := range xs {
			sumX2 += float32(v * v)
		}
		avX := float32(math.Sqrt(float64(sumX2 / 32)))
		for l, v := range xs {
			weights[l] = avX + absf(v)
		}
		scales[j], mins[j] = makeQKX2Quants(nmax, xs, weights[:], L[32*j:32*j+32], Laux[:], rmin, 0.1, nstep)
		if scales[j] > maxScale {
			maxScale = scales[j]
		}
		if mins[j] > maxMin {
			maxMin = mins[j]
		}
	}
	var invScale, invMin float32
	if maxScale > 0 {
		invScale = 63 / maxScale
	}
	if maxMin > 0 {
		invMin = 63 / maxMin
	}
	sc := b[4 : 4+kScaleSize]
	for j := 0; j < QKK/32; j++ {
		ls := min(uint8(nearestInt(float32(invScale*scales[j]))), 63)
		lm := min(uint8(nearestInt(float32(invMin*mins[j]))), 63)
		if j < 4 {
			sc[j] = ls
			sc[j+4] = lm
		} else {
			sc[j+4] = ls&0xf | (lm&0xf)<<4
			sc[j-4] |= (ls >> 4) << 6
			sc[j] |= (lm >> 4) << 6
		}
	}
	binary.LittleEndian.PutUint16(b[0:], fp16(maxScale/63))
	binary.LittleEndian.PutUint16(b[2:], fp16(maxMin/63))
	dAll := fp32(binary.LittleEndian.Uint16(b[0:]))
	mAll := fp32(binary.LittleEndian.Uint16(b[2:]))
	for j := 0; j < QKK/32; j++ {
		s, m := scaleMinK4(j, sc)
		d := float32(dAll * float32(s))
		if d == 0 {
			continue
		}
		dm := float32(mAll * float32(m))
		for ii := 0; ii < 32; ii++ {
			l := nearestInt(float32(xb[32*j+ii]+dm) / d)
			L[32*j+ii] = uint8(clampI(l, 0, nmax))
		}
	}
}

// EncodeQ4_K writes len(x)/256 Q4_K blocks to dst (quantize_row_q4_K_ref):
// eight sub-blocks of 32 fitted with make_qkx2_quants (weights
// rms(sub-block) + |x|, 21 candidate scales), the scales and mins quantized
// to 6 bits against fp16 super-block scales, then every element requantized
// against the stored scales.
func EncodeQ4_K(dst []byte, x []float32) {
	var L [QKK]uint8
	nb := len(x) / QKK
	for i := 0; i < nb; i++ {
		xb := x[i*QKK : (i+1)*QKK]
		b := dst[i*SizeQ4_K : (i+1)*SizeQ4_K]
		fitKBlock(xb, b, &L, 15, -1, 20)
		setCodesQ4_K(b, L[:])
	}
}

// EncodeQ6_K writes len(x)/256 Q6_K blocks to dst (quantize_row_q6_K_ref):
// sixteen sub-blocks of 16 fitted with make_qx_quants (nmax 32, weights x²),
// int8 sub-block scales against an fp16 super-block scale, 6-bit elements
// split into low nibbles (ql) and high bit pairs (qh).
func EncodeQ6_K(dst []byte, x []float32) {
	var (
		L      [QKK]int8
		scales [QKK / 16]float32
	)
	nb := len(x) / QKK
	for i := 0; i < nb; i++ {
		xb := x[i*QKK : (i+1)*QKK]
		b := dst[i*SizeQ6_K : (i+1)*SizeQ6_K]
		ql, qh, sc := b[0:QKK/2], b[QKK/2:QKK/2+QKK/4], b[QKK/2+QKK/4:QKK/2+QKK/4+QKK/16]
		dOff := QKK/2 + QKK/4 + QKK/16
		var maxScale, maxAbsScale float32
		for ib := 0; ib < QKK/16; ib++ {
			s := makeQXQuants(32, xb[16*ib:16*ib+16], L[16*ib:16*ib+16])
			scales[ib] = s
			if a := absf(s); a > maxAbsScale {
				maxAbsScale, maxScale = a, s
			}
		}
		if maxAbsScale < groupMaxEps {
			clear(b)
			continue
		}
		iscale := -128 / maxScale
		binary.LittleEndian.PutUint16(b[dOff:], fp16(1/iscale))
		for ib := 0; ib < QKK/16; ib++ {
			sc[ib] = uint8(int8(min(127, nearestInt(float32(iscale*scales[ib])))))
		}
		dAll := fp32(binary.LittleEndian.Uint16(b[dOff:]))
		for j := 0; j < QKK/16; j++ {
			d := float32(dAll * float32(int8(sc[j])))
			if d == 0 {
				continue
			}
			for ii := 0; ii < 16; ii++ {
				l := clampI(nearestInt(xb[16*j+ii]/d), -32, 31)
				L[16*j+ii] = int8(l + 32)
			}
		}
		for j := 0; j < QKK; j += 128 {
			for l := 0; l < 32; l++ {
				q1 := uint8(L[j+l]) & 0xf
				q2 := uint8(L[j+l+32]) & 0xf
				q3 := uint8(L[j+l+64]) & 0xf
				q4 := uint8(L[j+l+96]) & 0xf
				ql[l] = q1 | q3<<4
				ql[l+32] = q2 | q4<<4
				qh[l] = uint8(L[j+l])>>4 | (uint8(L[j+l+32])>>4)<<2 | (uint8(L[j+l+64])>>4)<<4 | (uint8(L[j+l+96])>>4)<<6
			}
			ql = ql[64:]
			qh = qh[32:]
		}
	}
}

// EncodeQ5_K writes len(x)/256 Q5_K blocks to dst (quantize_row_q5_K_ref):
// as Q4_K with 5-bit elements (make_qkx2_quants with nmax 31 and 16
// candidate scales), the fifth bits in qh.
func EncodeQ5_K(dst []byte, x []float32) {
	var L [QKK]uint8
	nb := len(x) / QKK
	for i := 0; i < nb; i++ {
		xb := x[i*QKK : (i+1)*QKK]
		b := dst[i*SizeQ5_K : (i+1)*SizeQ5_K]
		fitKBlock(xb, b, &L, 31, -0.5, 15)
		setCodesQ5_K(b, L[:])
	}
}
