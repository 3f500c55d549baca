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

// TestGridParts checks, for every grid, that a block decodes (llama.cpp's
// dequantization, model/gguf) to Σ_t half_t·part_t up to float32
// rounding, with the block's own fp16 scales and with scales set by
// SetHalves: the linearity the post-GPTQ scale refit relies on.
func TestGridParts(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, name := range []string{"Q8_0", "Q5_0", "Q5_1", "Q4_0", "Q4_K", "Q5_K", "Q6_K", "Q3_K", "Q2_K", "IQ4_NL", "IQ4_XS"} {
		g, err := LookupGrid(name)
		if err != nil {
			t.Fatal(err)
		}
		typ, _ := gguf.ParseType(name)
		x := make([]float32, g.BlockSize)
		for i := range x {
			x[i] = float32(rng.NormFloat64()) * 0.02
		}
		blk := make([]byte, g.BlockBytes)
		if err := g.Encode(blk, x, nil); err != nil {
			t.Fatal(err)
		}
		if g.Halves() < 1 || g.Halves() > 2 {
			t.Fatalf("%s: %d fp16 scales", name, g.Halves())
		}
		parts := make([][]float32, g.Halves())
		for i := range parts {
			parts[i] = make([]float32, g.BlockSize)
		}
		g.Parts(blk, parts)
		for _, halves := range [][]float32{nil, {0.0123, 0.0031}, {-0.5, 2}} {
			if halves != nil {
				g.SetHalves(blk, halves[:g.Halves()])
				halves = halves[:g.Halves()]
				for i := range halves {
					halves[i] = fp32(fp16(halves[i]))
				}
			} else {
				halves = g.readHalves(blk)
			}
			want, err := gguf.Dequantize(typ, blk, int64(g.BlockSize))
			if err != nil {
				t.Fatal(err)
			}
			got := make([]float32, g.BlockSize)
			g.DecodeBlock(blk, got)
			for i := range want {
				var lin float64
				for t2, h := range halves {
					lin += float64(h) * float64(parts[t2][i])
				}
				if got[i] != want[i] {
					t.Fatalf("%s: DecodeBlock element %d %v, dequantized %v", name, i, got[i], want[i])
				}
				if d := lin - float64(want[i]); d*d > 1e-10*(lin*lin+1e-12) {
					t.Errorf("%s halves %v: element %d dequantizes to %v, Σ half·part %v", name, halves, i, want[i], lin)
				}
			}
		}
	}
}
