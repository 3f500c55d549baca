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
