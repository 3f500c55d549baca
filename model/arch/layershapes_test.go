package arch

import (
	"slices"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/internal/assets"
	"github.com/marlin-llm/marlin/model/hfconfig"
	"github.com/marlin-llm/marlin/model/safetensors"
)

// TestLayerProjShapes checks that the shapes-only build lists, for every
// layer of every nano model, the projections the real build makes: same
// names, order, dimensions, experts and input keys (which projections
// share a Hessian).
func TestLayerProjShapes(t *testing.T) {
	for _, name := range []string{"qwen3-nano", "qwen3moe-nano", "glm47-nano", "nemotronh-nano"} {
		t.Run(name, func(t *testing.T) {
			m := loadNano(t, name)
			shape := checkpointShapes(t, name)
			shared := 0
			for l := 0; l < m.NumLayers(); l++ {
				got, err := LayerProjShapes(m.Config(), shape, l)
				if err != nil {
					t.Fatal(err)
				}
				var want []ProjShape
				for _, p := range m.LayerProjs(l) {
					o, in := p.Linear().Dims()
					want = append(want, ProjShape{Name: p.Name(), InputKey: p.InputKey(), Out: o, In: in, Expert: p.Expert()})
					if p.InputKey() != p.Name() {
						shared++
					}
				}
				if !slices.Equal(got, want) {
					t.Errorf("layer %d: shapes-only build\n%v\nreal build\n%v", l, got, want)
				}
			}
			if shared == 0 {
				t.Errorf("no projection shares an input: the comparison checks nothing about input keys")
			}
		})
	}
}

// TestLayerProjShapesErrors: a missing or misshapen tensor fails as it
// does in BuildLayer, naming the tensor.
func TestLayerProjShapesErrors(t *testing.T) {
	cfg, err := hfconfig.Load(assets.Model(t, "qwen3-nano"))
	if err != nil {
		t.Fatal(err)
	}
	shape := checkpointShapes(t, "qwen3-nano")
	q := cfg.LayerPrefix(0) + "self_attn.q_proj.weight"
	for _, tc := range []struct {
		name  string
		shape func(string) ([]int, bool)
	}{
		{"missing", func(n string) ([]int, bool) {
			sh, ok := shape(n)
			return sh, ok && n != q
		}},
		{"misshapen", func(n string) ([]int, bool) {
			sh, ok := shape(n)
			if n == q {
				return []int{sh[0] + 1, sh[1]}, ok
			}
			return sh, ok
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LayerProjShapes(cfg, tc.shape, 0)
			if err == nil || !strings.Contains(err.Error(), q) {
				t.Fatalf("err = %v, want one naming %s", err, q)
			}
		})
	}
	if _, err := LayerProjShapes(cfg, nil, cfg.NumLayers); err == nil {
		t.Error("layer past num_hidden_layers accepted")
	}
}

// checkpointShapes returns the shapes of a nano model's tensors, read from
// its safetensors headers.
func checkpointShapes(t *testing.T, name string) func(string) ([]int, bool) {
	t.Helper()
	ck, err := safetensors.Open(assets.Model(t, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ck.Close() })
	return func(n string) ([]int, bool) {
		ti, ok := ck.Info(n)
		return ti.Shape, ok
	}
}
