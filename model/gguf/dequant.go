package gguf

import (
	"encoding/binary"
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/marlin-llm/marlin/tensor"
)

// Dequantization follows ggml's reference C code (dequantize_row_* in
// ggml/src/ggml-quants.c) operation by operation, in float32, so results are
// bit-identical to ggml's scalar path. Products that feed an addition are
// wrapped in explicit float32 conversions, which forbids the Go compiler
// from fusing them into FMA instructions (as it may on arm64).

// kvaluesFP4 are the E2M1 values doubled (ggml's kvalues_mxfp4).
var kvaluesFP4 = [16]int8{0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12}

// kvaluesIQ4NL is ggml's kvalues_iq4nl.
var kvaluesIQ4NL = [16]int8{-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113}

// CanDequantize reports whether Dequantize supports type t.
func CanDequantize(t GGMLType) bool {
	switch t {
	case TypeF32, TypeF16, TypeBF16, TypeF64, TypeQ4_0, TypeQ4_1, TypeQ5_0, TypeQ5_1, TypeQ8_0,
		TypeQ2_K, TypeQ3_K, TypeQ4_K, TypeQ5_K, TypeQ6_K, TypeMXFP4, TypeIQ4_NL, TypeIQ4_XS:
		return true
	}
	return false
}

// Dequantize converts n elements of type t stored in src to float32.
func Dequantize(t GGMLType, src []byte, n int64) ([]float32, error) {
	size, err := t.RowSize(n)
	if err != nil {
		return nil, err
	}
	if int64(len(src)) != size {
		return nil, fmt.Errorf("%s: %d elements need %d bytes, have %d", t, n, size, len(src))
	}
	if !CanDequantize(t) {
		return nil, fmt.Errorf("dequantizing %s is not supported", t)
	}
	dst := make([]float32, n)
	return dst, DequantizeInto(dst, t, src)
}

// DequantizeInto converts src (len(dst) elements of type t) into dst.
func DequantizeInto(dst []float32, t GGMLType, src []byte) error {
	size, err := t.RowSize(int64(len(dst)))
	if err != nil {
		return err
	}
	if int64(len(src)) != size {
		return fmt.Errorf("%s: %d elements need %d bytes, have %d", t, len(dst), size, len(src))
	}
	info := typeTable[t]
	bs, ts := info.BlockSize, info.TypeSize
	blocks := len(dst) / bs
	var fn func(y []float32, x []byte)
	switch t {
	case TypeF32:
		return tensor.DecodeFloat32(dst, tensor.F32, src)
	case TypeF16:
		return tensor.DecodeFloat32(dst, tensor.F16, src)
	case TypeBF16:
		return tensor.DecodeFloat32(dst, tensor.BF16, src)
	case TypeF64:
		return tensor.DecodeFloat32(dst, tensor.F64, src)
	case TypeQ4_0:
		fn = dequantQ4_0
	case TypeQ4_1:
		fn = dequantQ4_1
	case TypeQ5_0:
		fn = dequantQ5_0
	case TypeQ5_1:
		fn = dequantQ5_1
	case TypeQ8_0:
		fn = dequantQ8_0
	case TypeQ2_K:
		fn = dequantQ2_K
	case TypeQ3_K:
		fn = dequantQ3_K
	case TypeQ4_K:
		fn = dequantQ4_K
	case TypeQ5_K:
		fn = dequantQ5_K
	case TypeQ6_K:
		fn = dequantQ6_K
	case TypeMXFP4:
		fn = dequantMXFP4
	case TypeIQ4_NL:
		fn = dequantIQ4_NL
	case TypeIQ4_XS:
		fn = dequantIQ4_XS
	default:
		return fmt.Errorf("dequantizing %s is not supported", t)
	}
	run := func(lo, hi int) {
		for i := lo; i < hi; i++ {
			fn(dst[i*bs:(i+1)*bs], src[i*ts:(i+1)*ts])
		}
	}
	// Large tensors are split across cores in contiguous block ranges.
	workers := min(runtime.GOMAXPROCS(0), blocks/parallelBlocks)
	if workers <= 1 {
		run(0, blocks)
		return nil
	}
	var wg sync.WaitGroup
	per := (blocks + workers - 1) / workers
	for lo := 0; lo < blocks; lo += per {
		wg.Add(1)
		go func(lo, hi int) {
			defer wg.Done()
			run(lo, hi)
		}(lo, min(lo+per, blocks))
	}
	wg.Wait()
	return nil
}

// parallelBlocks is the number of blocks per goroutine below which
// dequantization stays on one core.
const parallelBlocks = 4096

func f16(b []byte) float32 { return tensor.F16ToF32(binary.LittleEndian.Uint16(b)) }

// E8M0ToF32Half is ggml_e8m0_to_fp32_half: 2^(x-128), i.e. half the E8M0
// scale, matching the doubled E2M1 table.
func E8M0ToF32Half(x uint8) float32 {
	if x < 2 {
		return math.Float32frombits(0x00200000 << x)
	}
	return math.Float32frombits(uint32(x-1) << 23)
}

func dequantQ4_0(y []float32, x []byte) {
	d := f16(x)
	qs := x[2:18]
	for j := range 16 {
		y[j] = float32(int(qs[j]&0x0f)-8) * d
		y[j+16] = float32(int(qs[j]>>4)-8) * d
	}
}

func dequantQ4_1(y []float32, x []byte) {
	d, m := f16(x), f16(x[2:])
	qs := x[4:20]
	for j := range 16 {
		y[j] = float32(float32(qs[j]&0x0f)*d) + m
		y[j+16] = float32(float32(qs[j]>>4)*d) + m
	}
}

func dequantQ5_0(y []float32, x []byte) {
	d := f16(x)
	qh := binary.LittleEndian.Uint32(x[2:])
	qs := x[6:22]
	for j := range 16 {
		xh0 := uint8((qh>>uint(j))<<4) & 0x10
		xh1 := uint8(qh>>uint(j+12)) & 0x10
		y[j] = float32(int32(qs[j]&0x0f|xh0)-16) * d
		y[j+16] = float32(int32(qs[j]>>4|xh1)-16) * d
	}
}

func dequantQ5_1(y []float32, x []byte) {
	d, m := f16(x), f16(x[2:])
	qh := binary.LittleEndian.Uint32(x[4:])
	qs := x[8:24]
	for j := range 16 {
		xh0 := uint8((qh>>uint(j))<<4) & 0x10
		xh1 := uint8(qh>>uint(j+12)) & 0x10
		y[j] = float32(float32(qs[j]&0x0f|xh0)*d) + m
		y[j+16] = float32(float32(qs[j]>>4|xh1)*d) + m
	}
}

func dequantQ8_0(y []float32, x []byte) {
	d := f16(x)
	for j, q := range x[2:34] {
		y[j] = float32(int8(q)) * d
	}
}

func dequantMXFP4(y []float32, x []byte) {
	d := E8M0ToF32Half(x[0])
	qs := x[1:17]
	for j := range 16 {
		y[j] = float32(kvaluesFP4[qs[j]&0x0f]) * d
		y[j+16] = float32(kvaluesFP4[qs[j]>>4]) * d
	}
}

func dequantIQ4_NL(y []float32, x []byte) {
	d := f16(x)
	qs := x[2:18]
	for j := range 16 {
		y[j] = d * float32(kvaluesIQ4NL[qs[j]&0x0f])
		y[j+16] = d * float32(kvaluesIQ4NL[qs[j]>>4])
	}
}

// dequantIQ4_XS is dequantize_row_iq4_xs: eight sub-blocks of 32 with
// 6-bit scales ls (low nibbles in scales_l, high bit pairs in scales_h),
// dl = d·(ls − 32), y = dl·kvalues_iq4nl[q].
func dequantIQ4_XS(y []float32, x []byte) {
	d := f16(x)
	sh := binary.LittleEndian.Uint16(x[2:])
	sl := x[4:8]
	qs := x[8:136]
	for ib := range 8 {
		ls := int32((sl[ib/2]>>(4*(ib%2)))&0x0f) | int32((sh>>(2*ib))&3)<<4
		dl := d * float32(ls-32)
		for j := range 16 {
			y[32*ib+j] = dl * float32(kvaluesIQ4NL[qs[j]&0x0f])
			y[32*ib+j+16] = dl * float32(kvaluesIQ4NL[qs[j]>>4])
		}
		qs = qs[16:]
	}
}

// scaleMinK4 is ggml's get_scale_min_k4: 6-bit scale and min j of the
// 12-byte packed scales of a Q4_K/Q5_K block.
func scaleMinK4(j int, q []byte) (uint8, uint8) {
	if j < 4 {
		return q[j] & 63, q[j+4] & 63
	}
	return q[j+4]&0x0f | (q[j-4]>>6)<<4, q[j+4]>>4 | (q[j]>>6)<<4
}

func dequantQ4_K(y []float32, x []byte) {
	d, dmin := f16(x), f16(x[2:])
	scales := x[4:16]
	q := x[16:144]
	is := 0
	for j := 0; j < qkK; j += 64 {
		sc, m := scaleMinK4(is, scales)
		d1, m1 := d*float32(sc), dmin*float32(m)
		sc, m = scaleMinK4(is+1, scales)
		d2, m2 := d*float32(sc), dmin*float32(m)
		for l := range 32 {
			y[j+l] = float32(d1*float32(q[l]&0x0f)) - m1
		}
		for l := range 32 {
			y[j+32+l] = float32(d2*float32(q[l]>>4)) - m2
		}
		q = q[32:]
		is += 2
	}
}

func dequantQ6_K(y []float32, x []byte) {
	ql := x[0:128]
	qh := x[128:192]
	sc := x[192:208]
	d := f16(x[208:])
	for n := 0; n < qkK; n += 128 {
		for l := range 32 {
			is := l / 16
			q1 := int8(ql[l]&0x0f|((qh[l]>>0)&3)<<4) - 32
			q2 := int8(ql[l+32]&0x0f|((qh[l]>>2)&3)<<4) - 32
			q3 := int8(ql[l]>>4|((qh[l]>>4)&3)<<4) - 32
			q4 := int8(ql[l+32]>>4|((qh[l]>>6)&3)<<4) - 32
			y[n+l] = d * float32(int8(sc[is])) * float32(q1)
			y[n+l+32] = d * float32(int8(sc[is+2])) * float32(q2)
			y[n+l+64] = d * float32(int8(sc[is+4])) * float32(q3)
			y[n+l+96] = d * float32(int8(sc[is+6])) * float32(q4)
		}
		ql = ql[64:]
		qh = qh[32:]
		sc = sc[8:]
	}
}

func dequantQ2_K(y []float32, x []byte) {
	scales := x[0:16]
	q := x[16:80]
	d, dmin := f16(x[80:]), f16(x[82:])
	is := 0
	o := 0
	for n := 0; n < qkK; n += 128 {
		shift := uint(0)
		for range 4 {
			sc := scales[is]
			is++
			dl, ml := d*float32(sc&0x0f), dmin*float32(sc>>4)
			for l := range 16 {
				y[o] = float32(dl*float32(int8((q[l]>>shift)&3))) - ml
				o++
			}
			sc = scales[is]
			is++
			dl, ml = d*float32(sc&0x0f), dmin*float32(sc>>4)
			for l := range 16 {
				y[o] = float32(dl*float32(int8((q[l+16]>>shift)&3))) - ml
				o++
			}
			shift += 2
		}
		q = q[32:]
	}
}

func dequantQ3_K(y []float32, x []byte) {
	hm := x[0:32]
	q := x[32:96]
	d := f16(x[108:])
	const kmask1, kmask2 = 0x03030303, 0x0f0f0f0f
	var aux [4]uint32
	for i := range 3 {
		aux[i] = binary.LittleEndian.Uint32(x[96+4*i:])
	}
	tmp := aux[2]
	aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4)
	aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4)
	aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4)
	aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4)
	var scales [16]int8
	for i := range scales {
		scales[i] = int8(aux[i/4] >> (8 * (i % 4)))
	}
	is, o := 0, 0
	m := uint8(1)
	for n := 0; n < qkK; n += 128 {
		shift := uint(0)
		for range 4 {
			dl := d * float32(int(scales[is])-32)
			is++
			for l := range 16 {
				v := int(int8((q[l] >> shift) & 3))
				if hm[l]&m == 0 {
					v -= 4
				}
				y[o] = dl * float32(v)
				o++
			}
			dl = d * float32(int(scales[is])-32)
			is++
			for l := range 16 {
				v := int(int8((q[l+16] >> shift) & 3))
				if hm[l+16]&m == 0 {
					v -= 4
				}
				y[o] = dl * float32(v)
				o++
			}
			shift += 2
			m <<= 1
		}
		q = q[32:]
	}
}

func dequantQ5_K(y []float32, x []byte) {
	d, dmin := f16(x), f16(x[2:])
	scales := x[4:16]
	qh := x[16:48]
	ql := x[48:176]
	is, o := 0, 0
	u1, u2 := uint8(1), uint8(2)
	for j := 0; j < qkK; j += 64 {
		sc, m := scaleMinK4(is, scales)
		d1, m1 := d*float32(sc), dmin*float32(m)
		sc, m = scaleMinK4(is+1, scales)
		d2, m2 := d*float32(sc), dmin*float32(m)
		for l := range 32 {
			v := int(ql[l] & 0x0f)
			if qh[l]&u1 != 0 {
				v += 16
			}
			y[o] = float32(d1*float32(v)) - m1
			o++
		}
		for l := range 32 {
			v := int(ql[l] >> 4)
			if qh[l]&u2 != 0 {
				v += 16
			}
			y[o] = float32(d2*float32(v)) - m2
			o++
		}
		ql = ql[32:]
		is += 2
		u1 <<= 2
		u2 <<= 2
	}
}
