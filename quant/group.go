package quant

import (
	"math"
)

// GroupScale is the fitted scale (and zero point) of one group: what a
// quantizer chooses once per (row, group) and then uses for every weight of
// the group.
type GroupScale struct {
	// Code is the scale as stored: F16/BF16 bits, F32 bits, the E8M0 code or
	// the E4M3 code, in the low bytes.
	Code uint32
	// Zero is the zero point of asymmetric integer formats (0 otherwise).
	Zero uint8
	// Mul is the float32 dequantization multiplier: the decoded scale, times
	// the tensor scale for NVFP4 (computed in float32 as decode(Code) ·
	// TensorScale). value = element · Mul. Mul == 0 marks a group that
	// quantizes every weight to zero (all-zero group).
	Mul float32
	// NaN is set for an OCP MX block whose scale is NaN (E8M0 0xFF):
	// every element dequantizes to NaN. Only produced when non-finite
	// weights are passed through.
	NaN bool
}

// FitOptions tune FitGroup.
type FitOptions struct {
	// ClipRatios, when not empty, turns on scale search: each ratio r scales
	// the group's range (absmax·r, or [min·r, max·r] for asymmetric
	// formats) and the candidate with the least (weighted) squared error
	// wins; ties keep the earlier ratio. Include 1 to allow no clipping.
	// For E8M0 scales (MXFP4) any non-empty list instead tries the OCP
	// exponent and its two neighbours.
	ClipRatios []float32
	// Weights optionally weighs each element's squared error (e.g. the
	// Hessian diagonal in GPTQ); nil means all ones.
	Weights []float32
}

// The default scale-search grid: ClipGridSize clipping ratios from 1 down
// in steps of ClipGridStep (1, 0.98, ..., 0.70).
const (
	ClipGridSize = 16
	ClipGridStep = 0.02
)

// ClipGrid returns the default scale-search grid in T's precision: ratio i
// is 1 − ClipGridStep·i computed in T, so the float32 grid of RTN and the
// float64 grid of GPTQ (gptq.DefaultClipRatios) hold the same decimals
// rounded each to its type.
func ClipGrid[T float32 | float64]() []T {
	r := make([]T, ClipGridSize)
	for i := range r {
		r[i] = 1 - ClipGridStep*T(i)
	}
	return r
}

// DefaultClipRatios is the scale-search grid used by `scale_search: true`:
// ClipGrid in float32.
func DefaultClipRatios() []float32 { return ClipGrid[float32]() }

// TensorScaleFor returns the FP32 per-tensor scale of formats with
// TensorScale (NVFP4: absmax/(6·448), in float32) and 1 for other formats.
// GPTQ must fix it from the whole tensor before fitting any group.
func (f Format) TensorScaleFor(absmax float32) float32 {
	if !f.TensorScale {
		return 1
	}
	return absmax / (E2M1Max * E4M3Max)
}

// FitGroup fits the scale of one group of weights w (one row's slice of at
// most GroupSize weights; any slice for GPTQ). tensorScale is the value from
// TensorScaleFor (ignored by formats without a tensor scale). Non-finite
// weights are ignored (a caller that passes them through gets an MX NaN
// scale for MXFP4, as OCP MX requires). Without scale search the rules are:
//
//	fp4 (E2M1, FP16 scale): s = enc(absmax/6)
//	mxfp4: s = 2^(floor(log2 absmax) − 2) (E8M0), zero block → 2^-127
//	nvfp4: s = to_e4m3(absmax/6/g) (RNE, saturating), Mul = s·g
//	intB symmetric: s = enc(absmax / (2^(B−1)−1))
//	intB asymmetric (GPTQ's rule): lo = min(min,0), hi = max(max,0),
//	  s = enc((hi−lo)/(2^B−1)), zero = clamp(rne(−lo/s), 0, 2^B−1)
//	nf: s = enc(absmax); fp8: s = enc(absmax/max)
//
// where enc rounds to the scale type (RNE). For bf16/f16 it returns Mul 1.
func (f Format) FitGroup(w []float32, tensorScale float32, opt *FitOptions) GroupScale {
	// Fast scan: the largest magnitude's bits (branch-free); NaN/Inf show
	// up as bits >= 0x7f800000 and take the careful loop.
	var amaxBits uint32
	for _, x := range w {
		amaxBits = max(amaxBits, math.Float32bits(x)&0x7fffffff)
	}
	nonFinite := amaxBits >= 0x7f800000
	var amax, lo, hi float32
	if nonFinite || f.Asym {
		for _, x := range w {
			if x-x != 0 { // NaN or Inf
				continue
			}
			lo = min(lo, x)
			hi = max(hi, x)
		}
		amax = max(hi, -lo)
	} else {
		amax = math.Float32frombits(amaxBits)
		lo, hi = -amax, amax
	}
	if nonFinite && f.Scale == ScaleE8M0 {
		return GroupScale{Code: E8M0NaN, Mul: float32(math.NaN()), NaN: true}
	}
	if opt == nil || len(opt.ClipRatios) == 0 {
		return f.fitRange(amax, lo, hi, tensorScale)
	}
	best := GroupScale{}
	bestErr := math.Inf(1)
	if f.Scale == ScaleE8M0 {
		// Power-of-two scales: clipping ratios in (0, 1] can only lower
		// the exponent by one; search the OCP exponent and its neighbours.
		gs0 := f.fitRange(amax, lo, hi, tensorScale)
		for _, d := range []int{0, -1, 1} {
			c := int(gs0.Code) + d
			if c < 0 || c > 254 {
				continue
			}
			gs := GroupScale{Code: uint32(c), Mul: DecodeE8M0(uint8(c))}
			if e := f.groupError(w, gs, opt.Weights); e < bestErr {
				best, bestErr = gs, e
			}
		}
		return best
	}
	var prev GroupScale
	for i, r := range opt.ClipRatios {
		gs := f.fitRange(amax*r, lo*r, hi*r, tensorScale)
		if i > 0 && gs == prev {
			continue
		}
		prev = gs
		e := f.groupError(w, gs, opt.Weights)
		if e < bestErr {
			best, bestErr = gs, e
		}
	}
	return best
}

// groupError is the (weighted) squared error of quantizing w with gs.
func (f Format) groupError(w []float32, gs GroupScale, wt []float32) float64 {
	var e float64
	for i, x := range w {
		if x-x != 0 {
			continue
		}
		_, d := f.QuantizeValue(x, gs)
		diff := float64(x - d)
		if wt != nil {
			e += float64(wt[i]) * diff * diff
		} else {
			e += diff * diff
		}
	}
	return e
}

// encodeScale rounds a positive float32 scale to the format's scale type and
// returns its stored code and decoded value.
func encodeScale(t ScaleType, s float32) (uint32, float32) {
	switch t {
	case ScaleF16:
		h := EncodeF16(s)
		return uint32(h), DecodeF16(h)
	case ScaleBF16:
		h := EncodeBF16(s)
		return uint32(h), DecodeBF16(h)
	case ScaleF32:
		return math.Float32bits(s), s
	}
	return 0, s
}

// fitRange computes the scale from a (possibly clipped) range.
func (f Format) fitRange(amax, lo, hi, tensorScale float32) GroupScale {
	switch f.Elem {
	case ElemBF16, ElemF16:
		return GroupScale{Mul: 1}
	}
	switch f.Scale {
	case ScaleE8M0:
		e := MXSharedExp(amax, 2)
		if f.Elem != ElemE2M1 {
			e = MXSharedExp(amax, int(math.Floor(math.Log2(float64(f.Max())))))
		}
		c := EncodeE8M0(e)
		return GroupScale{Code: uint32(c), Mul: DecodeE8M0(c)}
	case ScaleE4M3:
		if amax == 0 || tensorScale == 0 {
			return GroupScale{}
		}
		c := EncodeE4M3(amax / f.Max() / tensorScale)
		return GroupScale{Code: uint32(c), Mul: DecodeE4M3(c) * tensorScale}
	}
	if f.Elem == ElemInt && f.Asym {
		maxq := f.Max()
		if lo == 0 && hi == 0 {
			return GroupScale{}
		}
		code, s := encodeScale(f.Scale, (hi-lo)/maxq)
		if s == 0 || s-s != 0 {
			return GroupScale{}
		}
		z := roundEven(clampF(-lo/s, 0, maxq))
		return GroupScale{Code: code, Zero: uint8(z), Mul: s}
	}
	if amax == 0 {
		return GroupScale{}
	}
	code, s := encodeScale(f.Scale, amax/f.Max())
	if s-s != 0 { // overflowed the scale type (F16 > 65504): saturate
		code, s = encodeScale(f.Scale, maxScale(f.Scale))
	}
	if s == 0 { // underflowed the scale type: the group quantizes to zero
		return GroupScale{}
	}
	return GroupScale{Code: code, Mul: s}
}

func maxScale(t ScaleType) float32 {
	switch t {
	case ScaleF16:
		return 65504
	case ScaleBF16:
		return math.Float32frombits(0x7f7f0000)
	}
	return math.MaxFloat32
}

func clampF(x, lo, hi float32) float32 {
	if x < lo {
		return lo
	}
	if x > hi {
		return hi
	}
	return x
}

// QuantizeValue quantizes one weight x with a group scale and returns its
// code and dequantized value: the per-element step GPTQ needs. Rounding is
// to nearest, ties to even, onto the format's grid, saturating at ±max:
//
//	E2M1/FP8: code = encode(x / Mul) (division, as the reference
//	  definitions; exact for MXFP4 where Mul is a power of two)
//	int sym: q = clamp(rne(x/Mul), −2^(B−1), 2^(B−1)−1), code = q + 2^(B−1)
//	int asym: code = clamp(rne(x/Mul) + zero, 0, 2^B−1)
//	nf: code = number of level midpoints below x/Mul (EncodeNF; a tie takes
//	  the lower level, as bitsandbytes)
//
// dequantized = value(code) · Mul (ints: (code − zero) · Mul). A group with
// Mul == 0 yields the zero code. NaN input encodes as the zero code except
// in FP8 formats (NaN code) and MX blocks with a NaN scale.
func (f Format) QuantizeValue(x float32, gs GroupScale) (code uint8, deq float32) {
	switch f.Elem {
	case ElemBF16:
		h := EncodeBF16(x)
		return 0, DecodeBF16(h)
	case ElemF16:
		h := EncodeF16(x)
		return 0, DecodeF16(h)
	}
	if gs.NaN {
		return 0, float32(math.NaN())
	}
	if gs.Mul == 0 {
		c := f.zeroCode(gs)
		return c, 0
	}
	v := x / gs.Mul
	switch f.Elem {
	case ElemE2M1:
		code = EncodeE2M1(v)
		return code, E2M1Values[code] * gs.Mul
	case ElemInt:
		if f.Asym {
			if v != v {
				return gs.Zero, 0
			}
			maxq := f.Max()
			q := roundEven(clampF(v, -maxq-1, 2*maxq+1)) + float32(gs.Zero)
			q = clampF(q, 0, maxq)
			return uint8(q), (q - float32(gs.Zero)) * gs.Mul
		}
		half := float32(int(1) << (f.Bits - 1))
		q := roundEven(clampF(v, -half, half-1))
		if v != v {
			q = 0
		}
		return uint8(q + half), q * gs.Mul
	case ElemNF:
		tab := f.nfTable()
		if v != v {
			v = 0
		}
		code = EncodeNF(v, f.nfMid(), f.Bits)
		return code, tab[code] * gs.Mul
	case ElemE4M3:
		code = EncodeE4M3(v)
		return code, E4M3Values[code] * gs.Mul
	case ElemE5M2:
		code = EncodeE5M2(v)
		return code, E5M2Values[code] * gs.Mul
	}
	return 0, 0
}

// zeroCode is the code that dequantizes to 0 in a group.
func (f Format) zeroCode(gs GroupScale) uint8 {
	switch f.Elem {
	case ElemInt:
		if f.Asym {
			return gs.Zero
		}
		return uint8(1 << (f.Bits - 1))
	case ElemNF:
		return EncodeNF(0, f.nfMid(), f.Bits)
	}
	return 0
}

// nfMid returns the thresholds of an NF format.
func (f Format) nfMid() *[16]float32 {
	if f.Bits == 3 {
		return &NF3Mid
	}
	return &NF4Mid
}

// nfTable returns the level table of an NF format.
func (f Format) nfTable() []float32 {
	if f.Bits == 3 {
		return NF3Values[:]
	}
	return NF4Values[:]
}

// ElemValue returns the unscaled value of a code (for integers: code minus
// the zero point, with zero the group's zero point for asymmetric formats
// and 2^(B−1) otherwise).
func (f Format) ElemValue(code, zero uint8) float32 {
	switch f.Elem {
	case ElemE2M1:
		return E2M1Values[code&15]
	case ElemInt:
		if !f.Asym {
			zero = uint8(1 << (f.Bits - 1))
		}
		return float32(int(code) - int(zero))
	case ElemNF:
		t := f.nfTable()
		return t[int(code)%len(t)]
	case ElemE4M3:
		return E4M3Values[code]
	case ElemE5M2:
		return E5M2Values[code]
	}
	return 0
}

// DecodeScale returns the decoded scale of a stored scale code (before the
// tensor scale).
func (f Format) DecodeScale(code uint32) float32 {
	switch f.Scale {
	case ScaleF16:
		return DecodeF16(uint16(code))
	case ScaleBF16:
		return DecodeBF16(uint16(code))
	case ScaleF32:
		return math.Float32frombits(code)
	case ScaleE8M0:
		return DecodeE8M0(uint8(code))
	case ScaleE4M3:
		return E4M3Values[uint8(code)]
	}
	return 1
}
