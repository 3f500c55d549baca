//go:build amd64

package quant

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestMXFP4AVX2MatchesGo: the assembly block encoder gives the pure-Go
// table path's bytes and scale codes on random BF16 blocks of every kind,
// and stops exactly at the blocks it leaves to Go.
func TestMXFP4AVX2MatchesGo(t *testing.T) {
	if !haveAVX2 {
		t.Skip("no AVX2 on this CPU")
	}
	r := rand.New(rand.NewPCG(51, 52))
	const nb = 64
	src := make([]byte, 64*nb)
	for iter := 0; iter < 300; iter++ {
		for b := 0; b < nb; b++ {
			e := r.IntN(250) - 124
			for i := 0; i < 32; i++ {
				var h uint16
				switch r.IntN(4) {
				case 0:
					h = EncodeBF16(float32(r.NormFloat64() * math.Ldexp(1, e)))
				case 1:
					h = EncodeBF16(E2M1Values[r.IntN(16)]*float32(math.Ldexp(1, e)) + float32(r.IntN(3)-1)*float32(math.Ldexp(1, e-8)))
				case 2:
					h = uint16(r.IntN(0x7f80)) | uint16(r.IntN(2))<<15
				case 3:
					h = uint16(r.IntN(0x0100)) | uint16(r.IntN(2))<<15
				}
				if iter%50 == 0 && r.IntN(200) == 0 {
					h = 0x7fc0 // NaN: the assembly must stop there
				}
				src[b*64+2*i], src[b*64+2*i+1] = byte(h), byte(h>>8)
			}
		}
		outA, scA := make([]byte, 16*nb), make([]byte, nb)
		outG, scG := make([]byte, 16*nb), make([]byte, nb)
		k := mxfp4BlocksAVX2(&src[0], &outA[0], &scA[0], nb)
		for b := 0; b < nb; b++ {
			x := (*[64]byte)(src[b*64 : b*64+64])
			ef := int32(bf16BlockAmax(x) >> 7)
			ok := ef >= 5 && ef <= 0xfe
			if b < k && !ok {
				t.Fatalf("assembly encoded block %d with exponent field %d", b, ef)
			}
			if b == k {
				if ok {
					t.Fatalf("assembly stopped at block %d (exponent field %d) it should handle", b, ef)
				}
				break
			}
			scG[b] = uint8(ef - 2)
			mxfp4BlockBF16(x, (*[16]byte)(outG[b*16:b*16+16]), mxfp4OffsetBF16(ef-129))
		}
		if string(outA[:16*k]) != string(outG[:16*k]) || string(scA[:k]) != string(scG[:k]) {
			for i := 0; i < 16*k; i++ {
				if outA[i] != outG[i] {
					t.Fatalf("iter %d: byte %d (block %d): assembly %#x, Go %#x", iter, i, i/16, outA[i], outG[i])
				}
			}
			t.Fatalf("iter %d: scales differ", iter)
		}
	}
}

// TestE2M1DivAVX2MatchesEncode: the AVX2 divide-and-encode equals
// EncodeE2M1(w/mul) on thresholds, their neighbours, signed zeros,
// saturation and random values, for several scales.
func TestE2M1DivAVX2MatchesEncode(t *testing.T) {
	if !haveAVX2 {
		t.Skip("no AVX2 on this CPU")
	}
	r := rand.New(rand.NewPCG(61, 62))
	specials := []float32{0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2, 2.5, 3, 3.5, 4, 5, 6, 7, 100}
	w := make([]float32, 64)
	out := make([]byte, 32)
	for iter := 0; iter < 5000; iter++ {
		mul := float32(math.Ldexp(1+r.Float64(), r.IntN(40)-20))
		if iter%3 == 0 {
			mul = float32(math.Ldexp(1, r.IntN(40)-20)) // exact multiples hit the ties
		}
		for i := range w {
			v := specials[r.IntN(len(specials))] * mul
			switch r.IntN(4) {
			case 0:
				v = math.Nextafter32(v, 0)
			case 1:
				v = math.Nextafter32(v, float32(math.Inf(1)))
			case 2:
				v = float32(r.NormFloat64()) * 3 * mul
			}
			if r.IntN(2) == 0 {
				v = -v
			}
			w[i] = v
		}
		if n := e2m1DivFast(w, out, mul); n != 64 {
			t.Fatalf("encoded %d of 64", n)
		}
		for i, v := range w {
			want := EncodeE2M1(v / mul)
			if got := out[i/2] >> (4 * (i % 2)) & 15; got != want {
				t.Fatalf("w=%v mul=%v (v=%v): AVX2 %d, EncodeE2M1 %d", v, mul, v/mul, got, want)
			}
		}
	}
}
