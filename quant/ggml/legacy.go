package ggml

import (
	"encoding/binary"
	"math"

	"github.com/marlin-llm/marlin/tensor"
)

// Block geometry of the formats this package writes: elements per block and
// bytes per block, as in ggml-common.h.
const (
	QK4_0      = 32
	SizeQ4_0   = 2 + QK4_0/2 // half d; 16 bytes of nibbles
	QK5_0      = 32
	SizeQ5_0   = 2 + 4 + QK5_0/2 // half d; 32 high bits; 16 bytes of nibbles
	QK5_1      = 32
	SizeQ5_1   = 2 + 2 + 4 + QK5_1/2 // half d, half m; 32 high bits; 16 bytes of nibbles
	QK8_0      = 32
	SizeQ8_0   = 2 + QK8_0 // half d; 32 int8
	QKMXFP4    = 32
	SizeMXFP4  = 1 + QKMXFP4/2 // E8M0 exponent; 16 bytes of nibbles
	QKK        = 256
	SizeQ4_K   = 2 + 2 + 12 + QKK/2         // half d, half dmin, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles
	SizeQ5_K   = 2 + 2 + 12 + QKK/8 + QKK/2 // d, dmin, scales, qh, qs
	SizeQ6_K   = QKK/2 + QKK/4 + QKK/16 + 2 // ql, qh, int8 scales, half d
	kScaleSize = 12
)

// fp16 rounds f to IEEE half (round to nearest even), as GGML_FP32_TO_FP16.
func fp16(f float32) uint16 { return tensor.F32ToF16(f) }

// fp32 widens IEEE half bits, as GGML_FP16_TO_FP32.
func fp32(h uint16) float32 { return tensor.F16ToF32(h) }

// absf is fabsf.
func absf(x float32) float32 { return math.Float32frombits(math.Float32bits(x) &^ (1 << 31)) }

// nearestInt is ggml's nearest_int: round to nearest, ties to even, through
// the 1.5·2^23 float addition (valid for |f| ≤ 4194303).
func nearestInt(f float32) int32 {
	v := f + 12582912
	return int32(math.Float32bits(v)&0x007fffff) - 0x00400000
}

// signedMaxScale is the scale of the symmetric legacy quantizers: d =
// max/div where max is the signed element of largest magnitude (the first
// one on ties), and its inverse id (0 when d is 0).
func signedMaxScale(xb []float32, div float32) (d, id float32) {
	var amax, max float32
	for _, v := range xb {
		if amax < absf(v) {
			amax = absf(v)
			max = v
		}
	}
	d = max / div
	if d != 0 {
		id = 1 / d
	}
	return d, id
}

// EncodeQ4_0 writes len(x)/32 Q4_0 blocks to dst (quantize_row_q4_0_ref):
// d = max/−8 where max is the signed element of largest magnitude (first one
// on ties), q = min(15, trunc(x/d + 8.5)).
func EncodeQ4_0(dst []byte, x []float32) {
	nb := len(x) / QK4_0
	for i := 0; i < nb; i++ {
		xb := x[i*QK4_0 : (i+1)*QK4_0]
		d, id := signedMaxScale(xb, -8)
		b := dst[i*SizeQ4_0 : (i+1)*SizeQ4_0]
		binary.LittleEndian.PutUint16(b, fp16(d))
		for j := 0; j < QK4_0/2; j++ {
			x0 := float32(xb[j] * id)
			x1 := float32(xb[QK4_0/2+j] * id)
			b[2+j] = trunc15(x0+8.5) | trunc15(x1+8.5)<<4
		}
	}
}

// trunc15 is MIN(15, (int8_t)v) for the v ∈ [0, 17) the legacy quantizers
// produce, kept total for other inputs.
func trunc15(v float32) uint8 {
	if !(v < 15) { // also NaN
		return 15
	}
	if v < 0 {
		return 0
	}
	return uint8(int32(v))
}

// EncodeQ5_0 writes len(x)/32 Q5_0 blocks to dst (quantize_row_q5_0_ref):
// d = max/−16, q = min(31, trunc(x/d + 16.5)), the fifth bits packed into a
// little-endian uint32.
func EncodeQ5_0(dst []byte, x []float32) {
	nb := len(x) / QK5_0
	for i := 0; i < nb; i++ {
		xb := x[i*QK5_0 : (i+1)*QK5_0]
		d, id := signedMaxScale(xb, -16)
		b := dst[i*SizeQ5_0 : (i+1)*SizeQ5_0]
		binary.LittleEndian.PutUint16(b, fp16(d))
		var qh uint32
		for j := 0; j < QK5_0/2; j++ {
			x0 := float32(xb[j] * id)
			x1 := float32(xb[QK5_0/2+j] * id)
			xi0 := trunc31(x0 + 16.5)
			xi1 := trunc31(x1 + 16.5)
			b[6+j] = xi0&0x0f | (xi1&0x0f)<<4
			qh |= uint32(xi0>>4&1) << j
			qh |= uint32(xi1>>4&1) << (j + QK5_0/2)
		}
		binary.LittleEndian.PutUint32(b[2:], qh)
	}
}

// trunc31 is MIN(31, (int8_t)v) for Q5_0.
func trunc31(v float32) uint8 {
	if !(v < 31) {
		return 31
	}
	if v < 0 {
		return 0
	}
	return uint8(int32(v))
}

// EncodeQ5_1 writes len(x)/32 Q5_1 blocks to dst (quantize_row_q5_1_ref):
// d = (max−min)/31, m = min, q = (uint8)((x−min)/d + 0.5).
func EncodeQ5_1(dst []byte, x []float32) {
	nb := len(x) / QK5_1
	for i := 0; i < nb; i++ {
		xb := x[i*QK5_1 : (i+1)*QK5_1]
		min, max := float32(math.MaxFloat32), float32(-math.MaxFloat32)
		for _, v := range xb {
			if v < min {
				min = v
			}
			if v > max {
				max = v
			}
		}
		d := (max - min) / 31
		var id float32
		if d != 0 {
			id = 1 / d
		}
		b := dst[i*SizeQ5_1 : (i+1)*SizeQ5_1]
		binary.LittleEndian.PutUint16(b, fp16(d))
		binary.LittleEndian.PutUint16(b[2:], fp16(min))
		var qh uint32
		for j := 0; j < QK5_1/2; j++ {
			x0 := float32(float32(xb[j]-min) * id)
			x1 := float32(float32(xb[QK5_1/2+j]-min) * id)
			xi0 := truncU8(x0 + 0.5)
			xi1 := truncU8(x1 + 0.5)
			b[8+j] = xi0&0x0f | (xi1&0x0f)<<4
			qh |= uint32(xi0>>4&1) << j
			qh |= uint32(xi1>>4&1) << (j + QK5_1/2)
		}
		binary.LittleEndian.PutUint32(b[4:], qh)
	}
}

// truncU8 is the (uint8_t) conversion of a v in [0, 32) (Q5_1), kept total.
func truncU8(v float32) uint8 {
	if !(v >= 0) {
		return 0
	}
	if v >= 255 {
		return 255
	}
	return uint8(int32(v))
}

// EncodeQ8_0 writes len(x)/32 Q8_0 blocks to dst (quantize_row_q8_0_ref):
// d = amax/127, q = roundf(x·(1/d)) (ties away from zero).
func EncodeQ8_0(dst []byte, x []float32) {
	nb := len(x) / QK8_0
	for i := 0; i < nb; i++ {
		xb := x[i*QK8_0 : (i+1)*QK8_0]
		var amax float32
		for _, v := range xb {
			if a := absf(v); a > amax {
				amax = a
			}
		}
		d := amax / 127
		var id float32
		if d != 0 {
			id = 1 / d
		}
		b := dst[i*SizeQ8_0 : (i+1)*SizeQ8_0]
		binary.LittleEndian.PutUint16(b, fp16(d))
		for j, v := range xb {
			r := math.Round(float64(float32(v * id)))
			if r > 127 { // cannot happen for finite input; keep the conversion defined
				r = 127
			} else if r < -128 || r != r {
				r = -128
			}
			b[2+j] = uint8(int8(r))
		}
	}
}

// MXFP4Values are ggml's kvalues_mxfp4: twice the E2M1 values, indexed by
// the 4-bit code (bit 3 is the sign).
var MXFP4Values = [16]int8{0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12}

// E8M0Half is GGML_E8M0_TO_FP32_HALF: 2^(e−128), the multiplier of the
// doubled MXFP4 values.
func E8M0Half(e uint8) float32 {
	if e < 2 {
		return math.Float32frombits(0x00200000 << e)
	}
	return math.Float32frombits(uint32(e-1) << 23)
}

// EncodeMXFP4 writes len(x)/32 MXFP4 blocks to dst (quantize_row_mxfp4_ref):
// e = floor(log2f(amax)) − 2 + 127 (0 for an all-zero block), each element
// the first code of least |value·2^(e−128) − x| (ties go to the smaller
// code, which differs from round-half-even at the midpoints).
func EncodeMXFP4(dst []byte, x []float32) {
	nb := len(x) / QKMXFP4
	for i := 0; i < nb; i++ {
		xb := x[i*QKMXFP4 : (i+1)*QKMXFP4]
		var amax float32
		for _, v := range xb {
			if amax < absf(v) {
				amax = absf(v)
			}
		}
		e := mxfp4Exponent(amax)
		d := E8M0Half(e)
		b := dst[i*SizeMXFP4 : (i+1)*SizeMXFP4]
		b[0] = e
		for j := 0; j < QKMXFP4/2; j++ {
			b[1+j] = bestMXFP4(xb[j], d) | bestMXFP4(xb[QKMXFP4/2+j], d)<<4
		}
	}
}

// mxfp4Exponent is (uint8_t)(floorf(log2f(amax)) − 2 + 127), with log2f
// taken as the float32 rounding of the exact logarithm (what glibc's
// correctly rounded log2f returns), and saturated where the C conversion
// would be undefined.
func mxfp4Exponent(amax float32) uint8 {
	if !(amax > 0) {
		return 0
	}
	l := float32(math.Log2(float64(amax)))
	e := math.Floor(float64(l)) - 2 + 127
	if e < 0 {
		return 0
	}
	if e > 255 {
		return 255
	}
	return uint8(e)
}

// bestMXFP4 is best_index_mxfp4.
func bestMXFP4(x, d float32) uint8 {
	best := 0
	bestErr := absf(float32(float32(MXFP4Values[0])*d) - x)
	for i := 1; i < 16; i++ {
		err := absf(float32(float32(MXFP4Values[i])*d) - x)
		if err < bestErr {
			best, bestErr = i, err
		}
	}
	return uint8(best)
}
