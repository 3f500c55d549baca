package arch

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/marlin-llm/marlin/internal/assets"
	"github.com/marlin-llm/marlin/kernels"
	"github.com/marlin-llm/marlin/model/safetensors"
	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/tensor"
)

var nanoModels = []string{"qwen3-nano", "qwen3moe-nano", "glm47-nano", "nemotronh-nano"}

func cpuBackend(t testing.TB) kernels.Backend {
	b, err := kernels.Open("cpu", kernels.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func loadNano(t testing.TB, name string) *Model {
	t.Helper()
	m, err := Load(assets.Model(t, name), Options{Backend: cpuBackend(t)})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

type goldenOut struct {
	ids    []int32
	logits []float32
	hidden [][]float32
}

func loadGoldenOut(t testing.TB, name string) *goldenOut {
	t.Helper()
	ck, err := safetensors.Open(filepath.Join(assets.Model(t, name), "golden.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	get := func(n string) *tensor.Tensor {
		tt, err := ck.Tensor(n)
		if err != nil {
			t.Fatal(err)
		}
		return tt
	}
	g := &goldenOut{}
	idt := get("input_ids")
	if idt.DType != tensor.I32 {
		t.Fatalf("input_ids dtype %v", idt.DType)
	}
	for i := 0; i+4 <= len(idt.Data); i += 4 {
		g.ids = append(g.ids, int32(uint32(idt.Data[i])|uint32(idt.Data[i+1])<<8|uint32(idt.Data[i+2])<<16|uint32(idt.Data[i+3])<<24))
	}
	f32 := func(n string) []float32 {
		v, err := tensor.ToFloat32(get(n))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	g.logits = f32("logits")
	for i := 0; ; i++ {
		n := fmt.Sprintf("hidden_states.%d", i)
		if _, ok := ck.Info(n); !ok {
			break
		}
		g.hidden = append(g.hidden, f32(n))
	}
	return g
}

// relErr returns max|a-b| and max|b|.
func relErr(a, b []float32) (maxDiff, maxRef float64) {
	for i := range b {
		maxDiff = math.Max(maxDiff, math.Abs(float64(a[i])-float64(b[i])))
		maxRef = math.Max(maxRef, math.Abs(float64(b[i])))
	}
	if len(a) != len(b) {
		maxDiff = math.Inf(1)
	}
	return
}

// TestGolden runs each nano model layer by layer on golden.safetensors'
// input_ids and compares every hidden state and the logits with
// transformers' F32 outputs (max|diff| <= 1e-3 × max|golden|).
func TestGolden(t *testing.T) {
	for _, name := range nanoModels {
		t.Run(name, func(t *testing.T) {
			m := loadNano(t, name)
			g := loadGoldenOut(t, name)
			if len(g.hidden) != m.NumLayers()+1 {
				t.Fatalf("golden has %d hidden states for %d layers", len(g.hidden), m.NumLayers())
			}
			check := func(what string, got, want []float32) {
				d, r := relErr(got, want)
				t.Logf("%s: max|diff| %.3g, max|golden| %.3g, ratio %.2e", what, d, r, d/r)
				if !(d <= 1e-3*r) {
					t.Errorf("%s: max|diff| %.3g exceeds 1e-3 × %.3g", what, d, r)
				}
			}
			ctx := context.Background()
			batch := Batch{Seqs: 1, Len: len(g.ids)}
			h, err := m.Embed(g.ids)
			if err != nil {
				t.Fatal(err)
			}
			check("hidden_states.0 (embeddings)", h, g.hidden[0])
			for l := 0; l < m.NumLayers(); l++ {
				if err := m.Layer(ctx, l, h, batch, nil); err != nil {
					t.Fatal(err)
				}
				if l+1 < m.NumLayers() {
					check(fmt.Sprintf("hidden_states.%d (after layer %d)", l+1, l), h, g.hidden[l+1])
				}
			}
			logits, err := m.Head(ctx, h, batch, nil)
			if err != nil {
				t.Fatal(err)
			}
			check(fmt.Sprintf("hidden_states.%d (final norm)", m.NumLayers()), h, g.hidden[m.NumLayers()])
			check("logits", logits, g.logits)

			// Forward in one call, and as a batch of two copies, gives the same logits.
			two := append(slices.Clone(g.ids), g.ids...)
			l2, err := m.Forward(ctx, two, Batch{Seqs: 2, Len: len(g.ids)}, nil)
			if err != nil {
				t.Fatal(err)
			}
			check("batched logits (seq 0)", l2[:len(logits)], g.logits)
			check("batched logits (seq 1)", l2[len(logits):], g.logits)

			// Causality across attention blocks: the golden prefix followed
			// by 172 more tokens (300 > attnBlock, not a multiple of it)
			// must leave the prefix's logits unchanged.
			long := slices.Clone(g.ids)
			for i := 0; len(long) < 300; i++ {
				long = append(long, g.ids[(i*7)%len(g.ids)])
			}
			l3, err := m.Forward(ctx, long, Batch{Seqs: 1, Len: len(long)}, nil)
			if err != nil {
				t.Fatal(err)
			}
			check("prefix of a 300-token sequence", l3[:len(logits)], g.logits)
		})
	}
}

// scaledSoftmax is the mistake llama.cpp makes without
// expert_gating_func: softmax scoring, then top-k, renormalise, scale.
type scaledSoftmax struct {
	softmaxRouter
	scale float32
}

func (r *scaledSoftmax) route(rc *run, logits []float32, tokens int) ([]int32, []float32, error) {
	idx, w, err := r.softmaxRouter.route(rc, logits, tokens)
	for i := range w {
		w[i] *= r.scale
	}
	return idx, w, err
}

// TestGLMVariantsFail shows the golden logits catch plausible GLM-4.7-Flash
// mistakes: each variant must miss the tolerance TestGolden holds.
func TestGLMVariantsFail(t *testing.T) {
	g := loadGoldenOut(t, "glm47-nano")
	variants := map[string]func(m *Model){
		"softmax routing": func(m *Model) {
			for _, l := range m.layers {
				if moe, ok := l.mlp.(*MoE); ok {
					sr := moe.router.(*sigmoidRouter)
					moe.router = &scaledSoftmax{softmaxRouter{experts: sr.experts, k: sr.k, norm: true}, sr.scale}
				}
			}
		},
		"no routed_scaling_factor": func(m *Model) {
			for _, l := range m.layers {
				if moe, ok := l.mlp.(*MoE); ok {
					moe.router.(*sigmoidRouter).scale = 1
				}
			}
		},
		"no renormalisation": func(m *Model) {
			for _, l := range m.layers {
				if moe, ok := l.mlp.(*MoE); ok {
					moe.router.(*sigmoidRouter).norm = false
				}
			}
		},
		"rotate-half rope": func(m *Model) {
			for _, l := range m.layers {
				l.attn.(*MLAttention).style = kernels.RoPENeoX
			}
		},
		"no shared expert": func(m *Model) {
			for _, l := range m.layers {
				if moe, ok := l.mlp.(*MoE); ok {
					moe.shared = nil
				}
			}
		},
	}
	for name, edit := range variants {
		m := loadNano(t, "glm47-nano")
		edit(m)
		logits, err := m.Forward(context.Background(), g.ids, Batch{Seqs: 1, Len: len(g.ids)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		d, r := relErr(logits, g.logits)
		t.Logf("%s: max|diff|/max|golden| = %.2e", name, d/r)
		if d <= 1e-3*r {
			t.Errorf("%s: logits still within tolerance (%.2e)", name, d/r)
		}
	}
}

// TestHooks checks that the observer sees every Linear with the right
// widths, experts only their routed tokens, and that swapping a Linear
// changes the output.
func TestHooks(t *testing.T) {
	m := loadNano(t, "glm47-nano")
	g := loadGoldenOut(t, "glm47-nano")
	ids := g.ids[:32]
	batch := Batch{Seqs: 1, Len: len(ids)}
	rows := map[string]int{}
	byKey := map[string][]float32{}
	var counts ExpertCounts
	hooks := &Hooks{
		Linear: func(name string, x []float32, r, c int) {
			p, ok := m.Proj(name)
			if !ok {
				t.Errorf("hook for unknown linear %s", name)
				return
			}
			if prev, ok := byKey[p.InputKey()]; ok && !slices.Equal(prev, x) {
				t.Errorf("%s: input differs from another linear of key %s", name, p.InputKey())
			}
			byKey[p.InputKey()] = slices.Clone(x)
			if _, in := p.Linear().Dims(); in != c || len(x) != r*c {
				t.Errorf("%s: hook got %d floats as %dx%d, linear input is %d", name, len(x), r, c, in)
			}
			rows[name] += r
		},
		Route: counts.Add,
	}
	base, err := m.Forward(context.Background(), ids, batch, hooks)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Projs() {
		if p.Expert() < 0 && rows[p.Name()] != len(ids) {
			t.Errorf("%s saw %d rows, want %d", p.Name(), rows[p.Name()], len(ids))
		}
	}
	if n := len(byKey); n >= len(m.Projs()) || n == 0 {
		t.Errorf("%d input keys for %d linears: no sharing", n, len(m.Projs()))
	}
	if p, _ := m.Proj("model.layers.1.mlp.shared_experts.up_proj"); p.InputKey() != "model.layers.1.mlp.input" {
		t.Errorf("shared expert input key %q", p.InputKey())
	}
	for gate, c := range counts.Counts() {
		total := 0
		for e, n := range c {
			total += n
			name := fmt.Sprintf("%s.experts.%d.down_proj", gate[:len(gate)-len(".gate")], e)
			if rows[name] != n {
				t.Errorf("%s saw %d rows, router sent %d", name, rows[name], n)
			}
		}
		if total != len(ids)*2 {
			t.Errorf("%s: %d routed tokens, want %d", gate, total, len(ids)*2)
		}
	}
	// Zeroing o_proj of layer 0 must change the logits; restoring it must not.
	p, _ := m.Proj("model.layers.0.self_attn.o_proj")
	orig := p.Linear()
	out, in := orig.Dims()
	zero, err := NewDense(out, in, make([]float32, out*in), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Set(zero); err != nil {
		t.Fatal(err)
	}
	changed, err := m.Forward(context.Background(), ids, batch, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := relErr(changed, base); d == 0 {
		t.Error("swapping o_proj for zeros did not change the logits")
	}
	bad, _ := NewDense(out+1, in, make([]float32, (out+1)*in), nil)
	if err := p.Set(bad); err == nil {
		t.Error("Set accepted a linear of the wrong shape")
	}
	if err := p.Set(orig); err != nil {
		t.Fatal(err)
	}
	again, err := m.Forward(context.Background(), ids, batch, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := relErr(again, base); d != 0 {
		t.Errorf("restored model differs by %g", d)
	}
}

func TestErrors(t *testing.T) {
	m := loadNano(t, "qwen3-nano")
	if _, err := m.Embed([]int32{0, int32(m.Vocab())}); err == nil {
		t.Error("Embed accepted an id outside the vocabulary")
	}
	if _, err := m.Forward(context.Background(), []int32{1, 2, 3}, Batch{Seqs: 2, Len: 2}, nil); err == nil {
		t.Error("Forward accepted a batch that does not match the ids")
	}
	if err := m.Layer(context.Background(), 99, make([]float32, m.Hidden()), Batch{Seqs: 1, Len: 1}, nil); err == nil {
		t.Error("Layer accepted a bad index")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Forward(ctx, []int32{1, 2}, Batch{Seqs: 1, Len: 2}, nil); err == nil {
		t.Error("Forward ignored a cancelled context")
	}
	// A checkpoint missing a tensor, or with NaN weights, fails to build.
	dir := assets.Model(t, "qwen3-nano")
	ck, err := safetensors.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	for _, c := range []struct {
		name string
		edit func(n string, tt *tensor.Tensor) (*tensor.Tensor, error)
	}{
		{"missing", func(n string, tt *tensor.Tensor) (*tensor.Tensor, error) {
			if n == "model.layers.2.mlp.up_proj.weight" {
				return nil, fmt.Errorf("no tensor %q", n)
			}
			return tt, nil
		}},
		{"nan", func(n string, tt *tensor.Tensor) (*tensor.Tensor, error) {
			if n == "model.layers.1.self_attn.k_proj.weight" {
				c := *tt
				c.Data = slices.Clone(tt.Data)
				c.Data[10], c.Data[11] = 0xc0, 0x7f // BF16 NaN
				return &c, nil
			}
			return tt, nil
		}},
		{"shape", func(n string, tt *tensor.Tensor) (*tensor.Tensor, error) {
			if n == "model.norm.weight" {
				c := *tt
				c.Shape = []int{128}
				c.Data = tt.Data[:256]
				return &c, nil
			}
			return tt, nil
		}},
	} {
		src := editSource{ck, c.edit}
		if _, err := Build(m.Config(), src, Options{Backend: m.Backend()}); err == nil {
			t.Errorf("%s: Build succeeded", c.name)
		} else {
			t.Logf("%s: %v", c.name, err)
		}
	}
}

type editSource struct {
	ck   *safetensors.Checkpoint
	edit func(string, *tensor.Tensor) (*tensor.Tensor, error)
}

func (e editSource) Tensor(n string) (*tensor.Tensor, error) {
	tt, err := e.ck.Tensor(n)
	if err != nil {
		return nil, err
	}
	return e.edit(n, tt)
}

// BenchmarkPrefill measures prefill throughput on one 256-token window.
func BenchmarkPrefill(b *testing.B) {
	for _, name := range []string{"qwen3-nano", "glm47-nano", "qwen3moe-nano"} {
		b.Run(name, func(b *testing.B) {
			m := loadNano(b, name)
			ids := make([]int32, 256)
			for i := range ids {
				ids[i] = int32((i * 37) % 2000)
			}
			batch := Batch{Seqs: 1, Len: len(ids)}
			b.ResetTimer()
			cpu0 := cpuSeconds()
			for b.Loop() {
				if _, err := m.Forward(context.Background(), ids, batch, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(ids)*b.N)/b.Elapsed().Seconds(), "tokens/s")
			if cpu := cpuSeconds() - cpu0; cpu > 0 {
				b.ReportMetric(float64(len(ids)*b.N)/cpu, "tokens/cpu-s")
			}
		})
	}
}

// TestQuantizedLinear swaps every decoder Linear of qwen3-nano for RTN
// packed weights run by the backend's dequant-GEMM, and checks the logits
// equal those of Dense layers holding the dequantized weights.
func TestQuantizedLinear(t *testing.T) {
	f, err := quant.Lookup("int4")
	if err != nil {
		t.Skipf("quant format int4: %v", err)
	}
	g := loadGoldenOut(t, "qwen3-nano")
	ids := g.ids[:64]
	batch := Batch{Seqs: 1, Len: len(ids)}
	mq := loadNano(t, "qwen3-nano")
	md := loadNano(t, "qwen3-nano")
	n := 0
	for _, p := range mq.Projs() {
		if p.Layer() < 0 {
			continue
		}
		w := p.Linear().(Weighted)
		out, in := w.Dims()
		pk, err := quant.Quantize(w.Weight(), out, in, f, nil)
		if err != nil {
			t.Fatal(err)
		}
		ql, err := NewQuantized(pk, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Set(ql); err != nil {
			t.Fatal(err)
		}
		deq := make([]float32, out*in)
		for r := 0; r < out; r++ {
			pk.DequantizeRow(r, deq[r*in:(r+1)*in])
		}
		dl, err := NewDense(out, in, deq, nil)
		if err != nil {
			t.Fatal(err)
		}
		pd, _ := md.Proj(p.Name())
		if err := pd.Set(dl); err != nil {
			t.Fatal(err)
		}
		n++
	}
	lq, err := mq.Forward(context.Background(), ids, batch, nil)
	if err != nil {
		t.Fatal(err)
	}
	ld, err := md.Forward(context.Background(), ids, batch, nil)
	if err != nil {
		t.Fatal(err)
	}
	d, r := relErr(lq, ld)
	t.Logf("%d linears packed as %s: max|diff| %.3g of max|logit| %.3g", n, f.Name, d, r)
	if d > 1e-4*r {
		t.Errorf("packed and dequantized models differ by %.3g", d)
	}
	if d0, _ := relErr(ld, g.logits[:len(ld)]); d0 == 0 {
		t.Error("quantization did not change the logits at all")
	}
}

// TestLazy runs every nano model with Options.Lazy (weights converted per
// use from the mmapped files) and checks it gives the eager model's logits.
func TestLazy(t *testing.T) {
	for _, name := range nanoModels {
		t.Run(name, func(t *testing.T) {
			g := loadGoldenOut(t, name)
			m, err := Load(assets.Model(t, name), Options{Backend: cpuBackend(t), Lazy: true})
			if err != nil {
				t.Fatal(err)
			}
			logits, err := m.Forward(context.Background(), g.ids, Batch{Seqs: 1, Len: len(g.ids)}, nil)
			if err != nil {
				t.Fatal(err)
			}
			d, r := relErr(logits, g.logits)
			if d > 1e-3*r {
				t.Errorf("%s lazy: max|diff| %.3g vs max|logit| %.3g", name, d, r)
			}
			if _, ok := m.projs[0].Linear().(*Lazy); !ok {
				t.Errorf("%s: lazy model has %T linears", name, m.projs[0].Linear())
			}
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
