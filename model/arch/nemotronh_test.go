package arch

import (
	"context"
	"slices"
	"testing"

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
