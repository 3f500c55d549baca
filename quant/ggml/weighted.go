package ggml

import (
	"encoding/binary"
	"math"
)

// Importance-weighted fitters: ports of the quant_weights paths of
// llama.cpp's ggml-quants.c (make_qx_quants with weights, make_qkx3_quants,
// make_qp_quants, quantize_row_*_impl, quantize_row_iq4_nl_impl), the
// quantizers llama-quantize runs with an importance matrix. They choose
// the block scales; GPTQ (quant/gptq) may then choose the element codes
// again under those scales. They follow the C float32 order but are not
// checked bit for bit against llama-quantize --imatrix: what is checked is
// that the blocks they write dequantize exactly as llama.cpp reads them.

// makeQXQuantsW is make_qx_quants with rmse_type 1: a symmetric scale over
// 19 candidate steps, weights qw (nil: x²). L receives codes in [0, 2·nmax).
func makeQXQuantsW(nmax int32, x []float32, L []int8, qw []float32) float32 {
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
	w := func(i int) float32 {
		if qw != nil {
			return qw[i]
		}
		return float32(x[i] * x[i])
	}
	fn := float32(nmax)
	iscale := -fn / max
	var sumlx, suml2 float32
	for i, v := range x {
		l := clampI(nearestInt(float32(iscale*v)), -nmax, nmax-1)
		L[i] = int8(l + nmax)
		wi, fl := w(i), float32(l)
		sumlx += float32(float32(wi*v) * fl)
		suml2 += float32(float32(wi*fl) * fl)
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
		for i, v := range x {
			l := clampI(nearestInt(float32(iscale*v)), -nmax, nmax-1)
			wi, fl := w(i), float32(l)
			sumlx += float32(float32(wi*v) * fl)
			suml2 += float32(float32(wi*fl) * fl)
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

// makeQKX3Quants is make_qkx3_quants (use_mad false, weights given): an
// asymmetric (scale, min) fit to codes [0, nmax] minimising the weighted
// squared error over nstep+1 candidate scales. It returns scale and −min.
func makeQKX3Quants(nmax int32, x, weights []float32, L, Laux []uint8, rmin, rdelta float32, nstep int) (float32, float32) {
	n := len(x)
	min, max := x[0], x[0]
	sumW := weights[0]
	sumX := float32(sumW * x[0])
	for i := 1; i < n; i++ {
		min = minf(min, x[i])
		max = maxf(max, x[i])
		sumW += weights[i]
		sumX += float32(weights[i] * x[i])
	}
	if min > 0 {
		min = 0
	}
	if max <= min {
		clear(L[:n])
		return 0, -min
	}
	fn := float32(nmax)
	iscale := fn / (max - min)
	scale := 1 / iscale
	var bestMad float32
	for i := 0; i < n; i++ {
		l := clampI(nearestInt(float32(iscale*float32(x[i]-min))), 0, nmax)
		L[i] = uint8(l)
		diff := float32(float32(scale*float32(l))+min) - x[i]
		bestMad += float32(weights[i] * float32(diff*diff))
	}
	for is := 0; is <= nstep; is++ {
		iscale = float32(float32(rmin+float32(rdelta*float32(is)))+fn) / (max - min)
		var sumL, sumL2, sumXL float32
		for i := 0; i < n; i++ {
			l := clampI(nearestInt(float32(iscale*float32(x[i]-min))), 0, nmax)
			Laux[i] = uint8(l)
			wl := float32(weights[i] * float32(l))
			sumL += wl
			sumL2 += float32(wl * float32(l))
			sumXL += float32(wl * x[i])
		}
		D := float32(sumW*sumL2) - float32(sumL*sumL)
		if D > 0 {
			thisScale := (float32(sumW*sumXL) - float32(sumX*sumL)) / D
			thisMin := (float32(sumL2*sumX) - float32(sumL*sumXL)) / D
			if thisMin > 0 {
				thisMin = 0
				thisScale = sumXL / sumL2
			}
			var mad float32
			for i := 0; i < n; i++ {
				diff := float32(float32(thisScale*float32(Laux[i]))+thisMin) - x[i]
				mad += float32(weights[i] * float32(diff*diff))
			}
			if mad < bestMad {
				copy(L[:n], Laux[:n])
				bestMad, scale, min = mad, thisScale, thisMin
			}
		}
	}
	return scale, -min
}

// makeQPQuants is make_qp_quants: non-negative x quantized to [0, nmax]
// with one scale, weighted by qw, refined by coordinate descent.
func makeQPQuants(nmax int32, x []float32, L []uint8, qw []float32) float32 {
	n := len(x)
	var max float32
	for _, v := range x {
		max = maxf(max, v)
	}
	if max == 0 {
		clear(L[:n])
		return 0
	}
	fn := float32(nmax)
	iscale := fn / max
	for i, v := range x {
		L[i] = uint8(clampI(nearestInt(float32(iscale*v)), 0, 255))
	}
	scale := 1 / iscale
	var bestMse float32
	for i, v := range x {
		diff := v - float32(scale*float32(L[i]))
		bestMse += float32(float32(qw[i]*diff) * diff)
	}
	for is := int32(-4); is <= 4; is++ {
		if is == 0 {
			continue
		}
		iscaleIs := float32(float32(0.1)*float32(is)+fn) / max
		scaleIs := 1 / iscaleIs
		var mse float32
		for i, v := range x {
			l := min(nmax, nearestInt(float32(iscaleIs*v)))
			diff := v - float32(scaleIs*float32(l))
			mse += float32(float32(qw[i]*diff) * diff)
		}
		if mse < bestMse {
			bestMse, iscale = mse, iscaleIs
		}
	}
	var sumlx, suml2 float32
	for i, v := range x {
		l := min(nmax, nearestInt(float32(iscale*v)))
		L[i] = uint8(l)
		sumlx += float32(float32(qw[i]*v) * float32(l))
		suml2 += float32(float32(qw[i]*float32(l)) * float32(l))
	}
	for itry := 0; itry < 5; itry++ {
		changed := 0
		for i, v := range x {
			w, li := qw[i], float32(L[i])
			slx := sumlx - float32(float32(w*v)*li)
			sl2 := suml2 - float32(float32(w*li)*li)
			if slx > 0 && sl2 > 0 {
				nl := min(nmax, nearestInt(float32(v*sl2)/slx))
				if nl != int32(L[i]) {
					fl := float32(nl)
					slx += float32(float32(w*v) * fl)
					sl2 += float32(float32(w*fl) * fl)
					if float32(float32(slx*slx)*suml2) > float32(float32(sumlx*sumlx)*sl2) {
						L[i] = uint8(nl)
						sumlx, suml2 = slx, sl2
						changed++
					}
				}
			}
		}
		if changed == 0 {
			break
		}
	}
	if suml2 == 0 {
		return 0
	}
	return sumlx / suml2
}

func minf(a, b float32) float32 {
	if b < a {
		return b
	}
	return a
}

func maxf(a, b float32) float32 {
	if b > a {
		return b
	}
	return a
}

func sqrtf(x float32) float32 { return float32(math.Sqrt(float64(x))) }

// importance fills weight[i] = qw[i]·sqrt(sigma2 + x[i]²), llama.cpp's
// importance weight of an element.
func importance(weight, x, qw []float32, sigma2 float32) {
	for i, v := range x {
		weight[i] = float32(qw[i] * sqrtf(sigma2+float32(v*v)))
	}
}

// encodeQ4_0W is quantize_row_q4_0_impl for one row (qw non-nil).
func encodeQ4_0W(dst []byte, x, qw []float32) {
	var sumX2 float32
	for _, v := range x {
		sumX2 += float32(v * v)
	}
	sigma2 := sumX2 / float32(len(x))
	var weight [QK4_0]float32
	var L [QK4_0]int8
	for ib := 0; ib < len(x)/QK4_0; ib++ {
		xb, wb := x[ib*QK4_0:(ib+1)*QK4_0], qw[ib*QK4_0:(ib+1)*QK4_0]
		importance(weight[:], xb, wb, sigma2)
		d := makeQXQuantsW(8, xb, L[:], weight[:])
		b := dst[ib*SizeQ4_0:]
		binary.LittleEndian.PutUint16(b, fp16(d))
		for j := 0; j < 16; j++ {
			b[2+j] = uint8(L[j]) | uint8(L[j+16])<<4
		}
	}
}

// packK4Scales stores eight 6-bit scales and mins as get_scale_min_k4 reads
// them.
func packK4Scales(sc []byte, ls, lm []uint8) {
	clear(sc[:kScaleSize])
	for j := 0; j < 8; j++ {
		s, m := min(ls[j], 63), min(lm[j], 63)
		if j < 4 {
			sc[j] = s
			sc[j+4] = m
		} else {
			sc[j+4] = s&0xf | (m&0xf)<<4
			sc[j-4] |= (s >> 4) << 6
			sc[j] |= (m >> 4) << 6
		}
	}
}

// encodeKW is quantize_row_q4_K_impl / q5_K_impl for one row: header and
// codes (0..nmax) of every super-block; store packs the codes.
func encodeKW(dst []byte, x, qw []float32, nmax int32, size int, store func(b []byte, L *[QKK]uint8)) {
	var (
		L              [QKK]uint8
		Laux           [32]uint8
		Ls, Lm         [8]uint8
		weights        [32]float32
		sw, mins, scls [8]float32
	)
	for i := 0; i < len(x)/QKK; i++ {
		xb, qb := x[i*QKK:(i+1)*QKK], qw[i*QKK:(i+1)*QKK]
		b := dst[i*size : (i+1)*size]
		var sumX2 float32
		for _, v := range xb {
			sumX2 += float32(v * v)
		}
		sigma2 := 2 * sumX2 / QKK
		for j := 0; j < 8; j++ {
			importance(weights[:], xb[32*j:32*j+32], qb[32*j:32*j+32], sigma2)
			var s float32
			for _, w := range weights {
				s += w
			}
			sw[j] = s
			scls[j], mins[j] = makeQKX3Quants(nmax, xb[32*j:32*j+32], weights[:], L[32*j:32*j+32], Laux[:], -0.9, 0.05, 36)
		}
		dBlock := makeQPQuants(63, scls[:], Ls[:], sw[:])
		mBlock := makeQPQuants(63, mins[:], Lm[:], sw[:])
		packK4Scales(b[4:], Ls[:], Lm[:])
		binary.LittleEndian.PutUint16(b[0:], fp16(dBlock))
		binary.LittleEndian.PutUint16(b[2:], fp16(mBlock))
		dAll, mAll := fp32(binary.LittleEndian.Uint16(b)), fp32(binary.LittleEndian.Uint16(b[2:]))
		for j := 0; j < 8; j++ {
			s, m := scaleMinK4(j, b[4:4+kScaleSize])
			d := float32(dAll * float32(s))
			if d == 0 {
				continue
			}
			dm := float32(mAll * float32(m))
			for ii := 0; ii < 32; ii++ {
				L[32*j+ii] = uint8(clampI(nearestInt((xb[32*j+ii]+dm)/d), 0, nmax))
			}
		}
		store(b, &L)
	}
}

// encodeQ6_KW is quantize_row_q6_K_impl for one row (weights qw used as
// given, as llama.cpp does).
func encodeQ6_KW(dst []byte, x, qw []float32) {
	var (
		L      [QKK]int8
		scales [QKK / 16]float32
	)
	for i := 0; i < len(x)/QKK; i++ {
		xb, qb := x[i*QKK:(i+1)*QKK], qw[i*QKK:(i+1)*QKK]
		b := dst[i*SizeQ6_K : (i+1)*SizeQ6_K]
		var maxScale, maxAbs float32
		for ib := 0; ib < QKK/16; ib++ {
			s := makeQXQuantsW(32, xb[16*ib:16*ib+16], L[16*ib:16*ib+16], qb[16*ib:16*ib+16])
			scales[ib] = s
			if a := absf(s); a > maxAbs {
				maxAbs, maxScale = a, s
			}
		}
		clear(b)
		if maxAbs < groupMaxEps {
			continue
		}
		dOff := QKK/2 + QKK/4 + QKK/16
		iscale := -128 / maxScale
		binary.LittleEndian.PutUint16(b[dOff:], fp16(1/iscale))
		sc := b[QKK/2+QKK/4:]
		for ib := 0; ib < QKK/16; ib++ {
			sc[ib] = uint8(int8(min(127, nearestInt(float32(iscale*scales[ib])))))
		}
		dAll := fp32(binary.LittleEndian.Uint16(b[dOff:]))
		var codes [QKK]uint8
		for j := 0; j < QKK/16; j++ {
			d := float32(dAll * float32(int8(sc[j])))
			for ii := 0; ii < 16; ii++ {
				l := int32(0)
				if d != 0 {
					l = clampI(nearestInt(xb[16*j+ii]/d), -32, 31)
				}
				codes[16*j+ii] = uint8(l + 32)
			}
		}
		setCodesQ6_K(b, codes[:])
	}
}

// q3Scale and setQ3Scale read and write the j-th 6-bit scale (stored + 32)
// of a Q3_K block's 12 scale bytes.
func q3Scale(sc []byte, j int) int32 {
	var lo uint8
	if j < 8 {
		lo = sc[j] & 0xf
	} else {
		lo = sc[j-8] >> 4
	}
	return int32(lo|((sc[8+j%4]>>(2*(j/4)))&3)<<4) - 32
}

// encodeQ3_KW is quantize_row_q3_K_impl for one row (qw nil: weights x²).
func encodeQ3_KW(dst []byte, x, qw []float32) {
	var (
		L      [QKK]int8
		Ls     [QKK / 16]int8
		scales [QKK / 16]float32
		sw     [QKK / 16]float32
		weight [16]float32
	)
	for i := 0; i < len(x)/QKK; i++ {
		xb := x[i*QKK : (i+1)*QKK]
		b := dst[i*SizeQ3_K : (i+1)*SizeQ3_K]
		var sumX2 float32
		for _, v := range xb {
			sumX2 += float32(v * v)
		}
		sigma2 := 2 * sumX2 / QKK
		for j := 0; j < QKK/16; j++ {
			xs := xb[16*j : 16*j+16]
			if qw != nil {
				importance(weight[:], xs, qw[i*QKK+16*j:i*QKK+16*j+16], sigma2)
			} else {
				for l, v := range xs {
					weight[l] = float32(v * v)
				}
			}
			var s float32
			for _, w := range weight {
				s += w
			}
			sw[j] = s
			scales[j] = makeQXQuantsW(4, xs, L[16*j:16*j+16], weight[:])
		}
		clear(b)
		sc := b[96:108]
		dBlock := makeQXQuantsW(32, scales[:], Ls[:], sw[:])
		for j := 0; j < QKK/16; j++ {
			l := uint8(Ls[j])
			if j < 8 {
				sc[j] = l & 0xf
			} else {
				sc[j-8] |= (l & 0xf) << 4
			}
			sc[8+j%4] |= (l >> 4) << (2 * (j / 4))
		}
		binary.LittleEndian.PutUint16(b[108:], fp16(dBlock))
		dAll := fp32(binary.LittleEndian.Uint16(b[108:]))
		var codes [QKK]uint8
		for j := 0; j < QKK/16; j++ {
			d := float32(dAll * float32(q3Scale(sc, j)))
			for ii := 0; ii < 16; ii++ {
				l := int32(0)
				if d != 0 {
					l = clampI(nearestInt(xb[16*j+ii]/d), -4, 3)
				}
				codes[16*j+ii] = uint8(l + 4)
			}
		}
		setCodesQ3_K(b, codes[:])
	}
}

// encodeQ2_KW is quantize_row_q2_K_impl for one row (qw nil: weights 1).
func encodeQ2_KW(dst []byte, x, qw []float32) {
	var (
		L                [QKK]uint8
		Laux             [16]uint8
		Ls, Lm           [QKK / 16]uint8
		mins, scales, sw [QKK / 16]float32
		weight, ones     [16]float32
	)
	for l := range ones {
		ones[l] = 1
	}
	for i := 0; i < len(x)/QKK; i++ {
		xb := x[i*QKK : (i+1)*QKK]
		b := dst[i*SizeQ2_K : (i+1)*SizeQ2_K]
		var sumX2 float32
		for _, v := range xb {
			sumX2 += float32(v * v)
		}
		sigma2 := sumX2 / QKK
		for j := 0; j < QKK/16; j++ {
			xs := xb[16*j : 16*j+16]
			q := ones[:]
			if qw != nil {
				q = qw[i*QKK+16*j : i*QKK+16*j+16]
			}
			importance(weight[:], xs, q, sigma2)
			var s float32
			for _, w := range weight {
				s += w
			}
			sw[j] = s
			scales[j], mins[j] = makeQKX3Quants(3, xs, weight[:], L[16*j:16*j+16], Laux[:], -0.9, 0.05, 36)
		}
		dm := makeQPQuants(15, scales[:], Ls[:], sw[:])
		mm := makeQPQuants(15, mins[:], Lm[:], sw[:])
		binary.LittleEndian.PutUint16(b[80:], fp16(dm))
		binary.LittleEndian.PutUint16(b[82:], fp16(mm))
		dm, mm = fp32(binary.LittleEndian.Uint16(b[80:])), fp32(binary.LittleEndian.Uint16(b[82:]))
		for j := 0; j < QKK/16; j++ {
			b[j] = min(Ls[j], 15) | min(Lm[j], 15)<<4
		}
		for j := 0; j < QKK/16; j++ {
			d := float32(dm * float32(b[j]&0xf))
			if d == 0 {
				continue
			}
			m := float32(mm * float32(b[j]>>4))
			for ii := 0; ii < 16; ii++ {
				L[16*j+ii] = uint8(clampI(nearestInt((xb[16*j+ii]+m)/d), 0, 3))
			}
		}
		setCodesQ2_K(b, L[:])
	}
}

// IQ4NLValues is ggml's kvalues_iq4nl, the non-linear 4-bit grid of IQ4_NL
// and IQ4_XS.
var IQ4NLValues = [16]int8{-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113}

// bestIndexIQ4 is best_index_int8 on IQ4NLValues.
func bestIndexIQ4(x float32) uint8 {
	val := &IQ4NLValues
	if x <= float32(val[0]) {
		return 0
	}
	if x >= float32(val[15]) {
		return 15
	}
	ml, mu := 0, 15
	for mu-ml > 1 {
		mav := (ml + mu) / 2
		if x < float32(val[mav]) {
			mu = mav
		} else {
			ml = mav
		}
	}
	if x-float32(val[mu-1]) < float32(val[mu])-x {
		return uint8(mu - 1)
	}
	return uint8(mu)
}

// encodeIQ4W is quantize_row_iq4_nl_impl with ntry 7 for one super-block
// of sbs weights (32 for IQ4_NL, 256 for IQ4_XS) into b; qw nil: x².
func encodeIQ4W(b []byte, x, qw []float32, sbs int) {
	const bs, ntry = 32, 7
	var (
		L      [QKK]uint8
		scales [QKK / 32]float32
		weight [32]float32
	)
	var sigma2 float32
	for _, v := range x[:sbs] {
		sigma2 += float32(v * v)
	}
	sigma2 *= 2 / float32(sbs)
	var maxScale, amaxScale float32
	v0 := float32(IQ4NLValues[0])
	for ib := 0; ib < sbs/bs; ib++ {
		xb := x[ib*bs : (ib+1)*bs]
		if qw != nil {
			importance(weight[:], xb, qw[ib*bs:(ib+1)*bs], sigma2)
		} else {
			for j, v := range xb {
				weight[j] = float32(v * v)
			}
		}
		var amax, max float32
		for _, v := range xb {
			if a := absf(v); a > amax {
				amax, max = a, v
			}
		}
		if amax < groupMaxEps {
			scales[ib] = 0
			continue
		}
		d := -max / v0
		id := 1 / d
		var sumqx, sumq2 float32
		for j, v := range xb {
			l := bestIndexIQ4(float32(id * v))
			L[ib*bs+j] = l
			q := float32(IQ4NLValues[l])
			sumqx += float32(float32(weight[j]*q) * v)
			sumq2 += float32(float32(weight[j]*q) * q)
		}
		d = sumqx / sumq2
		best := float32(d * sumqx)
		for itry := -ntry; itry <= ntry; itry++ {
			id = (float32(itry) + v0) / max
			sumqx, sumq2 = 0, 0
			for j, v := range xb {
				q := float32(IQ4NLValues[bestIndexIQ4(float32(id*v))])
				sumqx += float32(float32(weight[j]*q) * v)
				sumq2 += float32(float32(weight[j]*q) * q)
			}
			if sumq2 > 0 && float32(sumqx*sumqx) > float32(best*sumq2) {
				d = sumqx / sumq2
				best = float32(d * sumqx)
			}
		}
		scales[ib] = d
		if a := absf(d); a > amaxScale {
			amaxScale, maxScale = a, d
		}
	}
	if sbs == 32 {
		binary.LittleEndian.PutUint16(b, fp16(scales[0]))
		var id float32
		if scales[0] != 0 {
			id = 1 / scales[0]
		}
		for j := 0; j < 32; j++ {
			L[j] = bestIndexIQ4(float32(id * x[j]))
		}
		setCodesIQ4(b[2:], L[:32])
		return
	}
	clear(b[:SizeIQ4_XS])
	d := -maxScale / 32
	binary.LittleEndian.PutUint16(b, fp16(d))
	var id float32
	if d != 0 {
		id = 1 / d
	}
	var sh uint16
	sl := b[4:8]
	for ib := 0; ib < sbs/bs; ib++ {
		l := clampI(nearestInt(float32(id*scales[ib])), -32, 31)
		dl := float32(d * float32(l))
		var idl float32
		if dl != 0 {
			idl = 1 / dl
		}
		for j := 0; j < bs; j++ {
			L[ib*bs+j] = bestIndexIQ4(float32(idl * x[ib*bs+j]))
		}
		u := uint8(l + 32)
		if ib%2 == 0 {
			sl[ib/2] = u & 0xf
		} else {
			sl[ib/2] |= (u & 0xf) << 4
		}
		sh |= uint16(u>>4) << (2 * ib)
	}
	binary.LittleEndian.PutUint16(b[2:], sh)
	setCodesIQ4(b[8:], L[:sbs])
}

// rowSigma2 is Σx²/n over a row, the legacy quantizers' sigma².
func rowSigma2(x []float32) float32 {
	var s float32
	for _, v := range x {
		s += float32(v * v)
	}
	return s / float32(len(x))
}

// encodeQ5_0W is quantize_row_q5_0_impl for one row (qw non-nil).
func encodeQ5_0W(dst []byte, x, qw []float32) {
	sigma2 := rowSigma2(x)
	var weight [QK5_0]float32
	var L [QK5_0]int8
	var codes [QK5_0]uint8
	for ib := 0; ib < len(x)/QK5_0; ib++ {
		xb, wb := x[ib*QK5_0:(ib+1)*QK5_0], qw[ib*QK5_0:(ib+1)*QK5_0]
		importance(weight[:], xb, wb, sigma2)
		d := makeQXQuantsW(16, xb, L[:], weight[:])
		b := dst[ib*SizeQ5_0:]
		binary.LittleEndian.PutUint16(b, fp16(d))
		for j, l := range L {
			codes[j] = uint8(l)
		}
		setCodesQ5(b[2:], codes[:])
	}
}

// encodeQ5_1W is quantize_row_q5_1_impl for one row (qw non-nil).
func encodeQ5_1W(dst []byte, x, qw []float32) {
	sigma2 := rowSigma2(x)
	var weight [QK5_1]float32
	var L, Laux [QK5_1]uint8
	for ib := 0; ib < len(x)/QK5_1; ib++ {
		xb, wb := x[ib*QK5_1:(ib+1)*QK5_1], qw[ib*QK5_1:(ib+1)*QK5_1]
		importance(weight[:], xb, wb, sigma2)
		d, theMin := makeQKX3Quants(31, xb, weight[:], L[:], Laux[:], -0.9, 0.05, 36)
		b := dst[ib*SizeQ5_1:]
		binary.LittleEndian.PutUint16(b, fp16(d))
		binary.LittleEndian.PutUint16(b[2:], fp16(-theMin))
		setCodesQ5(b[4:], L[:])
	}
}

// setCodesQ5 stores 32 five-bit codes as Q5_0/Q5_1's qh (4 bytes, bit j
// the fifth bit of element j) and qs (16 bytes of nibbles, element j low,
// j+16 high).
func setCodesQ5(q []byte, c []uint8) {
	var qh uint32
	for j := 0; j < 16; j++ {
		q[4+j] = c[j]&0xf | (c[j+16]&0xf)<<4
		qh |= uint32(c[j]>>4&1)<<j | uint32(c[j+16]>>4&1)<<(j+16)
	}
	binary.LittleEndian.PutUint32(q, qh)
}

func getCodesQ5(q []byte, c []uint8) {
	qh := binary.LittleEndian.Uint32(q)
	for j := 0; j < 16; j++ {
		c[j] = q[4+j]&0xf | uint8(qh>>j&1)<<4
		c[j+16] = q[4+j]>>4 | uint8(qh>>(j+16)&1)<<4
	}
}
