package quant

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestNormalMapReproducesTables(t *testing.T) {
	nf4 := NormalMap(4, 0.9677083)
	for i, v := range nf4 {
		if math.Abs(v-float64(NF4Values[i])) > 2e-7 {
			t.Errorf("NF4[%d]: construction %.9g, table %.9g", i, v, NF4Values[i])
		}
	}
	nf3 := NormalMap(3, 0.9677083)
	for i, v := range nf3 {
		if float32(v) != NF3Values[i] {
			t.Errorf("NF3[%d]: construction %.9g (float32 %v), table %.9g", i, v, float32(v), NF3Values[i])
		}
	}
}

func f32(b uint32) float32 { return math.Float32frombits(b) }

var (
	inf32  = float32(math.Inf(1))
	nan32  = float32(math.NaN())
	negZ32 = float32(math.Copysign(0, -1))
)

// TestE2M1KnownAnswers: OCP MX v1.0 E2M1 (values ±{0,.5,1,1.5,2,3,4,6}),
// RNE with ties to the even code, saturation at ±6.
func TestE2M1KnownAnswers(t *testing.T) {
	cases := []struct {
		x    float32
		code uint8
	}{
		{0, 0}, {negZ32, 8}, {0.25, 0}, {math.Nextafter32(0.25, 1), 1}, {-0.25, 8},
		{0.5, 1}, {0.75, 2}, {math.Nextafter32(0.75, 0), 1}, {1, 2}, {1.25, 2},
		{math.Nextafter32(1.25, 2), 3}, {1.5, 3}, {1.75, 4}, {2, 4}, {2.5, 4},
		{math.Nextafter32(2.5, 3), 5}, {3, 5}, {3.5, 6}, {4, 6}, {5, 6},
		{math.Nextafter32(5, 6), 7}, {6, 7}, {7, 7}, {1e30, 7}, {inf32, 7},
		{-6, 15}, {-5, 14}, {-100, 15}, {-inf32, 15}, {f32(1), 0}, {nan32, 0},
	}
	for _, c := range cases {
		if got := EncodeE2M1(c.x); got != c.code {
			t.Errorf("EncodeE2M1(%v) = %d, want %d", c.x, got, c.code)
		}
	}
	for code := 0; code < 16; code++ {
		v := DecodeE2M1(uint8(code))
		if got := EncodeE2M1(v); got != uint8(code) {
			t.Errorf("round trip code %d (%v) -> %d", code, v, got)
		}
	}
}

// nearestCode is a brute-force reference: the finite code whose value is
// nearest to x (after saturation), ties to the even code; sign from x for
// zero results.
func nearestCode(x float32, vals []float32, maxMag float32) int {
	a := math.Abs(float64(x))
	a = math.Min(a, float64(maxMag))
	best, bestD := -1, math.Inf(1)
	for c, v := range vals {
		if v < 0 || math.Signbit(float64(v)) || v != v || math.IsInf(float64(v), 0) {
			continue
		}
		d := math.Abs(float64(v) - a)
		if d < bestD || (d == bestD && c%2 == 0) {
			best, bestD = c, d
		}
	}
	if math.Signbit(float64(x)) {
		best |= len(vals) / 2
	}
	return best
}

func TestNearestAgainstBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 50000; i++ {
		x := float32(math.Exp2(r.Float64()*50-30)) * float32(1-2*r.IntN(2))
		if got, want := EncodeE2M1(x), nearestCode(x, E2M1Values[:], 6); int(got) != want {
			t.Fatalf("E2M1(%v) = %d, brute force %d", x, got, want)
		}
		if got, want := EncodeE4M3(x), nearestCode(x, E4M3Values[:], 448); int(got) != want {
			t.Fatalf("E4M3(%v) = %#x, brute force %#x", x, got, want)
		}
		if got, want := EncodeE5M2(x), nearestCode(x, E5M2Values[:], 57344); int(got) != want {
			t.Fatalf("E5M2(%v) = %#x, brute force %#x", x, got, want)
		}
	}
}

func TestFP8KnownAnswers(t *testing.T) {
	e4 := []struct {
		x    float32
		code uint8
	}{
		{0, 0x00}, {negZ32, 0x80}, {1, 0x38}, {-1, 0xb8}, {448, 0x7e}, {-448, 0xfe},
		{449, 0x7e}, {464, 0x7e}, {480, 0x7e}, {1e9, 0x7e}, {inf32, 0x7e}, {-inf32, 0xfe},
		{nan32, 0x7f}, {float32(math.Copysign(math.NaN(), -1)), 0xff},
		{0x1p-9, 0x01}, {0x1p-10, 0x00}, {0x1.8p-10, 0x01}, {0x3p-10, 0x02}, {7 * 0x1p-9, 0x07},
		{0x1p-6, 0x08}, {0x1.1p0, 0x38}, {0x1.3p0, 0x3a}, {240, 0x77}, {0x1p-20, 0x00},
		{f32(1), 0x00}, {416, 0x7d}, {432, 0x7e},
	}
	for _, c := range e4 {
		if got := EncodeE4M3(c.x); got != c.code {
			t.Errorf("EncodeE4M3(%v) = %#x, want %#x", c.x, got, c.code)
		}
	}
	e5 := []struct {
		x    float32
		code uint8
	}{
		{0, 0x00}, {negZ32, 0x80}, {1, 0x3c}, {57344, 0x7b}, {61440, 0x7b}, {1e6, 0x7b},
		{-1e6, 0xfb}, {math.MaxFloat32, 0x7b}, {-math.MaxFloat32, 0xfb}, {61439, 0x7b},
		{inf32, 0x7c}, {-inf32, 0xfc}, {nan32, 0x7f}, {0x1p-16, 0x01},
		{0x1p-17, 0x00}, {0x1.8p-17, 0x01}, {0x1p-14, 0x04}, {0x1.2p0, 0x3c}, {0x1.6p0, 0x3e},
	}
	for _, c := range e5 {
		if got := EncodeE5M2(c.x); got != c.code {
			t.Errorf("EncodeE5M2(%v) = %#x, want %#x", c.x, got, c.code)
		}
	}
	decodes := []struct {
		tab  *[256]float32
		code uint8
		v    float32
	}{
		{&E4M3Values, 0x7e, 448}, {&E4M3Values, 0x08, 0x1p-6}, {&E4M3Values, 0x01, 0x1p-9},
		{&E4M3Values, 0x38, 1}, {&E4M3Values, 0xfe, -448}, {&E4M3Values, 0x7c, 384},
		{&E5M2Values, 0x7b, 57344}, {&E5M2Values, 0x04, 0x1p-14}, {&E5M2Values, 0x01, 0x1p-16},
		{&E5M2Values, 0x7c, inf32}, {&E5M2Values, 0xfc, -inf32}, {&E5M2Values, 0x3c, 1},
	}
	for _, d := range decodes {
		if d.tab[d.code] != d.v {
			t.Errorf("decode %#x = %v, want %v", d.code, d.tab[d.code], d.v)
		}
	}
	for _, c := range []uint8{0x7f, 0xff} {
		if !math.IsNaN(float64(E4M3Values[c])) {
			t.Errorf("E4M3 %#x should be NaN", c)
		}
	}
	for _, c := range []uint8{0x7d, 0x7e, 0x7f, 0xfd, 0xfe, 0xff} {
		if !math.IsNaN(float64(E5M2Values[c])) {
			t.Errorf("E5M2 %#x should be NaN", c)
		}
	}
}

// TestFP8ExhaustiveRoundTrip: every one of the 256 codes decodes and
// re-encodes to itself (NaN codes to the canonical NaN of that sign).
func TestFP8ExhaustiveRoundTrip(t *testing.T) {
	for c := 0; c < 256; c++ {
		v4 := E4M3Values[c]
		want4 := uint8(c)
		if got := EncodeE4M3(v4); got != want4 {
			t.Errorf("E4M3 code %#x (%v) -> %#x", c, v4, got)
		}
		v5 := E5M2Values[c]
		want5 := uint8(c)
		if v5 != v5 {
			want5 = uint8(c)&0x80 | 0x7f
		}
		if got := EncodeE5M2(v5); got != want5 {
			t.Errorf("E5M2 code %#x (%v) -> %#x, want %#x", c, v5, got, want5)
		}
	}
}

func TestE8M0AndSharedExp(t *testing.T) {
	if DecodeE8M0(127) != 1 || DecodeE8M0(0) != 0x1p-127 || DecodeE8M0(254) != 0x1p127 || DecodeE8M0(128) != 2 {
		t.Error("E8M0 decode")
	}
	if !math.IsNaN(float64(DecodeE8M0(255))) {
		t.Error("E8M0 255 must be NaN")
	}
	if EncodeE8M0(0) != 127 || EncodeE8M0(-200) != 0 || EncodeE8M0(200) != 254 {
		t.Error("E8M0 encode clamps")
	}
	cases := []struct {
		amax float32
		e    int
	}{
		{6, 0}, {4, 0}, {7.99, 0}, {8, 1}, {1, -2}, {math.Nextafter32(1, 0), -3}, {0, -127},
		{0x1p-149, -127}, {0x1p-120, -122}, {0x1p-124, -126}, {0x1p-125, -127},
		{math.MaxFloat32, 125}, {0.02, -8},
	}
	for _, c := range cases {
		if got := MXSharedExp(c.amax, 2); got != c.e {
			t.Errorf("MXSharedExp(%v) = %d, want %d", c.amax, got, c.e)
		}
	}
}

func TestHalfConversions(t *testing.T) {
	cases := []struct {
		x   float32
		f16 uint16
		b16 uint16
	}{
		{1, 0x3c00, 0x3f80}, {65504, 0x7bff, 0x4780}, {65520, 0x7c00, 0x4780},
		{0x1p-24, 0x0001, 0x3380}, {0x1p-25, 0x0000, 0x3300}, {-2, 0xc000, 0xc000},
		{f32(0x3f808000), 0x3c04, 0x3f80}, {f32(0x3f818000), 0x3c0c, 0x3f82},
	}
	for _, c := range cases {
		if got := EncodeF16(c.x); got != c.f16 {
			t.Errorf("EncodeF16(%v) = %#x, want %#x", c.x, got, c.f16)
		}
		if got := EncodeBF16(c.x); got != c.b16 {
			t.Errorf("EncodeBF16(%v) = %#x, want %#x", c.x, got, c.b16)
		}
	}
	if !math.IsNaN(float64(DecodeBF16(EncodeBF16(nan32)))) {
		t.Error("BF16 NaN")
	}
}

// TestE2M1FastMatches: the branchless encoder of the MXFP4 fast path equals
// EncodeE2M1 on random finite bit patterns and around every threshold.
func TestE2M1FastMatches(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	check := func(x float32) {
		if x-x != 0 {
			return
		}
		if a, b := e2m1Fast(x), EncodeE2M1(x); a != b {
			t.Fatalf("e2m1Fast(%v) = %d, EncodeE2M1 = %d", x, a, b)
		}
	}
	for i := 0; i < 1000000; i++ {
		check(math.Float32frombits(r.Uint32()))
		check(float32(r.Float64()*16 - 8))
	}
	for _, th := range []float32{0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2, 2.5, 3, 3.5, 4, 5, 6, 7, 8} {
		for _, x := range []float32{th, math.Nextafter32(th, 0), math.Nextafter32(th, 100)} {
			check(x)
			check(-x)
		}
	}
}

// TestMXFP4BlockF32MatchesEncode: the table encoder of float32 blocks
// equals EncodeE2M1(x·2^-e) for random values, bucket starts, thresholds
// and their neighbours, for shared exponents across the fast-path range.
func TestMXFP4BlockF32MatchesEncode(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	specials := []float32{0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5, 6, 7.5, 0.5, 1, 3, 4}
	var blk [32]float32
	var out [16]byte
	for iter := 0; iter < 20000; iter++ {
		e := r.IntN(249) - 124 // [-124, 124]
		scale := float32(math.Ldexp(1, e))
		for i := range blk {
			var v float32
			switch r.IntN(3) {
			case 0:
				v = float32(r.Float64()*8) * scale
			case 1:
				v = specials[r.IntN(len(specials))] * scale
				switch r.IntN(3) {
				case 0:
					v = math.Nextafter32(v, 0)
				case 1:
					v = math.Nextafter32(v, float32(math.Inf(1)))
				}
			case 2:
				v = math.Float32frombits(r.Uint32() & 0x807fffff) // float32 subnormals
			}
			if r.IntN(2) == 0 {
				v = -v
			}
			blk[i] = v
		}
		blk[0] = 4 * scale // pin the block exponent to e
		amax := math.Float32frombits(f32BlockAmax(&blk))
		if got := MXSharedExp(amax, 2); got != e {
			// a special just below 8·2^e raised amax: still in [4, 8)·2^e
			t.Fatalf("block exponent %d, want %d (amax %v)", got, e, amax)
		}
		mxfp4BlockF32(&blk, &out, mxfp4OffsetBF16(int32(e)))
		inv := float32(math.Ldexp(1, -e))
		for i, v := range blk {
			want := EncodeE2M1(v * inv)
			if got := out[i/2] >> (4 * (i % 2)) & 15; got != want {
				t.Fatalf("e=%d v=%v (scaled %v): table %d, EncodeE2M1 %d", e, v, v*inv, got, want)
			}
		}
	}
}

func TestBF16BlockAmax(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	var x [64]byte
	for iter := 0; iter < 100000; iter++ {
		var want uint16
		for i := 0; i < 32; i++ {
			h := uint16(r.Uint32())
			if iter%2 == 0 {
				h &= 0x80ff | uint16(r.IntN(4))<<8 // many equal high bytes
			}
			x[2*i], x[2*i+1] = byte(h), byte(h>>8)
			want = max(want, h&0x7fff)
		}
		if got := bf16BlockAmax(&x); got != want {
			t.Fatalf("bf16BlockAmax = %#x, want %#x", got, want)
		}
	}
}

// TestEncodeNFIsNearest: EncodeNF picks the nearest NF level (float64
// distances) for random values, and the lower level exactly on a midpoint.
func TestEncodeNFIsNearest(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 42))
	for _, c := range []struct {
		levels []float32
		mid    *[16]float32
		bits   int
	}{{NF4Values[:], &NF4Mid, 4}, {NF3Values[:], &NF3Mid, 3}} {
		for i := 0; i < 100000; i++ {
			x := float32(r.Float64()*2.4 - 1.2)
			got := EncodeNF(x, c.mid, c.bits)
			best := 0
			for j, l := range c.levels {
				if math.Abs(float64(x-l)) < math.Abs(float64(x-c.levels[best])) {
					best = j
				}
			}
			if int(got) != best && math.Abs(float64(x-c.levels[got])) != math.Abs(float64(x-c.levels[best])) {
				t.Fatalf("%d-bit EncodeNF(%v) = %d, nearest %d", c.bits, x, got, best)
			}
		}
		for j := 0; j+1 < len(c.levels); j++ {
			if got := EncodeNF(c.mid[j], c.mid, c.bits); int(got) != j {
				t.Errorf("%d-bit: midpoint %d encodes to %d", c.bits, j, got)
			}
		}
	}
	// bitsandbytes' literals are the midpoints of the NF4 levels
	exact := nfMids(NF4Values[:])
	for i := 0; i < 15; i++ {
		lo, hi := math.Nextafter32(exact[i], -2), math.Nextafter32(exact[i], 2)
		if NF4Mid[i] < lo || NF4Mid[i] > hi {
			t.Errorf("NF4 threshold %d = %v, midpoint %v", i, NF4Mid[i], exact[i])
		}
	}
}
