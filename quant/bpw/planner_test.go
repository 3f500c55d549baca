package bpw

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/internal/assets"
	"github.com/marlin-llm/marlin/model/safetensors"
	"github.com/marlin-llm/marlin/tensor"
)

// TestPlannerTargets plans qwen3moe-nano's trained weights (importance:
// each column's mean square over the rows of the tensor feeding it is not
// at hand here, so every column weighs the same, the plain squared error)
// over a sweep of targets (from just above the fixed q6_k embeddings and
// lm_head, which hold most of the nano model's weights): the average
// reached never exceeds the target,
// a higher target never gives a higher predicted error, stacked experts
// share one format, and the fixed tensors (embeddings, lm_head) keep the
// fixed format.
func TestPlannerTargets(t *testing.T) {
	ck, err := safetensors.Open(assets.Model(t, "qwen3moe-nano"))
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	pl, err := NewPlanner(PlannerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	groupOf := map[string]string{}
	for _, name := range ck.Names() {
		info, _ := ck.Info(name)
		if len(info.Shape) != 2 || strings.HasSuffix(name, "mlp.gate.weight") {
			continue
		}
		tt, err := ck.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		w, err := tensor.ToFloat32(tt)
		if err != nil {
			t.Fatal(err)
		}
		rows, cols := info.Shape[0], info.Shape[1]
		grp := name
		var diag []float64
		if strings.HasPrefix(name, "model.layers.") {
			diag = make([]float64, cols)
			for i := range diag {
				diag[i] = 1
			}
			if i := strings.Index(name, ".experts."); i >= 0 {
				rest := name[i+len(".experts."):]
				grp = name[:i] + ".experts.*" + rest[strings.Index(rest, "."):]
			}
		}
		groupOf[name] = grp
		if err := pl.Add(ctx, name, grp, w, rows, cols, diag); err != nil {
			t.Fatal(err)
		}
	}
	if err := pl.Add(ctx, "model.embed_tokens.weight", "", make([]float32, 4), 2, 2, nil); err == nil {
		t.Error("a tensor added twice was accepted")
	}
	prev := math.Inf(1)
	for target := 3.9; target <= 8.5; target += 0.1 {
		res, err := pl.Allocate(target)
		if err != nil {
			t.Fatalf("target %.2f: %v", target, err)
		}
		if res.BPW > target+1e-9 {
			t.Errorf("target %.2f: average %.4f over the target", target, res.BPW)
		}
		if res.Err > prev*(1+1e-12) {
			t.Errorf("target %.2f: predicted error %.6g above the lower target's %.6g", target, res.Err, prev)
		}
		prev = res.Err
		byGroup := map[string]string{}
		for _, g := range res.Groups {
			byGroup[g.Name] = g.Format
		}
		for n, f := range res.Formats {
			if g := groupOf[n]; byGroup[g] != f {
				t.Errorf("target %.2f: %s is %s, its group %s %s", target, n, f, g, byGroup[g])
			}
			if (n == "model.embed_tokens.weight" || n == "lm_head.weight") && f != "q6_k" {
				t.Errorf("target %.2f: %s is %s, want the fixed q6_k", target, n, f)
			}
		}
		if len(res.Formats) != len(groupOf) || len(res.Groups) >= len(groupOf) {
			t.Errorf("%d formats for %d tensors in %d groups", len(res.Formats), len(groupOf), len(res.Groups))
		}
		t.Logf("target %.2f: %.4f bpw, predicted error %.5g", target, res.BPW, res.Err)
	}
	if _, err := pl.Allocate(3.8); err == nil {
		t.Error("a target below the smallest formats was accepted")
	}
}
