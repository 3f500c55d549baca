package llamacpp

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/marlin-llm/marlin/internal/assets"
	"github.com/marlin-llm/marlin/model/hfconfig"
	"github.com/marlin-llm/marlin/model/safetensors"
	"github.com/marlin-llm/marlin/tensor"
)

// TestGGUFSourceRoundTrip: an F32 export read back through GGUFSource
// gives every Hugging Face tensor exactly (stacked experts cut apart,
// MLA's kv_b_proj reassembled from attn_k_b and attn_v_b).
func TestGGUFSourceRoundTrip(t *testing.T) {
	for _, model := range []string{"qwen3-nano", "qwen3moe-nano", "glm47-nano"} {
		t.Run(model, func(t *testing.T) {
			dir := assets.Model(t, model)
			out := filepath.Join(t.TempDir(), "f32.gguf")
			if _, err := ExportDir(context.Background(), dir, out, Options{Recipe: "f32"}); err != nil {
				t.Fatal(err)
			}
			cfg, err := hfconfig.Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			src, err := OpenGGUFSource(out, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			ck, err := safetensors.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer ck.Close()
			n := 0
			for _, name := range ck.Names() {
				if cfg.SpareTensor(name) {
					continue
				}
				want, err := ck.Tensor(name)
				if err != nil {
					t.Fatal(err)
				}
				got, err := src.Tensor(name)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				w, _ := tensor.ToFloat32(want)
				g, _ := tensor.ToFloat32(got)
				if len(w) != len(g) || len(want.Shape) != len(got.Shape) {
					t.Fatalf("%s: shape %v, want %v", name, got.Shape, want.Shape)
				}
				for i := range w {
					if w[i] != g[i] {
						t.Fatalf("%s: element %d is %v, want %v", name, i, g[i], w[i])
					}
				}
				n++
			}
			t.Logf("%d tensors identical", n)
		})
	}
}
