package llamacpp

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/internal/assets"
	"github.com/marlin-llm/marlin/model/hfconfig"
)

// TestExportRefusesUndeclaredLayers: a GGUF written from a config.json
// that declares fewer layers than the checkpoint holds would be another,
// shorter model (issue 18): the export fails naming the tensors, and
// writes nothing; declared next-n (MTP) layers are left out as llama.cpp's
// converter does.
func TestExportRefusesUndeclaredLayers(t *testing.T) {
	cases := []struct {
		name     string
		model    string
		edit     func(map[string]any)
		want     []string // substrings of the error; nil: exported
		wantBlks int      // blocks in the exported file
	}{
		{"qwen3 as declared", "qwen3-nano", func(map[string]any) {}, nil, 4},
		{"qwen3 2 of 4 layers", "qwen3-nano", assets.FewerLayers(2),
			[]string{"config.json: 22 checkpoint tensors are not used", "all in layers 2-3, but num_hidden_layers is 2", "model.layers.2.input_layernorm.weight"}, 0},
		{"qwen3moe 3 of 4 layers", "qwen3moe-nano", assets.FewerLayers(3),
			[]string{"layer 3, but num_hidden_layers is 3", "model.layers.3.mlp.experts.0.down_proj.weight"}, 0},
		{"glm 3 layers + 1 next-n layer", "glm47-nano", func(c map[string]any) {
			assets.FewerLayers(3)(c)
			c["num_nextn_predict_layers"] = 1
		}, nil, 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := assets.ModelWithConfig(t, c.model, c.edit)
			out := filepath.Join(t.TempDir(), "m.gguf")
			p, err := ExportDir(context.Background(), dir, out, Options{Recipe: "f16"})
			if c.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				blocks := map[int]bool{}
				for _, tt := range p.Tensors {
					if tt.Layer >= 0 {
						blocks[tt.Layer] = true
					}
				}
				if len(blocks) != c.wantBlks {
					t.Errorf("%d blocks exported, want %d", len(blocks), c.wantBlks)
				}
				return
			}
			var ue *hfconfig.UnusedTensorsError
			if !errors.As(err, &ue) {
				t.Fatalf("got %v, want an UnusedTensorsError", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q lacks %q", err, w)
				}
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("a refused export wrote %s", out)
			}
		})
	}
}
