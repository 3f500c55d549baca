package eval

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/internal/assets"
	"github.com/marlin-llm/marlin/model/arch"
	"github.com/marlin-llm/marlin/quant"
)

// TestRTNGolden fake-quantizes every 2-D model.layers.* weight except the
// MoE routers with the RTN recipes of testdata/README.md (through the quant
// package and arch's swappable Linears) and compares the perplexities with
// transformers' goldens within 0.1%. It needs MARLIN_SLOW=1 (15 runs of 64
// windows).
func TestRTNGolden(t *testing.T) {
	if os.Getenv("MARLIN_SLOW") == "" {
		t.Skip("15 full perplexity runs: set MARLIN_SLOW=1")
	}
	recipes := []struct {
		key, format string
		group       int
		f32Scale    bool
	}{
		{"ppl_rtn_int4_g128_sym_f32", "int4", 128, true},
		{"ppl_rtn_int3_g128_sym_f32", "int3", 128, true},
		{"ppl_rtn_int2_g64_sym_f32", "int2", 64, true},
		{"ppl_rtn_mxfp4_f32", "mxfp4", 32, false},
		{"ppl_rtn_nvfp4_f32", "nvfp4", 16, false},
	}
	for _, name := range models {
		t.Run(name, func(t *testing.T) {
			m, ids, _ := setup(t, name)
			var g map[string]any
			assets.ReadJSON(t, filepath.Join(assets.Model(t, name), "golden.json"), &g)
			orig := map[string]arch.Linear{}
			for _, p := range m.Projs() {
				orig[p.Name()] = p.Linear()
			}
			for _, r := range recipes {
				want, ok := g[r.key].(float64)
				if !ok {
					t.Errorf("golden has no %s", r.key)
					continue
				}
				f, err := quant.Lookup(r.format)
				if err != nil {
					t.Fatal(err)
				}
				if f, err = f.WithGroupSize(r.group); err != nil {
					t.Fatal(err)
				}
				if r.f32Scale {
					if f, err = f.WithScale(quant.ScaleF32); err != nil {
						t.Fatal(err)
					}
				}
				n := 0
				for _, p := range m.Projs() {
					if p.Layer() < 0 || strings.HasSuffix(p.Name(), ".mlp.gate") || strings.HasSuffix(p.Name(), ".mixer.gate") {
						continue
					}
					w := orig[p.Name()].(arch.Weighted)
					out, in := w.Dims()
					pk, err := quant.Quantize(w.Weight(), out, in, f, &quant.Options{Name: p.Name(), Workers: -1})
					if err != nil {
						t.Fatal(err)
					}
					deq := make([]float32, out*in)
					for row := 0; row < out; row++ {
						pk.DequantizeRow(row, deq[row*in:(row+1)*in])
					}
					d, err := arch.NewDense(out, in, deq, nil)
					if err != nil {
						t.Fatal(err)
					}
					if err := p.Set(d); err != nil {
						t.Fatal(err)
					}
					n++
				}
				if qt, ok := g["quantized_tensors"].(float64); ok && int(qt) != n {
					t.Errorf("quantized %d tensors, golden quantized %v", n, qt)
				}
				res, err := Perplexity(context.Background(), m, ids, Options{Windows: 64})
				if err != nil {
					t.Fatal(err)
				}
				rel := math.Abs(res.PPL/want - 1)
				t.Logf("%s (%s): ppl %.5f golden %.5f rel %.2e", r.key, f, res.PPL, want, rel)
				if rel > 1e-3 {
					t.Errorf("%s: ppl %.5f vs golden %.5f (%.3f%%)", r.key, res.PPL, want, 100*rel)
				}
			}
		})
	}
}
