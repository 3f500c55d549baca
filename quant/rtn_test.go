package quant

import (
	"math/rand/v2"
	"testing"
)

func randWeights(n int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 1))
	w := make([]float32, n)
	for i := range w {
		w[i] = float32(r.NormFloat64() * 0.02)
	}
	return w
}

// TestRoundTripAllFormats quantizes Gaussian weights in every registered
// format, checks the report against loose per-bit-width expectations, and
// that the tensor conversion round-trips to the same dequantized values.
func TestRoundTripAllFormats(t *testing.T) {
	const rows, cols = 8, 256
	w := randWeights(rows*cols, 1)
	// Loose floors for N(0, 0.02²) weights: far below what a correct
	// quantizer reaches, far above what a broken one does.
	minCos := map[int]float64{2: 0.70, 3: 0.95, 4: 0.99, 8: 0.998, 16: 0.99999}
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			f, err := Lookup(name)
			if err != nil {
				t.Fatal(err)
			}
			p, err := Quantize(w, rows, cols, f, &Options{Name: "w"})
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Validate(); err != nil {
				t.Fatal(err)
			}
			rep, err := Measure("w", w, p)
			if err != nil {
				t.Fatal(err)
			}
			t.Log(rep)
			if rep.Cosine < minCos[f.Bits] {
				t.Errorf("cosine %.5f < %.5f", rep.Cosine, minCos[f.Bits])
			}
			ts := p.ToTensors("model.w", map[string]string{MetaMethod: "rtn"})
			q, err := FromTensors("model.w", ts)
			if err != nil {
				t.Fatal(err)
			}
			a := make([]float32, rows*cols)
			b := make([]float32, rows*cols)
			p.Dequantize(a)
			q.Dequantize(b)
			for i := range a {
				if a[i] != b[i] {
					t.Fatalf("element %d: %v before tensors, %v after", i, a[i], b[i])
				}
			}
		})
	}
}
