package tensor

import (
	"encoding/binary"
	"fmt"
	"math"
	"runtime"
	"sync"
	"unsafe"

	"github.com/x448/float16"
)

// Conversions between the stored element types and float32.
//
// BF16 is converted by bit manipulation (it is the top half of an IEEE
// float32); F16 uses github.com/x448/float16; the OCP FP8 formats (E4M3 "fn"
// and E5M2) are hand-written because no maintained Go library covers them:
// decoding goes through a 256-entry table, encoding rounds the float32
// significand to nearest, ties to even. quant's FP8, F16 and BF16 codecs
// are wrappers of these.
//
// Float32 → narrower conversions all round to nearest, ties to even. NaN stays
// NaN (a quiet NaN with the sign kept). Overflow follows each format: F16 and
// BF16 and E5M2 round to ±Inf, E4M3 (which has no Inf) saturates to ±448, as
// CUDA's cvt.rn.satfinite does; ±Inf also becomes ±448 in E4M3.

// BF16ToF32 converts a bfloat16 bit pattern to float32 (exact).
func BF16ToF32(b uint16) float32 { return math.Float32frombits(uint32(b) << 16) }

// F32ToBF16 rounds f to the nearest bfloat16, ties to even.
func F32ToBF16(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7fffffff > 0x7f800000 { // NaN: keep sign and top payload, force quiet
		return uint16(u>>16) | 0x0040
	}
	u += 0x7fff + (u>>16)&1
	return uint16(u >> 16)
}

// F16ToF32 converts an IEEE half bit pattern to float32 (exact).
func F16ToF32(h uint16) float32 { return float16.Frombits(h).Float32() }

// halfToFloat converts an IEEE half to float32 exactly, like F16ToF32 but
// without x448/float16's per-call overhead (about 50× faster in bulk): the
// exponent is rebased with one add, subnormals are renormalised by an exact
// float subtraction (F. Giesen's half_to_float_fast). TestHalfToFloat
// checks all 65536 inputs against F16ToF32.
func halfToFloat(h uint16) float32 {
	const shiftedExp = 0x7c00 << 13
	o := uint32(h&0x7fff) << 13
	exp := o & shiftedExp
	o += (127 - 15) << 23
	switch exp {
	case shiftedExp: // Inf or NaN (quieted, as F16C and x448/float16 do)
		o += (128 - 16) << 23
		if h&0x3ff != 0 {
			o |= 1 << 22
		}
	case 0: // zero or subnormal
		o += 1 << 23
		o = math.Float32bits(math.Float32frombits(o) - math.Float32frombits(113<<23))
	}
	return math.Float32frombits(o | uint32(h&0x8000)<<16)
}

// F32ToF16 rounds f to the nearest IEEE half, ties to even.
func F32ToF16(f float32) uint16 { return uint16(float16.Fromfloat32(f)) }

// encodeFP8 is the FP8 encoder of both formats: ebits exponent bits, mbits
// mantissa bits, bias 2^(ebits-1)-1, maxCode the magnitude code that
// overflow and ±Inf become (the largest finite value 0x7E for E4M3, Inf 0x7C
// for E5M2) and nanCode the magnitude code of NaN. Rounding is to nearest,
// ties to even, done on the exponent|mantissa field so that a carry bumps
// the exponent; FP8 subnormals are produced exactly.
func encodeFP8(x float32, ebits, mbits uint, maxCode, nanCode uint8) uint8 {
	b := math.Float32bits(x)
	sign := uint8(b>>24) & 0x80
	a := b & 0x7fffffff
	if a > 0x7f800000 {
		return sign | nanCode
	}
	bias := int32(1)<<(ebits-1) - 1
	exp := int32(a>>23) - 127 // unbiased float32 exponent
	minExp := 1 - bias        // smallest normal exponent of the FP8 format
	var code uint32
	if exp >= minExp {
		shift := 23 - mbits
		rebased := a - uint32(127-bias)<<23
		code = (rebased + (1<<(shift-1) - 1) + ((rebased >> shift) & 1)) >> shift
	} else {
		// Subnormal in FP8: value = m · 2^(minExp-mbits). Scale exactly by a
		// power of two into integer units and round to even.
		if exp < minExp-int32(mbits)-2 { // below a quarter of the smallest step
			return sign
		}
		v := float64(math.Float32frombits(a)) * math.Ldexp(1, int(int32(mbits)-minExp))
		code = uint32(math.RoundToEven(v)) // may become the smallest normal: still correct
	}
	if code > uint32(maxCode) {
		code = uint32(maxCode)
	}
	return sign | uint8(code)
}

// fp8Table decodes every code of an FP8 format from its definition:
// exponent 0 is subnormal (m·2^(1-bias-mbits)), otherwise
// (1+m/2^mbits)·2^(e-bias). With ieee the top exponent is Inf (m = 0) or
// NaN (E5M2); otherwise only S.1111.111 is NaN (E4M3fn). The sign bit
// applies to every code, NaN included.
func fp8Table(ebits, mbits uint, ieee bool) (t [256]float32) {
	bias := 1<<(ebits-1) - 1
	for c := 0; c < 256; c++ {
		e := (c >> mbits) & (1<<ebits - 1)
		m := c & (1<<mbits - 1)
		var v float64
		switch {
		case ieee && e == 1<<ebits-1 && m == 0:
			v = math.Inf(1)
		case ieee && e == 1<<ebits-1:
			v = math.NaN()
		case !ieee && e == 1<<ebits-1 && m == 1<<mbits-1:
			v = math.NaN()
		case e == 0:
			v = math.Ldexp(float64(m), 1-bias-int(mbits))
		default:
			v = math.Ldexp(1+float64(m)/float64(int(1)<<mbits), e-bias)
		}
		if c&0x80 != 0 {
			v = -v
		}
		t[c] = float32(v)
	}
	return t
}

// e4m3Table and e5m2Table decode every FP8 code; they are filled once at
// package initialisation and never written again.
var (
	e4m3Table = fp8Table(4, 3, false)
	e5m2Table = fp8Table(5, 2, true)
)

// E4M3ToF32 decodes an OCP FP8 E4M3 (fn) byte.
func E4M3ToF32(b uint8) float32 { return e4m3Table[b] }

// F32ToE4M3 rounds f to OCP FP8 E4M3, ties to even, saturating at ±448
// (±Inf also becomes ±448); NaN becomes 0x7F with f's sign.
func F32ToE4M3(f float32) uint8 { return encodeFP8(f, 4, 3, 0x7e, 0x7f) }

// E5M2ToF32 decodes an OCP FP8 E5M2 byte.
func E5M2ToF32(b uint8) float32 { return e5m2Table[b] }

// F32ToE5M2 rounds f to OCP FP8 E5M2, ties to even; overflow gives ±Inf
// (0x7C/0xFC) as torch's cast does; NaN becomes 0x7F with f's sign.
func F32ToE5M2(f float32) uint8 { return encodeFP8(f, 5, 2, 0x7c, 0x7f) }

// hostLittle reports whether the host is little-endian, in which case
// aligned element slices can be reinterpreted in place.
func hostLittle() bool { return binary.NativeEndian.Uint16([]byte{1, 0}) == 1 }

// parallelMin is the element count above which bulk conversions are split
// across goroutines.
const parallelMin = 1 << 20

// parallelFor runs fn over [0,n) in contiguous chunks, concurrently for
// large n.
func parallelFor(n int, fn func(lo, hi int)) {
	p := runtime.GOMAXPROCS(0)
	if n < parallelMin || p == 1 {
		fn(0, n)
		return
	}
	chunk := (n + p - 1) / p
	chunk = (chunk + 63) &^ 63
	var wg sync.WaitGroup
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}

// u16s views b as uint16s when that is safe (little-endian host, aligned).
func u16s(b []byte) ([]uint16, bool) {
	if len(b) == 0 || !hostLittle() || uintptr(unsafe.Pointer(&b[0]))%2 != 0 {
		return nil, false
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(&b[0])), len(b)/2), true
}

// u32s views b as uint32s when that is safe (little-endian host, aligned).
func u32s(b []byte) ([]uint32, bool) {
	if len(b) == 0 || !hostLittle() || uintptr(unsafe.Pointer(&b[0]))%4 != 0 {
		return nil, false
	}
	return unsafe.Slice((*uint32)(unsafe.Pointer(&b[0])), len(b)/4), true
}

// ToFloat32 returns the tensor's elements as float32. Floating types convert
// exactly (F64 rounds to nearest); integer and bool types convert by value.
// It always returns a fresh slice.
func ToFloat32(t *Tensor) ([]float32, error) {
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("to float32: %w", err)
	}
	out := make([]float32, t.NumElements())
	if err := DecodeFloat32(out, t.DType, t.Data); err != nil {
		return nil, fmt.Errorf("to float32: tensor %q: %w", t.Name, err)
	}
	return out, nil
}

// DecodeFloat32 converts little-endian elements of type dt in src into dst,
// which must hold exactly len(src)/dt.Size() elements.
func DecodeFloat32(dst []float32, dt DType, src []byte) error {
	sz := dt.Size()
	if sz == 0 {
		return fmt.Errorf("cannot convert %s to float32", dt)
	}
	if len(src) != len(dst)*sz {
		return fmt.Errorf("%s: %d bytes for %d elements", dt, len(src), len(dst))
	}
	switch dt {
	case BF16:
		if s, ok := u16s(src); ok {
			d := unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(dst))), len(dst))
			parallelFor(len(dst), func(lo, hi int) { bf16Widen(d[lo:hi], s[lo:hi]) })
			return nil
		}
		for i := range dst {
			dst[i] = BF16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	case F16:
		s, ok := u16s(src)
		parallelFor(len(dst), func(lo, hi int) {
			d := dst[lo:hi]
			if ok {
				f16Widen(d, s[lo:hi])
				return
			}
			for i := range d {
				d[i] = halfToFloat(binary.LittleEndian.Uint16(src[2*(lo+i):]))
			}
		})
	case F32:
		if s, ok := u32s(src); ok {
			copy(unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(dst))), len(dst)), s)
			return nil
		}
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	case F64:
		for i := range dst {
			dst[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(src[8*i:])))
		}
	case F8E4M3, F8E5M2:
		tab := &e4m3Table
		if dt == F8E5M2 {
			tab = &e5m2Table
		}
		for i, b := range src {
			dst[i] = tab[b]
		}
	case I8:
		for i, b := range src {
			dst[i] = float32(int8(b))
		}
	case U8:
		for i, b := range src {
			dst[i] = float32(b)
		}
	case Bool:
		for i, b := range src {
			if b != 0 {
				dst[i] = 1
			} else {
				dst[i] = 0
			}
		}
	case I16:
		for i := range dst {
			dst[i] = float32(int16(binary.LittleEndian.Uint16(src[2*i:])))
		}
	case U16:
		for i := range dst {
			dst[i] = float32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	case I32:
		for i := range dst {
			dst[i] = float32(int32(binary.LittleEndian.Uint32(src[4*i:])))
		}
	case U32:
		for i := range dst {
			dst[i] = float32(binary.LittleEndian.Uint32(src[4*i:]))
		}
	case I64:
		for i := range dst {
			dst[i] = float32(int64(binary.LittleEndian.Uint64(src[8*i:])))
		}
	case U64:
		for i := range dst {
			dst[i] = float32(binary.LittleEndian.Uint64(src[8*i:]))
		}
	default:
		return fmt.Errorf("cannot convert %s to float32", dt)
	}
	return nil
}

// FromFloat32 builds a tensor of the given dtype from float32 values,
// rounding to nearest even for narrower float types. Only floating dtypes
// (F64, F32, F16, BF16, F8_E4M3, F8_E5M2) are accepted.
func FromFloat32(name string, dt DType, shape []int, v []float32) (*Tensor, error) {
	t := &Tensor{Name: name, DType: dt, Shape: append([]int(nil), shape...)}
	n, err := shapeElements(shape)
	if err != nil {
		return nil, fmt.Errorf("from float32: tensor %q: %w", name, err)
	}
	if n != int64(len(v)) {
		return nil, fmt.Errorf("from float32: tensor %q: shape %v needs %d values, have %d", name, shape, n, len(v))
	}
	t.Data = make([]byte, len(v)*dt.Size())
	if err := EncodeFloat32(t.Data, dt, v); err != nil {
		return nil, fmt.Errorf("from float32: tensor %q: %w", name, err)
	}
	return t, nil
}

// EncodeFloat32 writes v into dst as little-endian elements of type dt
// (a floating type), rounding to nearest even.
func EncodeFloat32(dst []byte, dt DType, v []float32) error {
	if dt.Size() == 0 || len(dst) != len(v)*dt.Size() {
		return fmt.Errorf("%s: %d bytes for %d elements", dt, len(dst), len(v))
	}
	switch dt {
	case F32:
		for i, f := range v {
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(f))
		}
	case F64:
		for i, f := range v {
			binary.LittleEndian.PutUint64(dst[8*i:], math.Float64bits(float64(f)))
		}
	case BF16:
		parallelFor(len(v), func(lo, hi int) {
			for i := lo; i < hi; i++ {
				binary.LittleEndian.PutUint16(dst[2*i:], F32ToBF16(v[i]))
			}
		})
	case F16:
		parallelFor(len(v), func(lo, hi int) {
			for i := lo; i < hi; i++ {
				binary.LittleEndian.PutUint16(dst[2*i:], F32ToF16(v[i]))
			}
		})
	case F8E4M3:
		for i, f := range v {
			dst[i] = F32ToE4M3(f)
		}
	case F8E5M2:
		for i, f := range v {
			dst[i] = F32ToE5M2(f)
		}
	default:
		return fmt.Errorf("cannot encode float32 as %s", dt)
	}
	return nil
}
