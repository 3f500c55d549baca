package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestExpF32 checks the vector exp against math.Exp: within 3 ulp where the
// result is a normal float32, 0 below -87.3365 (and for -Inf), +Inf above
// 88.7228, NaN for NaN; every tail length.
func TestExpF32(t *testing.T) {
	inf := float32(math.Inf(1))
	special := []float32{0, float32(math.Copysign(0, -1)), 1, -1, 0.5, 1e-30, -1e-30, 88.72, 88.7228, 88.7229, 89, 100,
		-87.33, -87.3365, -87.34, -90, -104, -200, inf, -inf, float32(math.NaN()), 20, -20, 0.3466, -0.3466}
	r := rand.New(rand.NewPCG(41, 42))
	xs := append([]float32(nil), special...)
	for i := 0; i < 20000; i++ {
		xs = append(xs, float32(r.Float64()*200-100))
	}
	for i := 0; i < 2000; i++ {
		xs = append(xs, float32(r.NormFloat64()))
	}
	for start := 0; start < 9; start++ { // every alignment/tail
		in := xs[start:]
		got := make([]float32, len(in))
		expF32(got, in)
		for i, x := range in {
			g := got[i]
			switch {
			case x != x:
				if g == g {
					t.Fatalf("exp(NaN) = %v", g)
				}
				continue
			case x < -87.3365:
				if g != 0 {
					t.Fatalf("exp(%v) = %v, want 0", x, g)
				}
				continue
			case x > 88.7228:
				if !math.IsInf(float64(g), 1) {
					t.Fatalf("exp(%v) = %v, want +Inf", x, g)
				}
				continue
			}
			want := math.Exp(float64(x))
			if want > math.MaxFloat32 {
				if !math.IsInf(float64(g), 1) && float64(g) < math.MaxFloat32*(1-4e-7) {
					t.Fatalf("exp(%v) = %v, want about %v", x, g, want)
				}
				continue
			}
			if d := math.Abs(float64(g)-want) / want; d > 3*(1.0/(1<<23)) {
				t.Fatalf("exp(%v) = %v, want %v (rel err %.3g)", x, g, want, d)
			}
		}
	}
}
