package synth

import (
	"path/filepath"
	"slices"

	"context"
	"github.com/marlin-llm/marlin/internal/assets"
	"testing"

	"github.com/marlin-llm/marlin/model/hfconfig"
	"github.com/marlin-llm/marlin/model/safetensors"
	"github.com/marlin-llm/marlin/tensor"
)

// TestGLMNamesMatchNano checks the generator's names and shape rules against
// the trained glm47-nano checkpoint's own config: same tensor set, same
// shapes.
func TestGLMNamesMatchNano(t *testing.T) {
	dir := t.TempDir()
	cfg := GLM47Flash(32, 3)
	ts, err := GLMTensors(cfg)
	if err != nil {
		t.Fatal(err)
	}
	total, err := Write(context.Background(), dir, cfg, ts, 1, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if want := 2 * ParamCount(ts); total != want {
		t.Fatalf("total bytes %d, want %d", total, want)
	}
	if _, err := hfconfig.Load(dir); err != nil {
		t.Fatalf("generated config.json does not parse: %v", err)
	}
	ck, err := safetensors.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	if len(ck.Files()) < 2 {
		t.Fatalf("expected a sharded checkpoint, got %v", ck.Files())
	}
	if got := len(ck.Names()); got != len(ts) {
		t.Fatalf("%d tensors in checkpoint, generated %d", got, len(ts))
	}
	for _, want := range ts {
		tt, err := ck.Tensor(want.Name)
		if err != nil {
			t.Fatal(err)
		}
		if tt.DType != tensor.BF16 || len(tt.Shape) != len(want.Shape) {
			t.Fatalf("%s: %s%v", want.Name, tt.DType, tt.Shape)
		}
		if string(tt.Data) != string(Values(want, 1)) {
			t.Fatalf("%s: values differ from the generator", want.Name)
		}
	}
}

// TestTensorsMatchTrainedCheckpoint derives each architecture's tensor
// list from a trained nano's config.json and compares names and shapes with
// the checkpoint's tensors.json (written by transformers).
func TestTensorsMatchTrainedCheckpoint(t *testing.T) {
	for _, tc := range []struct {
		model   string
		tensors func(map[string]any) ([]Tensor, error)
	}{
		{"glm47-nano", GLMTensors},
		{"nemotronh-nano", NemotronHTensors},
	} {
		t.Run(tc.model, func(t *testing.T) {
			dir := assets.Model(t, tc.model)
			var cfg map[string]any
			assets.ReadJSON(t, filepath.Join(dir, "config.json"), &cfg)
			var ref map[string]struct {
				Shape []int `json:"shape"`
			}
			assets.ReadJSON(t, filepath.Join(dir, "tensors.json"), &ref)
			ts, err := tc.tensors(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if len(ts) != len(ref) {
				t.Errorf("generated %d tensors, checkpoint has %d", len(ts), len(ref))
			}
			for _, g := range ts {
				r, ok := ref[g.Name]
				if !ok {
					t.Errorf("generated %s, not in the checkpoint", g.Name)
					continue
				}
				if !slices.Equal(r.Shape, g.Shape) {
					t.Errorf("%s: shape %v, checkpoint %v", g.Name, g.Shape, r.Shape)
				}
			}
		})
	}
}
