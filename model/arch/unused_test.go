package arch

import (
	"errors"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/internal/assets"
	"github.com/marlin-llm/marlin/model/hfconfig"
)

// TestCheckpointTensorsAllUsed: a config.json declaring fewer layers than
// the checkpoint holds (issue 18) must not build a shorter model in
// silence; the next-n (MTP) layers a config declares may go unused.
func TestCheckpointTensorsAllUsed(t *testing.T) {
	cases := []struct {
		name  string
		model string
		edit  func(map[string]any)
		want  []string // substrings of the error; nil: builds
	}{
		{"qwen3 as declared", "qwen3-nano", func(map[string]any) {}, nil},
		{"qwen3 2 of 4 layers", "qwen3-nano", assets.FewerLayers(2),
			[]string{"config.json: 22 checkpoint tensors are not used", "all in layers 2-3, but num_hidden_layers is 2", "model.layers.2.input_layernorm.weight", "and 14 more"}},
		{"qwen3moe 3 of 4 layers", "qwen3moe-nano", assets.FewerLayers(3),
			[]string{"layer 3, but num_hidden_layers is 3", "model.layers.3.mlp.experts.0.down_proj.weight"}},
		{"glm 2 of 4 layers", "glm47-nano", assets.FewerLayers(2),
			[]string{"all in layers 2-3, but num_hidden_layers is 2", "model.layers.2.mlp.experts.0.down_proj.weight"}},
		{"glm 3 layers + 1 next-n layer", "glm47-nano", func(c map[string]any) {
			assets.FewerLayers(3)(c)
			c["num_nextn_predict_layers"] = 1
		}, nil},
		{"glm 2 layers + 1 next-n layer", "glm47-nano", func(c map[string]any) {
			assets.FewerLayers(2)(c)
			c["num_nextn_predict_layers"] = 1
		}, []string{"all in layer 3, but num_hidden_layers is 2 and num_nextn_predict_layers 1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := assets.ModelWithConfig(t, c.model, c.edit)
			for _, lazy := range []bool{false, true} {
				m, err := Load(dir, Options{Backend: cpuBackend(t), Lazy: lazy})
				if c.want == nil {
					if err != nil {
						t.Fatalf("lazy %v: %v", lazy, err)
					}
					m.Close()
					continue
				}
				var ue *hfconfig.UnusedTensorsError
				if !errors.As(err, &ue) {
					t.Fatalf("lazy %v: got %v, want an UnusedTensorsError", lazy, err)
				}
				for _, w := range c.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("lazy %v: %q lacks %q", lazy, err, w)
					}
				}
			}
		})
	}
}
