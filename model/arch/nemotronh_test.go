package arch

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/marlin-llm/marlin/internal/assets"

	"github.com/marlin-llm/marlin/model/safetensors"
	"github.com/marlin-llm/marlin/model/synth"
)

// TestNemotronHSyntheticDecode builds a synthetic Nemotron-3-Nano (real
// Mamba-2 and attention geometry, narrow hidden and expert widths, the
// first 6 layers of its pattern: M, E and *) and checks what needs no
// golden: the Mamba state cache's decode (a prompt, single tokens, a block)
// gives Forward's logits, sequences of a batch are independent, and every
// Linear the forward runs (Mamba in/out_proj, attention, router, routed and
// shared experts) reports its input.
func TestNemotronHSyntheticDecode(t *testing.T) {
	dir := t.TempDir()
	cfgMap := synth.Nemotron3Nano(32, 6)
	ts, err := synth.NemotronHTensors(cfgMap)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := synth.Write(context.Background(), dir, cfgMap, ts, 3, 0); err != nil {
		t.Fatal(err)
	}
	m, err := Load(dir, Options{Backend: cpuBackend(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const L = 40
	ids := make([]int32, L)
	for i := range ids {
		ids[i] = int32((i*37 + 11) % 2000)
	}
	seen := map[string]int{}
	hooks := &Hooks{Linear: func(name string, x []float32, rows, cols int) { seen[name] += rows }}
	want, err := m.Forward(ctx, ids, Batch{Seqs: 1, Len: L}, hooks)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Projs() {
		if p.Expert() < 0 && seen[p.Name()] != L {
			t.Errorf("%s saw %d rows, want %d", p.Name(), seen[p.Name()], L)
		}
	}
	var routed int
	for _, p := range m.Projs() {
		if p.Expert() >= 0 && slices.Contains([]string{"up_proj"}, p.Name()[len(p.Name())-7:]) {
			routed += seen[p.Name()]
		}
	}
	// Layers 1 and 3 are MoE: 6 experts per token each.
	if routed != 2*6*L {
		t.Errorf("routed experts' up_proj saw %d rows, want %d", routed, 2*6*L)
	}
	two := append(slices.Clone(ids[20:]), ids...)
	got2, err := m.Forward(ctx, two, Batch{Seqs: 3, Len: 20}, nil)
	if err != nil {
		t.Fatal(err)
	}
	first, err := m.Forward(ctx, ids[:20], Batch{Seqs: 1, Len: 20}, nil)
	if err != nil {
		t.Fatal(err)
	}
	V := m.Vocab()
	if d, r := relErr(got2[20*V:40*V], first); !(d <= 1e-5*r) {
		t.Errorf("batched sequence differs from the same sequence alone: %.3g of %.3g", d, r)
	}
	c, err := m.NewCache(L)
	if err != nil {
		t.Fatal(err)
	}
	for pass := 0; pass < 2; pass++ {
		c.Reset()
		var got []float32
		for pos, chunks := 0, []int{7, 1, 1, 1, 13}; pos < L; {
			n := L - pos
			if len(chunks) > 0 {
				n, chunks = min(n, chunks[0]), chunks[1:]
			}
			lg, err := m.Decode(ctx, c, ids[pos:pos+n])
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, lg...)
			pos += n
		}
		d, r := relErr(got, want)
		t.Logf("pass %d: decode vs forward max|diff| %.3g, max|logit| %.3g", pass, d, r)
		if !(d <= 1e-4*r) {
			t.Errorf("pass %d: decode logits differ from Forward: %.3g of %.3g", pass, d, r)
		}
	}
}

// TestNemotronHBuildLayer builds every layer of a synthetic Nemotron-3-Nano
// on its own (what the layer-streamed calibration holds at a time) and
// checks that it computes what the whole model's layer does and lists the
// same Linears: Mamba in_proj/out_proj, attention q/k/v/o, router, every
// expert's up/down and the shared expert.
func TestNemotronHBuildLayer(t *testing.T) {
	dir := t.TempDir()
	cfgMap := synth.Nemotron3Nano(32, 6)
	ts, err := synth.NemotronHTensors(cfgMap)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := synth.Write(context.Background(), dir, cfgMap, ts, 5, 0); err != nil {
		t.Fatal(err)
	}
	m, err := Load(dir, Options{Backend: cpuBackend(t)})
	if err != nil {
		t.Fatal(err)
	}
	ck, err := safetensors.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	ctx := context.Background()
	batch := Batch{Seqs: 2, Len: 9}
	ids := make([]int32, batch.Tokens())
	for i := range ids {
		ids[i] = int32(i * 53 % 3000)
	}
	h, err := m.Embed(ids)
	if err != nil {
		t.Fatal(err)
	}
	wantProjs := map[byte][]string{'M': {"mixer.in_proj", "mixer.out_proj"}, '*': {"mixer.q_proj", "mixer.k_proj", "mixer.v_proj", "mixer.o_proj"}}
	for l := 0; l < m.NumLayers(); l++ {
		ly, err := BuildLayer(m.Config(), ck, l, Options{Backend: cpuBackend(t)})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, p := range ly.Projs() {
			names = append(names, p.Name())
		}
		var whole []string
		for _, p := range m.LayerProjs(l) {
			whole = append(whole, p.Name())
		}
		if !slices.Equal(names, whole) {
			t.Errorf("layer %d: BuildLayer's Linears %v, the model's %v", l, names, whole)
		}
		kind := m.Config().Hybrid.Pattern[l]
		pre := m.Config().LayerPrefix(l)
		for _, w := range wantProjs[kind] {
			if !slices.Contains(names, pre+w) {
				t.Errorf("layer %d (%c): no Linear %s", l, kind, pre+w)
			}
		}
		if kind == 'E' && len(names) != 1+2*128+2 {
			t.Errorf("layer %d: %d Linears, want router + 128×2 experts + 2 shared", l, len(names))
		}
		got := slices.Clone(h)
		if err := ly.Forward(ctx, got, batch, nil); err != nil {
			t.Fatal(err)
		}
		if err := m.Layer(ctx, l, h, batch, nil); err != nil {
			t.Fatal(err)
		}
		if d, r := relErr(got, h); d != 0 {
			t.Errorf("layer %d: BuildLayer's forward differs from the model's by %.3g (of %.3g)", l, d, r)
		}
	}
}

// TestNemotronHGreedyGolden continues golden.json's prompt greedily through
// the Mamba-state / KV cache (prompt prefill, then one token at a time) and
// compares the tokens with transformers' generate() on the same model.
func TestNemotronHGreedyGolden(t *testing.T) {
	dir := assets.Model(t, "nemotronh-nano")
	var g struct {
		Greedy struct {
			Prompt []int32 `json:"prompt_ids"`
			Cached []int32 `json:"generated_ids_cached"`
		} `json:"greedy"`
	}
	assets.ReadJSON(t, filepath.Join(dir, "golden.json"), &g)
	if len(g.Greedy.Prompt) == 0 || len(g.Greedy.Cached) == 0 {
		t.Fatal("golden.json has no greedy continuation")
	}
	m := loadNano(t, "nemotronh-nano")
	c, err := m.NewCache(len(g.Greedy.Prompt) + len(g.Greedy.Cached))
	if err != nil {
		t.Fatal(err)
	}
	V := m.Vocab()
	lg, err := m.Decode(context.Background(), c, g.Greedy.Prompt)
	if err != nil {
		t.Fatal(err)
	}
	last := lg[len(lg)-V:]
	var got []int32
	for range g.Greedy.Cached {
		best := 0
		for i, v := range last {
			if v > last[best] {
				best = i
			}
		}
		got = append(got, int32(best))
		if last, err = m.Decode(context.Background(), c, []int32{int32(best)}); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(got, g.Greedy.Cached) {
		t.Errorf("greedy tokens %v, transformers %v", got, g.Greedy.Cached)
	}
}
