package quant

import (
	"math"

	"github.com/marlin-llm/marlin/tensor"
)

// This file holds the element and scale codecs. Every function here is pure
// and table-free or backed by a small exported table, so that the CPU and
// Metal kernels can mirror it bit for bit. The FP8, F16 and BF16 codecs are
// tensor's (the lower layer); only E5M2's saturation is added here.

// E2M1Values maps the 16 FP4 E2M1 codes to their values. Bit 3 is the sign,
// bits 2..1 the exponent (bias 1) and bit 0 the mantissa; exponent 0 is
// subnormal (0 and 0.5). Code 8 is -0.
var E2M1Values = [16]float32{
	0, 0.5, 1, 1.5, 2, 3, 4, 6,
	negZero, -0.5, -1, -1.5, -2, -3, -4, -6,
}

// negZero is float32 −0 (a Go constant −0 would be +0).
var negZero = math.Float32frombits(0x80000000)

// E2M1Max is the largest E2M1 magnitude.
const E2M1Max = 6

// EncodeE2M1 rounds x to the nearest E2M1 value, ties to the even code
// (0.25→0, 0.75→1, 1.25→1, 1.75→2, 2.5→2, 3.5→4, 5→4), saturating at ±6, and
// returns its 4-bit code. The sign of zero is kept (-0.1 → code 8). NaN
// encodes as +0 (callers reject NaN weights before quantizing).
func EncodeE2M1(x float32) uint8 {
	b := math.Float32bits(x)
	sign := uint8(b>>28) & 8
	return sign | e2m1Mag(b&0x7fffffff)
}

// e2m1Mag encodes a non-negative float32 (given as bits) to a 3-bit E2M1
// magnitude code with round-to-nearest-even and saturation.
func e2m1Mag(a uint32) uint8 {
	if a >= 0x3f800000 { // a >= 1: round the float32 mantissa to 1 bit (RNE)
		if a > 0x7f800000 { // NaN
			return 0
		}
		r := (a + 0x1fffff + ((a >> 22) & 1)) >> 22 // (exp<<1 | m), exp biased by 127
		c := r - 252                                // 1.0 → 2
		if c > 7 {
			c = 7
		}
		return uint8(c)
	}
	// a < 1: the grid is {0, 0.5, 1} = code/2, so the code is rne(2a).
	v := math.Float32frombits(a) * 2
	v = (v + 12582912) - 12582912 // 1.5·2^23: float32 addition rounds to an integer, ties to even
	return uint8(v)
}

// DecodeE2M1 returns the value of a 4-bit E2M1 code (high bits ignored).
func DecodeE2M1(code uint8) float32 { return E2M1Values[code&15] }

// E4M3Max is the largest finite OCP FP8 E4M3 (E4M3FN) magnitude.
const E4M3Max = 448

// E5M2Max is the largest finite OCP FP8 E5M2 magnitude.
const E5M2Max = 57344

// EncodeE4M3 converts x to OCP FP8 E4M3 (bias 7, no infinities, NaN =
// S.1111.111) with round-to-nearest-even and saturation: finite values beyond
// ±448 and ±Inf become ±448 (code 0x7E/0xFE). Subnormals (exponent 0,
// m/8·2^-6) are produced exactly; magnitudes at or below 2^-10 round to zero.
// NaN becomes 0x7F with x's sign. This equals torch's float8_e4m3fn cast of
// x clamped to [-448, 448]. It is tensor.F32ToE4M3.
func EncodeE4M3(x float32) uint8 { return tensor.F32ToE4M3(x) }

// EncodeE5M2 converts x to OCP FP8 E5M2 (bias 15, IEEE-like: 0x7C is +Inf,
// 0x7D..0x7F NaN) with round-to-nearest-even and saturation: finite values
// beyond ±57344 become ±57344 (0x7B); ±Inf stays ±Inf; NaN becomes 0x7F with
// x's sign. This equals torch's float8_e5m2 cast of x clamped to
// [-57344, 57344] for finite x. It differs from tensor.F32ToE5M2 (which
// overflows to ±Inf, as an IEEE cast does) only for finite |x| that round
// past 57344: quantized weights and scales must stay finite.
func EncodeE5M2(x float32) uint8 {
	switch {
	case x > E5M2Max && x <= math.MaxFloat32:
		return 0x7b
	case x < -E5M2Max && x >= -math.MaxFloat32:
		return 0xfb
	}
	return tensor.F32ToE5M2(x)
}

// DecodeE4M3 returns the value of an OCP FP8 E4M3 code (NaN for S.1111.111).
func DecodeE4M3(c uint8) float32 { return E4M3Values[c] }

// DecodeE5M2 returns the value of an OCP FP8 E5M2 code.
func DecodeE5M2(c uint8) float32 { return E5M2Values[c] }

// E4M3Values and E5M2Values decode every FP8 code (NaN codes decode to NaN,
// E5M2 0x7C/0xFC to ±Inf): exponent 0 is subnormal (m·2^(1-bias-mbits)),
// otherwise (1+m/2^mbits)·2^(e-bias). They are copies of tensor's decode
// tables, exported so that kernels can mirror them.
var (
	E4M3Values = fp8Values(tensor.E4M3ToF32)
	E5M2Values = fp8Values(tensor.E5M2ToF32)
)

func fp8Values(decode func(uint8) float32) (t [256]float32) {
	for c := range t {
		t[c] = decode(uint8(c))
	}
	return t
}

// E8M0 is the OCP MX shared-scale type: an unsigned biased exponent, value
// 2^(code-127), code 255 = NaN. Code 0 is 2^-127.

// E8M0NaN is the E8M0 NaN code.
const E8M0NaN = 0xff

// EncodeE8M0 returns the E8M0 code of 2^e, clamping e to [-127, 127].
func EncodeE8M0(e int) uint8 {
	if e < -127 {
		e = -127
	}
	if e > 127 {
		e = 127
	}
	return uint8(e + 127)
}

// DecodeE8M0 returns 2^(code-127) as float32 (2^-127 is a float32
// subnormal and is exact) and NaN for code 255.
func DecodeE8M0(code uint8) float32 {
	if code == E8M0NaN {
		return float32(math.NaN())
	}
	if code == 0 {
		return math.Float32frombits(1 << 22) // 2^-127, the one subnormal scale
	}
	return math.Float32frombits(uint32(code) << 23) // 2^(code-127), exact
}

// MXSharedExp returns the OCP MX v1.0 shared exponent of a block with
// absolute maximum amax for an element format whose largest power of two is
// 2^emaxElem (2 for E2M1): floor(log2(amax)) − emaxElem, computed exactly from
// the float32 exponent bits (no log2 rounding), clamped to [-127, 127]. A
// zero block gets −127 (as the OCP reference emulation, which adds the
// smallest normal to a zero max). amax must be finite and non-negative.
func MXSharedExp(amax float32, emaxElem int) int {
	b := math.Float32bits(amax) & 0x7fffffff
	var e int
	switch {
	case b == 0:
		return -127
	case b < 0x00800000: // subnormal amax: exponent from the leading bit
		e = -127
		for m := b; m >= 2; m >>= 1 {
			e++
		}
		e -= 22
	default:
		e = int(b>>23) - 127
	}
	e -= emaxElem
	if e < -127 {
		e = -127
	}
	if e > 127 {
		e = 127
	}
	return e
}

// EncodeF16 converts x to IEEE binary16 bits with round-to-nearest-even
// (overflow to ±Inf, as IEEE conversion does). It is tensor.F32ToF16.
func EncodeF16(x float32) uint16 { return tensor.F32ToF16(x) }

// DecodeF16 returns the float32 value of binary16 bits (exact). It is
// tensor.F16ToF32.
func DecodeF16(h uint16) float32 { return tensor.F16ToF32(h) }

// EncodeBF16 converts x to bfloat16 bits with round-to-nearest-even; NaN
// stays a (quiet) NaN. It is tensor.F32ToBF16.
func EncodeBF16(x float32) uint16 { return tensor.F32ToBF16(x) }

// DecodeBF16 returns the float32 value of bfloat16 bits (exact). It is
// tensor.BF16ToF32.
func DecodeBF16(h uint16) float32 { return tensor.BF16ToF32(h) }

// NF4Values is the QLoRA NormalFloat4 table (Dettmers et al. 2023, as in
// bitsandbytes), indexed by code. Values are relative to the group absmax.
var NF4Values = [16]float32{
	-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
	-0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
	0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
	0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
}

// NF3Values is the 3-bit NormalFloat table built with QLoRA's construction
// (create_normal_map with offset 0.9677083 and 2^(k-1) positive, 2^(k-1)−1
// negative levels plus zero, normalised to ±1) for k = 3. NormalMap
// reproduces both tables (tested).
var NF3Values = [8]float32{
	-1.0, -0.47862917, -0.21714182, 0.0,
	0.16093017, 0.33791518, 0.56261694, 1.0,
}

// NormalMap computes the k-bit NormalFloat levels with QLoRA's construction
// in float64: positives Φ⁻¹(linspace(offset, 0.5, 2^(k-1)+1)[:-1]), negatives
// −Φ⁻¹(linspace(offset, 0.5, 2^(k-1))[:-1]), plus 0, sorted and divided by
// the largest. It documents where NF4Values/NF3Values come from.
func NormalMap(k int, offset float64) []float64 {
	ppf := func(p float64) float64 { return math.Sqrt2 * math.Erfinv(2*p-1) }
	lin := func(a, b float64, n int) []float64 {
		out := make([]float64, n)
		for i := range out {
			out[i] = a + (b-a)*float64(i)/float64(n-1)
		}
		return out
	}
	half := 1 << (k - 1)
	var v []float64
	for _, p := range lin(offset, 0.5, half+1)[:half] {
		v = append(v, ppf(p))
	}
	v = append(v, 0)
	for _, p := range lin(offset, 0.5, half)[:half-1] {
		v = append(v, -ppf(p))
	}
	mx := 0.0
	for _, x := range v {
		mx = math.Max(mx, math.Abs(x))
	}
	for i := range v {
		v[i] /= mx
	}
	// insertion sort: tiny slice
	for i := 1; i < len(v); i++ {
		for j := i; j > 0 && v[j] < v[j-1]; j-- {
			v[j], v[j-1] = v[j-1], v[j]
		}
	}
	return v
}

// NF4Mid and NF3Mid are the decision thresholds of the NF codes, padded
// with +Inf; EncodeNF returns the number of thresholds strictly below x, so
// a value exactly on a threshold takes the lower code. NF4Mid holds the
// float32 literals of bitsandbytes' NF4 decision tree (dQuantizeNF4), the
// midpoints of adjacent levels (tested to lie within one float32 step of
// the exact midpoints); NF3Mid holds the float64 midpoints of NF3Values
// rounded to float32.
var (
	NF4Mid = [16]float32{
		-0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544,
		-0.23460740596055984, -0.13791173323988914, -0.045525018125772476, 0.03979014977812767,
		0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
		0.5016634166240692, 0.6427869200706482, 0.8614784181118011, float32(math.Inf(1)),
	}
	NF3Mid = nfMids(NF3Values[:])
)

func nfMids(levels []float32) (m [16]float32) {
	for i := range m {
		m[i] = float32(math.Inf(1))
	}
	for i := 0; i+1 < len(levels); i++ {
		m[i] = float32((float64(levels[i]) + float64(levels[i+1])) / 2)
	}
	return m
}

// EncodeNF returns the NF code of x (already divided by the group scale)
// for a table of 2^bits levels with thresholds mid (NF4Mid or NF3Mid): a
// branch-free binary search counting the thresholds below x (x > m exactly
// when m − x is negative, so the sign bit of the float32 difference is the
// comparison). NaN gives 0.
func EncodeNF(x float32, mid *[16]float32, bits int) uint8 {
	if x != x {
		return 0
	}
	idx := uint32(0)
	for s := uint32(1) << (bits - 1); s > 0; s >>= 1 {
		idx += (math.Float32bits(mid[(idx+s-1)&15]-x) >> 31) * s
	}
	return uint8(idx)
}

// roundEven rounds x to the nearest integer, ties to even (ROUNDSD on
// amd64 CPUs with SSE4.1).
func roundEven(x float32) float32 {
	return float32(math.RoundToEven(float64(x)))
}
