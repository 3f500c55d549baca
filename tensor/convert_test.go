package tensor

import (
	"math"
	"testing"
)

func TestBF16KnownAnswers(t *testing.T) {
	for _, tc := range []struct {
		f    float32
		want uint16
	}{
		{1, 0x3f80},
		{-2, 0xc000},
		{0, 0},
		{float32(math.Copysign(0, -1)), 0x8000},
		{1 + 1.0/256, 0x3f80},        // tie, even stays
		{1 + 3.0/256, 0x3f82},        // tie, odd rounds up
		{1 + 1.0/256 + 1e-7, 0x3f81}, // above the tie
		{math.MaxFloat32, 0x7f80},    // overflow rounds to +Inf
		{float32(math.Inf(-1)), 0xff80},
		{math.Float32frombits(0x00000001), 0}, // tiny subnormal rounds to zero
		{math.Float32frombits(0x00008000), 0}, // tie to even zero
		{math.Float32frombits(0x00018000), 2}, // tie to even 2
	} {
		if got := F32ToBF16(tc.f); got != tc.want {
			t.Errorf("F32ToBF16(%g) = %#04x, want %#04x", tc.f, got, tc.want)
		}
	}
	if b := F32ToBF16(float32(math.NaN())); !math.IsNaN(float64(BF16ToF32(b))) {
		t.Errorf("NaN → %#04x, not NaN", b)
	}
	if b := F32ToBF16(math.Float32frombits(0x7f800001)); b&0x7f80 != 0x7f80 || b&0x7f == 0 {
		t.Errorf("signalling NaN with low payload → %#04x, not NaN", b)
	}
	for h := range 1 << 16 {
		f := BF16ToF32(uint16(h))
		if math.IsNaN(float64(f)) {
			continue
		}
		if F32ToBF16(f) != uint16(h) {
			t.Fatalf("BF16 %#04x does not round-trip", h)
		}
	}
}

func TestF16KnownAnswers(t *testing.T) {
	for _, tc := range []struct {
		f    float32
		want uint16
	}{
		{1, 0x3c00}, {65504, 0x7bff}, {65520, 0x7c00}, {65519, 0x7bff},
		{1 + 1.0/2048, 0x3c00}, {1 + 3.0/2048, 0x3c02},
		{float32(math.Ldexp(1, -24)), 0x0001}, {float32(math.Ldexp(1, -25)), 0x0000},
		{float32(math.Ldexp(3, -25)), 0x0002},
	} {
		if got := F32ToF16(tc.f); got != tc.want {
			t.Errorf("F32ToF16(%g) = %#04x, want %#04x", tc.f, got, tc.want)
		}
	}
	for h := range 1 << 16 {
		f := F16ToF32(uint16(h))
		if !math.IsNaN(float64(f)) && F32ToF16(f) != uint16(h) {
			t.Fatalf("F16 %#04x does not round-trip", h)
		}
	}
}

func TestFP8KnownAnswers(t *testing.T) {
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	for _, tc := range []struct {
		name string
		enc  func(float32) uint8
		f    float32
		want uint8
	}{
		{"e4m3 1", F32ToE4M3, 1, 0x38},
		{"e4m3 -1.125", F32ToE4M3, -1.125, 0xb9},
		{"e4m3 max", F32ToE4M3, 448, 0x7e},
		{"e4m3 tie below max+ulp", F32ToE4M3, 464, 0x7e},
		{"e4m3 saturate", F32ToE4M3, 1e9, 0x7e},
		{"e4m3 -saturate", F32ToE4M3, -500, 0xfe},
		{"e4m3 inf", F32ToE4M3, inf, 0x7e},
		{"e4m3 nan", F32ToE4M3, nan, 0x7f},
		{"e4m3 min sub", F32ToE4M3, float32(math.Ldexp(1, -9)), 0x01},
		{"e4m3 half min sub (tie to 0)", F32ToE4M3, float32(math.Ldexp(1, -10)), 0x00},
		{"e4m3 1.5 min sub (tie to 2)", F32ToE4M3, float32(math.Ldexp(3, -10)), 0x02},
		{"e4m3 min normal", F32ToE4M3, float32(math.Ldexp(1, -6)), 0x08},
		{"e4m3 sub→normal carry", F32ToE4M3, float32(math.Ldexp(15, -10)), 0x08},
		{"e5m2 1", F32ToE5M2, 1, 0x3c},
		{"e5m2 max", F32ToE5M2, 57344, 0x7b},
		{"e5m2 overflow tie → inf", F32ToE5M2, 61440, 0x7c},
		{"e5m2 below tie", F32ToE5M2, 61439, 0x7b},
		{"e5m2 -inf", F32ToE5M2, -inf, 0xfc},
		{"e5m2 min sub", F32ToE5M2, float32(math.Ldexp(1, -16)), 0x01},
	} {
		if got := tc.enc(tc.f); got != tc.want {
			t.Errorf("%s: encode(%g) = %#02x, want %#02x", tc.name, tc.f, got, tc.want)
		}
	}
	for _, tc := range []struct {
		dec  func(uint8) float32
		code uint8
		want float32
	}{
		{E4M3ToF32, 0x7e, 448}, {E4M3ToF32, 0x01, float32(math.Ldexp(1, -9))}, {E4M3ToF32, 0x78, 256},
		{E4M3ToF32, 0xb9, -1.125}, {E5M2ToF32, 0x7b, 57344}, {E5M2ToF32, 0x7c, inf}, {E5M2ToF32, 0x01, float32(math.Ldexp(1, -16))},
	} {
		if got := tc.dec(tc.code); got != tc.want {
			t.Errorf("decode(%#02x) = %g, want %g", tc.code, got, tc.want)
		}
	}
	for _, c := range []uint8{0x7f, 0xff} {
		if !math.IsNaN(float64(E4M3ToF32(c))) {
			t.Errorf("e4m3 %#02x should be NaN", c)
		}
	}
	// Every finite code round-trips, and the midpoint of neighbours rounds to the even code.
	for _, f := range []struct {
		dec func(uint8) float32
		enc func(float32) uint8
	}{{E4M3ToF32, F32ToE4M3}, {E5M2ToF32, F32ToE5M2}} {
		for c := range 256 {
			v := f.dec(uint8(c))
			if math.IsNaN(float64(v)) {
				continue
			}
			if got := f.enc(v); got != uint8(c) && !(v == 0 && got&0x7f == 0) {
				t.Errorf("code %#02x (%g) re-encodes to %#02x", c, v, got)
			}
			if c&0x7f < 0x7f {
				w := f.dec(uint8(c + 1))
				if math.IsNaN(float64(w)) || math.IsInf(float64(w), 0) || math.IsInf(float64(v), 0) {
					continue
				}
				mid := float32((float64(v) + float64(w)) / 2)
				want := uint8(c)
				if c&1 == 1 {
					want = uint8(c + 1)
				}
				if got := f.enc(mid); got != want {
					t.Errorf("midpoint %g of %#02x,%#02x encodes to %#02x, want %#02x", mid, c, c+1, got, want)
				}
			}
		}
	}
}

func TestToFromFloat32(t *testing.T) {
	vals := []float32{0, 1, -2.5, 3.140625, 1e-3, -65504}
	for _, dt := range []DType{F32, F64, F16, BF16, F8E4M3, F8E5M2} {
		tt, err := FromFloat32("x", dt, []int{2, 3}, vals)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ToFloat32(tt)
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			var want float32
			switch dt {
			case F32, F64:
				want = v
			case F16:
				want = F16ToF32(F32ToF16(v))
			case BF16:
				want = BF16ToF32(F32ToBF16(v))
			case F8E4M3:
				want = E4M3ToF32(F32ToE4M3(v))
			case F8E5M2:
				want = E5M2ToF32(F32ToE5M2(v))
			}
			if got[i] != want {
				t.Errorf("%s[%d] = %g, want %g", dt, i, got[i], want)
			}
		}
	}
	if _, err := FromFloat32("x", F16, []int{4}, vals); err == nil {
		t.Error("shape/length mismatch accepted")
	}
	if _, err := FromFloat32("x", I32, []int{6}, vals); err == nil {
		t.Error("I32 encode accepted")
	}
	// Unaligned BF16 input takes the portable path and agrees.
	raw := make([]byte, 1+2*3)
	for i, h := range []uint16{0x3f80, 0xc020, 0x0001} {
		raw[1+2*i], raw[2+2*i] = byte(h), byte(h>>8)
	}
	out := make([]float32, 3)
	if err := DecodeFloat32(out, BF16, raw[1:]); err != nil {
		t.Fatal(err)
	}
	if out[0] != 1 || out[1] != -2.5 || out[2] != math.Float32frombits(0x00010000) {
		t.Errorf("unaligned BF16 decode = %v", out)
	}
	if _, err := ToFloat32(&Tensor{Name: "bad", DType: BF16, Shape: []int{3}, Data: make([]byte, 4)}); err == nil {
		t.Error("length mismatch accepted")
	}
}

func BenchmarkBF16ToF32(b *testing.B) {
	const n = 8 << 20
	src := make([]byte, 2*n)
	dst := make([]float32, n)
	b.SetBytes(2 * n)
	for b.Loop() {
		if err := DecodeFloat32(dst, BF16, src); err != nil {
			b.Fatal(err)
		}
	}
}

func TestBF16WidenPaths(t *testing.T) {
	buf := make([]uint16, 64)
	for i := range buf {
		buf[i] = uint16(i*2654435761>>7) | 1
	}
	for off := range 4 {
		for n := 0; n+off <= len(buf); n++ {
			src := buf[off : off+n]
			dst := make([]uint32, n+1)
			for doff := range 2 {
				d := dst[doff : doff+n]
				bf16Widen(d, src)
				for i := range n {
					if d[i] != uint32(src[i])<<16 {
						t.Fatalf("off %d/%d n %d: element %d = %#x", off, doff, n, i, d[i])
					}
				}
			}
		}
	}
}

func BenchmarkBF16ToF32InCache(b *testing.B) {
	const n = 16 << 10
	src := make([]byte, 2*n)
	dst := make([]float32, n)
	b.SetBytes(2 * n)
	for b.Loop() {
		if err := DecodeFloat32(dst, BF16, src); err != nil {
			b.Fatal(err)
		}
	}
}

func TestHalfToFloat(t *testing.T) {
	all := make([]byte, 2<<16+1) // odd start: the unaligned path too
	for h := range 1 << 16 {
		got, want := halfToFloat(uint16(h)), F16ToF32(uint16(h))
		if math.Float32bits(got) != math.Float32bits(want) {
			t.Fatalf("%#04x: %g (%#08x), want %g (%#08x)", h, got, math.Float32bits(got), want, math.Float32bits(want))
		}
		all[2*h], all[2*h+1] = byte(h), byte(h>>8)
	}
	for _, src := range [][]byte{all[:2<<16], all[1:], all[2:34]} {
		src = src[:len(src)&^1]
		out := make([]float32, len(src)/2)
		if err := DecodeFloat32(out, F16, src); err != nil {
			t.Fatal(err)
		}
		for i, got := range out {
			h := uint16(src[2*i]) | uint16(src[2*i+1])<<8
			if math.Float32bits(got) != math.Float32bits(F16ToF32(h)) {
				t.Fatalf("bulk %#04x: %#08x, want %#08x", h, math.Float32bits(got), math.Float32bits(F16ToF32(h)))
			}
		}
	}
}

func BenchmarkF16ToF32InCache(b *testing.B) {
	const n = 16 << 10
	src := make([]byte, 2*n)
	for i := range src {
		src[i] = byte(i * 7)
	}
	dst := make([]float32, n)
	b.SetBytes(2 * n)
	for b.Loop() {
		if err := DecodeFloat32(dst, F16, src); err != nil {
			b.Fatal(err)
		}
	}
}
