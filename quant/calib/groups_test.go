package calib

import (
	"context"
	"slices"
	"testing"

	"github.com/marlin-llm/marlin/model/arch"
	"github.com/marlin-llm/marlin/quant/gptq"
)

// TestGroupsMatchLayer: Layer quantizes exactly the groups Groups gives
// (what memory planning counts before a layer runs), each projection once,
// on every layer of every nano model, true-sequential or not. (Before Layer
// took its groups from Groups, this test compared Groups with the groups
// Layer found from its first pass's aliases, on the same models.)
func TestGroupsMatchLayer(t *testing.T) {
	for _, name := range []string{"qwen3-nano", "qwen3moe-nano", "glm47-nano", "nemotronh-nano"} {
		for _, ts := range []bool{false, true} {
			m := loadModel(t, name)
			ids := tokenize(t, name, "calib.txt")[:4*32]
			got := map[int][][]string{}
			fn := func(_ context.Context, ps []*arch.Proj, _ map[string]*gptq.Hessian) error {
				var g []string
				for _, p := range ps {
					g = append(g, p.Name())
				}
				slices.Sort(g)
				got[ps[0].Layer()] = append(got[ps[0].Layer()], g)
				return nil
			}
			if _, err := Sequential(context.Background(), m, ids, Options{Window: 32, TrueSequential: ts}, nil, fn); err != nil {
				t.Fatal(err)
			}
			for l := 0; l < m.NumLayers(); l++ {
				var names []string
				key := map[string]string{}
				for _, p := range m.LayerProjs(l) {
					names = append(names, p.Name())
					key[p.Name()] = p.InputKey()
				}
				want := Groups(names, func(n string) string { return key[n] }, ts)
				for i := range want {
					want[i] = slices.Clone(want[i])
					slices.Sort(want[i])
				}
				if !slices.EqualFunc(got[l], want, slices.Equal[[]string]) {
					t.Errorf("%s true_sequential=%v layer %d: Layer quantized the groups\n%v\nGroups says\n%v", name, ts, l, got[l], want)
				}
			}
		}
	}
}

// TestGroupsDense: the true-sequential groups of a dense layer are the
// GPTQ ones (q/k/v, o, gate/up, down); without true-sequential, one group.
func TestGroupsDense(t *testing.T) {
	p := "model.layers.3."
	names := []string{p + "self_attn.q_proj", p + "self_attn.k_proj", p + "self_attn.v_proj", p + "self_attn.o_proj",
		p + "mlp.gate_proj", p + "mlp.up_proj", p + "mlp.down_proj"}
	key := map[string]string{names[1]: names[0], names[2]: names[0], names[5]: names[4]}
	inputKey := func(n string) string {
		if k, ok := key[n]; ok {
			return k
		}
		return n
	}
	want := [][]string{names[0:3], names[3:4], names[4:6], names[6:7]}
	if got := Groups(names, inputKey, true); !slices.EqualFunc(got, want, slices.Equal[[]string]) {
		t.Errorf("true-sequential groups %v, want %v", got, want)
	}
	if got := Groups(names, inputKey, false); len(got) != 1 || !slices.Equal(got[0], names) {
		t.Errorf("groups %v, want one group of all", got)
	}
}
