package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/marlin-llm/marlin/model/safetensors"
	"github.com/marlin-llm/marlin/pipeline"
	"github.com/marlin-llm/marlin/tensor"
)

// TestCustomStageJob runs job.yaml and checks, in the packed pruned model,
// that exactly 25% of every MLP row is zero while attention is untouched,
// that the GGUF exists, and that a second run skips every task.
func TestCustomStageJob(t *testing.T) {
	wd := t.TempDir()
	opts := pipeline.LoadOptions{Workdir: wd}
	out, st, err := run(context.Background(), "job.yaml", opts, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, "qwen3-nano-pruned-mxfp4.gguf")); err != nil {
		t.Error(err)
	}
	ck, err := safetensors.Open(filepath.Join(out, "qwen3-nano-pruned"))
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	for name, wantFrac := range map[string]float64{
		"model.layers.0.mlp.up_proj.weight":      0.25,
		"model.layers.1.mlp.down_proj.weight":    0.25,
		"model.layers.0.self_attn.q_proj.weight": 0,
	} {
		tt, err := ck.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		v, err := tensor.ToFloat32(tt)
		if err != nil {
			t.Fatal(err)
		}
		cols := tt.Shape[1]
		for r := 0; r < tt.Shape[0]; r++ {
			zeros := 0
			for _, x := range v[r*cols : (r+1)*cols] {
				if x == 0 {
					zeros++
				}
			}
			if got := float64(zeros) / float64(cols); got < wantFrac-1e-9 || (wantFrac > 0 && got > wantFrac+0.02) {
				t.Fatalf("%s row %d: %d of %d zero, want %.0f%%", name, r, zeros, cols, 100*wantFrac)
			}
		}
	}
	if _, st2, err := run(context.Background(), "job.yaml", opts, io.Discard); err != nil || st2.Executed != 0 || st2.Skipped != st.Executed {
		t.Errorf("second run: %+v (first %+v) %v", st2, st, err)
	}
}
