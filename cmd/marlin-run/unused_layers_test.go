package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/internal/assets"
	"github.com/marlin-llm/marlin/model/qmodel"
)

// TestModelCommandsRefuseUndeclaredLayers: `ppl` on a model whose
// config.json declares 2 of its 4 layers scored a 2-layer model without a
// word (issue 18); ppl, its --ref, and generate on a packed model now
// fail naming the config file and the unused tensors.
func TestModelCommandsRefuseUndeclaredLayers(t *testing.T) {
	full := assets.Model(t, "qwen3-nano")
	short := assets.ModelWithConfig(t, "qwen3-nano", assets.FewerLayers(2))
	text := assets.Shared(t, "corpus", "calib.txt")
	packed := filepath.Join(t.TempDir(), "packed")
	// the packed copy keeps every tensor and the short config.json
	if err := qmodel.WriteRTN(context.Background(), short, packed, "int4"); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		args   []string
		config string // the config.json the message must name
	}{
		{"ppl", []string{"ppl", "--backend", "cpu", "--windows", "1", "--window", "16", short, text}, short},
		{"ppl --ref", []string{"ppl", "--backend", "cpu", "--windows", "1", "--window", "16", "--ref", short, full, text}, short},
		{"generate", []string{"generate", "--backend", "cpu", "-n", "2", "--prompt", "The", packed}, packed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errs := cli(t, c.args...)
			if code != 1 {
				t.Fatalf("exit %d, want 1; stdout %q stderr %q", code, out, errs)
			}
			for _, w := range []string{filepath.Join(c.config, "config.json") + ": 22 checkpoint tensors are not used",
				"all in layers 2-3, but num_hidden_layers is 2", "model.layers.2."} {
				if !strings.Contains(errs, w) {
					t.Errorf("stderr %q lacks %q", errs, w)
				}
			}
		})
	}
	if code, _, errs := cli(t, "ppl", "--backend", "cpu", "--windows", "1", "--window", "16", full, text); code != 0 {
		t.Errorf("ppl on the model as declared: exit %d: %s", code, errs)
	}
}
