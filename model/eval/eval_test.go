package eval

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/marlin-llm/marlin/internal/assets"
	"github.com/marlin-llm/marlin/kernels"
	"github.com/marlin-llm/marlin/model/arch"
	"github.com/marlin-llm/marlin/model/tokenizer"
	"github.com/marlin-llm/marlin/quant"
)

type goldenJSON struct {
	PPL      float64                       `json:"ppl_f32"`
	PPLLlama float64                       `json:"ppl_llamacpp_protocol_f32"`
	Counts   map[string][]int              `json:"expert_token_counts_first_16_windows"`
	Protocol struct{ Window, Windows int } `json:"protocol"`
}

func setup(t testing.TB, name string) (*arch.Model, []int32, *goldenJSON) {
	t.Helper()
	dir := assets.Model(t, name)
	b, err := kernels.Open("cpu", kernels.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := arch.Load(dir, arch.Options{Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(assets.Shared(t, "corpus", "valid.txt"))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := tok.Encode(string(text))
	if err != nil {
		t.Fatal(err)
	}
	var g goldenJSON
	assets.ReadJSON(t, filepath.Join(dir, "golden.json"), &g)
	if g.Protocol.Window != 256 || g.Protocol.Windows != 64 {
		t.Fatalf("unexpected protocol %+v", g.Protocol)
	}
	return m, ids, &g
}

var models = []string{"qwen3-nano", "qwen3moe-nano", "glm47-nano", "nemotronh-nano"}

// TestPerplexityGolden compares the full 64-window perplexities (both
// protocols, from one pass) with transformers' within 0.1%. By default it
// runs glm47-nano (MLA + sigmoid routing, about 8 CPU-seconds); MARLIN_SLOW=1
// adds qwen3-nano and qwen3moe-nano; -short skips it.
func TestPerplexityGolden(t *testing.T) {
	if testing.Short() {
		t.Skip("full 64-window perplexity: skipped with -short")
	}
	for _, name := range models {
		t.Run(name, func(t *testing.T) {
			if name != "glm47-nano" && name != "nemotronh-nano" && os.Getenv("MARLIN_SLOW") == "" {
				t.Skip("set MARLIN_SLOW=1 for the full perplexity of every model")
			}
			m, ids, g := setup(t, name)
			sc, err := Score(context.Background(), m, ids, Options{Window: 256, Windows: 64})
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				llama  bool
				want   float64
				tokens int
			}{{false, g.PPL, 64 * 255}, {true, g.PPLLlama, 64 * 127}} {
				r := sc.Perplexity(c.llama)
				rel := math.Abs(r.PPL/c.want - 1)
				t.Logf("llamacpp=%v: ppl %.6f golden %.6f rel %.2e (%d tokens)", c.llama, r.PPL, c.want, rel, r.Tokens)
				if rel > 1e-3 {
					t.Errorf("llamacpp=%v: ppl %.6f differs from golden %.6f by %.3f%%", c.llama, r.PPL, c.want, 100*rel)
				}
				if r.Tokens != c.tokens {
					t.Errorf("scored %d tokens, want %d", r.Tokens, c.tokens)
				}
			}
		})
	}
}

// TestExpertCounts routes the first 16 windows through both MoE models and
// compares the per-expert token counts with transformers'.
func TestExpertCounts(t *testing.T) {
	for _, name := range []string{"qwen3moe-nano", "glm47-nano", "nemotronh-nano"} {
		t.Run(name, func(t *testing.T) {
			m, ids, g := setup(t, name)
			var counts arch.ExpertCounts
			_, err := Perplexity(context.Background(), m, ids, Options{Window: 256, Windows: 16, Hooks: &arch.Hooks{Route: counts.Add}})
			if err != nil {
				t.Fatal(err)
			}
			got := counts.Counts()
			if len(got) != len(g.Counts) {
				t.Fatalf("%d routers reported, golden has %d", len(got), len(g.Counts))
			}
			for gate, want := range g.Counts {
				c := got[gate]
				t.Logf("%s: %v (golden %v)", gate, c, want)
				if len(c) != len(want) {
					t.Errorf("%s: %d experts, want %d", gate, len(c), len(want))
					continue
				}
				for e := range want {
					if c[e] != want[e] {
						t.Errorf("%s expert %d: %d tokens, golden %d", gate, e, c[e], want[e])
					}
				}
			}
		})
	}
}

// TestPerplexityShort checks the protocol plumbing quickly: 2 windows, the
// scored-token counts of both protocols, a finite perplexity, a KL of a
// model with itself of zero, and bad options.
func TestPerplexityShort(t *testing.T) {
	m, ids, _ := setup(t, "qwen3-nano")
	ctx := context.Background()
	calls := 0
	r, err := Perplexity(ctx, m, ids, Options{Windows: 2, Batch: 1, Progress: func(done, total int) {
		calls++
		if total != 2 || done != calls {
			t.Errorf("progress %d/%d at call %d", done, total, calls)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Tokens != 2*255 || !(r.PPL > 1 && r.PPL < 2112) || calls != 2 {
		t.Errorf("result %+v after %d progress calls", r, calls)
	}
	rl, err := Perplexity(ctx, m, ids, Options{Windows: 2, LlamaCpp: true})
	if err != nil {
		t.Fatal(err)
	}
	if rl.Tokens != 2*127 {
		t.Errorf("llama.cpp protocol scored %d tokens, want %d", rl.Tokens, 2*127)
	}
	k, err := KL(ctx, m, m, ids, Options{Windows: 1})
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(k.KL) > 1e-9 || k.Top1 != 1 || math.Abs(k.P.PPL-k.Q.PPL) > 1e-9 {
		t.Errorf("KL of a model with itself: %+v", k)
	}
	for _, o := range []Options{{Window: 1}, {Windows: 1 << 20}, {Windows: -1}} {
		if _, err := Perplexity(ctx, m, ids, o); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
	if _, err := Perplexity(ctx, m, []int32{1, 2, 99999, 3}, Options{Window: 4}); err == nil {
		t.Error("out-of-vocabulary token accepted")
	}
}

// TestKLOrdering compares qwen3-nano with RTN-quantized copies of itself:
// KL must be positive, larger for int2 than for int4, and the reference
// perplexity must equal Perplexity's.
func TestKLOrdering(t *testing.T) {
	p, ids, _ := setup(t, "qwen3-nano")
	ctx := context.Background()
	opts := Options{Windows: 1}
	ref, err := Perplexity(ctx, p, ids, opts)
	if err != nil {
		t.Fatal(err)
	}
	var kls []float64
	for _, format := range []string{"int8", "int4", "int2"} {
		q, _, _ := setup(t, "qwen3-nano")
		f, err := quant.Lookup(format)
		if err != nil {
			t.Skipf("format %s: %v", format, err)
		}
		for _, pr := range q.Projs() {
			if pr.Layer() < 0 {
				continue
			}
			w := pr.Linear().(arch.Weighted)
			out, in := w.Dims()
			pk, err := quant.Quantize(w.Weight(), out, in, f, nil)
			if err != nil {
				t.Fatal(err)
			}
			ql, err := arch.NewQuantized(pk, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := pr.Set(ql); err != nil {
				t.Fatal(err)
			}
		}
		k, err := KL(ctx, p, q, ids, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: KL %.5f (max %.4f), top-1 %.3f, ppl %.4f vs %.4f", format, k.KL, k.MaxKL, k.Top1, k.Q.PPL, k.P.PPL)
		if math.Abs(k.P.PPL/ref.PPL-1) > 1e-12 || k.P.Tokens != ref.Tokens {
			t.Errorf("reference ppl %v differs from Perplexity's %v", k.P, ref)
		}
		if !(k.KL > 0) || k.MaxKL < k.KL || k.Top1 <= 0 || k.Top1 > 1 {
			t.Errorf("%s: implausible %+v", format, k)
		}
		kls = append(kls, k.KL)
	}
	if !(kls[0] < kls[1] && kls[1] < kls[2]) {
		t.Errorf("KL not increasing with coarser quantization: int8 %g, int4 %g, int2 %g", kls[0], kls[1], kls[2])
	}
}

// TestKLLayered: running the models layer by layer (Options.AfterLayer)
// gives exactly the scores of the window-batch order, and calls AfterLayer
// once per layer in order.
func TestKLLayered(t *testing.T) {
	p, ids, _ := setup(t, "qwen3-nano")
	q, _, _ := setup(t, "qwen3-nano")
	for _, pr := range q.Projs() {
		if pr.Layer() == 1 {
			w := pr.Linear().(arch.Weighted)
			out, in := w.Dims()
			f, _ := quant.Lookup("int4")
			pk, err := quant.Quantize(w.Weight(), out, in, f, nil)
			if err != nil {
				t.Fatal(err)
			}
			ql, _ := arch.NewQuantized(pk, nil)
			if err := pr.Set(ql); err != nil {
				t.Fatal(err)
			}
		}
	}
	ctx := context.Background()
	opts := Options{Windows: 6, Window: 64, Batch: 4}
	want, err := KL(ctx, p, q, ids, opts)
	if err != nil {
		t.Fatal(err)
	}
	var layers []int
	opts.AfterLayer = func(l int) { layers = append(layers, l) }
	got, err := KL(ctx, p, q, ids, opts)
	if err != nil {
		t.Fatal(err)
	}
	if *got != *want {
		t.Errorf("layered %+v, batched %+v", got, want)
	}
	if len(layers) != p.NumLayers() || layers[0] != 0 || layers[len(layers)-1] != p.NumLayers()-1 {
		t.Errorf("AfterLayer calls %v", layers)
	}
}
