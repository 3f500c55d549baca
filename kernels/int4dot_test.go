package kernels

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/marlin-llm/marlin/quant"
)

// TestInt4Dot checks the scale-hoisted integer kernel (and its Go twin)
// against a float64 dot product of the dequantized weights
// (code − off)·mul, for odd and even group counts and several group sizes;
// codes all equal to the zero point must give exactly 0.
func TestInt4Dot(t *testing.T) {
	r := rand.New(rand.NewPCG(71, 72))
	for _, gs := range []int{32, 64, 128} {
		for _, ng := range []int{1, 2, 3, 5} {
			n := ng * gs
			x := randSlice(r, n)
			codes := make([]byte, n/2)
			for i := range codes {
				codes[i] = byte(r.IntN(256))
			}
			muls := make([]float32, ng)
			offs := make([]float32, ng)
			for g := range muls {
				muls[g] = float32(r.Float64()*2 - 1)
				offs[g] = float32(r.IntN(16))
			}
			xsv := make([]float32, 8*ng)
			int4XSums(xsv, x, gs)
			var want, mag float64
			for e := 0; e < n; e++ {
				g := e / gs
				w := float64((float32(codes[e>>1]>>(4*(e&1))&15) - offs[g]) * muls[g])
				want += w * float64(x[e])
				mag += math.Abs(w * float64(x[e]))
			}
			// The same groups with binary16 scale codes and byte zero
			// points read by the kernel itself.
			scodes := make([]byte, 2*ng)
			zeros := make([]byte, ng)
			for g := range muls {
				h := quant.EncodeF16(muls[g])
				scodes[2*g], scodes[2*g+1] = byte(h), byte(h>>8)
				muls[g] = quant.DecodeF16(h) // the kernel's multiplier
				zeros[g] = byte(offs[g])
			}
			want, mag = 0, 0
			for e := 0; e < n; e++ {
				g := e / gs
				w := float64((float32(codes[e>>1]>>(4*(e&1))&15) - offs[g]) * muls[g])
				want += w * float64(x[e])
				mag += math.Abs(w * float64(x[e]))
			}
			if got, ok := int4DotS16SIMD(x, codes, ng, gs, xsv, scodes, zeros, 1); ok {
				if tol := 4 * float64(gs+2) * u32 * mag * 8; math.Abs(float64(got)-want) > tol {
					t.Errorf("s16 gs=%d ng=%d: got %v want %v (tol %g)", gs, ng, got, want, tol)
				}
			}
			for _, k := range []struct {
				name string
				f    func(x []float32, codes []byte, ngroups, gs int, xsv, muls, offs []float32) float32
			}{{"simd", int4DotSIMD}, {"go", int4DotGo}} {
				got := float64(k.f(x, codes, ng, gs, xsv, muls, offs))
				// Codes enter unscaled and the zero point through Σx: the
				// error bound is relative to Σ(|code|+|off|)·|x|·|mul|.
				tol := 4 * float64(gs+2) * u32 * mag * 8
				if math.Abs(got-want) > tol {
					t.Errorf("%s gs=%d ng=%d: got %v want %v (tol %g)", k.name, gs, ng, got, want, tol)
				}
			}
			// Every code at the zero point: exactly 0 from the kernel.
			for i := range codes {
				codes[i] = 0x88
			}
			for g := range offs {
				offs[g] = 8
			}
			if got := int4DotSIMD(x, codes, ng, gs, xsv, muls, offs); got != 0 {
				t.Errorf("gs=%d ng=%d: zero-point codes give %v, want 0", gs, ng, got)
			}
		}
	}
}
