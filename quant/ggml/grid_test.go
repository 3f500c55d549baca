package ggml

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/marlin-llm/marlin/model/gguf"
)

// TestGridMatchesDequant checks, for every grid, with and without
// importance weights, that Params/Codes/Value reproduce model/gguf's
// dequantization (llama.cpp's dequantize_row_*) bit for bit, that
// SetCodes inverts Codes, and that codes chosen by Round and stored with
// SetCodes dequantize to Round's values.
func TestGridMatchesDequant(t *testing.T) {
	names := []string{"Q8_0", "Q5_0", "Q5_1", "Q4_0", "Q4_K", "Q5_K", "Q6_K", "Q3_K", "Q2_K", "IQ4_NL", "IQ4_XS"}
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 1024
	x := make([]float32, n)
	qw := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64()) * 0.02
		if i%97 == 0 {
			x[i] *= 8 // outliers
		}
		qw[i] = float32(rng.ExpFloat64())
	}
	for _, name := range names {
		for _, weighted := range []bool{false, true} {
			g, err := LookupGrid(name)
			if err != nil {
				t.Fatal(err)
			}
			typ, err := gguf.ParseType(name)
			if err != nil {
				t.Fatal(err)
			}
			var w []float32
			if weighted {
				w = qw
			}
			row := make([]byte, g.RowBytes(n))
			if err := g.Encode(row, x, w); err != nil {
				t.Fatal(err)
			}
			want, err := gguf.Dequantize(typ, row, n)
			if err != nil {
				t.Fatal(err)
			}
			ng := n / g.Group
			d, m := make([]float32, ng), make([]float32, ng)
			g.Params(row, d, m)
			codes := make([]uint8, n)
			g.Codes(row, codes)
			var num, den float64
			for i := range x {
				got := g.Value(codes[i], d[i/g.Group], m[i/g.Group])
				if got != want[i] {
					t.Fatalf("%s weighted=%v: element %d: grid value %v, dequantized %v", name, weighted, i, got, want[i])
				}
				e := float64(got - x[i])
				num += e * e
				den += float64(x[i]) * float64(x[i])
			}
			if num/den > 0.25 {
				t.Errorf("%s weighted=%v: relative squared error %.3f: fit is broken", name, weighted, num/den)
			}
			again := bytes.Clone(row)
			g.SetCodes(again, codes)
			if !bytes.Equal(again, row) {
				t.Fatalf("%s: SetCodes(Codes(row)) changed the row", name)
			}
			// Round a perturbed weight onto the fixed scales.
			vals := make([]float32, n)
			for i := range x {
				c, v := g.Round(x[i]*1.07+0.001, d[i/g.Group], m[i/g.Group])
				codes[i], vals[i] = c, v
			}
			g.SetCodes(again, codes)
			got, _ := gguf.Dequantize(typ, again, n)
			for i := range got {
				if got[i] != vals[i] {
					t.Fatalf("%s: rounded element %d: Round says %v, dequantized %v", name, i, vals[i], got[i])
				}
			}
		}
	}
}
