package arch

import (
	"context"
	"math"
	"slices"
	"testing"
)

func sigm(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// TestSigmoidRouterGroups checks noaux_tc routing by hand: groups ranked
// by the sum of their two best biased scores, top-k inside the kept group,
// weights from the unbiased scores, renormalised and scaled.
func TestSigmoidRouterGroups(t *testing.T) {
	rc := &run{ctx: context.Background(), b: cpuBackend(t)}
	logits := []float32{0, 0, 2, -5}
	cases := []struct {
		name    string
		bias    []float32
		norm    bool
		experts []int32
		weights []float64
	}{
		// Group 0 (experts 0,1) sums 0.5+0.5 = 1 > group 1's 0.881+0.007:
		// expert 2, the best single score, is excluded with its group.
		{"group wins over best expert", nil, true, []int32{0, 1}, []float64{0.5 * 2, 0.5 * 2}},
		// The bias lifts group 1 (0.881+0.007+0.5 > 1) but the weights stay unbiased.
		{"bias picks, unbiased weights", []float32{0, 0, 0, 0.5}, true, []int32{2, 3},
			[]float64{2 * sigm(2) / (sigm(2) + sigm(-5)), 2 * sigm(-5) / (sigm(2) + sigm(-5))}},
		{"no renormalisation", []float32{0, 0, 0, 0.5}, false, []int32{2, 3}, []float64{2 * sigm(2), 2 * sigm(-5)}},
	}
	for _, c := range cases {
		r := &sigmoidRouter{experts: 4, k: 2, nGroup: 2, topKGroup: 1, norm: c.norm, scale: 2, bias: c.bias}
		idx, w, err := r.route(rc, slices.Clone(logits), 1)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(idx, c.experts) {
			t.Errorf("%s: experts %v, want %v", c.name, idx, c.experts)
			continue
		}
		for i := range w {
			if math.Abs(float64(w[i])-c.weights[i]) > 1e-6 {
				t.Errorf("%s: weights %v, want %v", c.name, w, c.weights)
				break
			}
		}
	}
}

// TestSoftmaxRouter checks Qwen3-MoE routing: softmax over all experts,
// top-k, renormalised.
func TestSoftmaxRouter(t *testing.T) {
	rc := &run{ctx: context.Background(), b: cpuBackend(t)}
	logits := []float32{1, 3, 2, 0}
	e := []float64{math.E, math.Exp(3), math.Exp(2), 1}
	sum := e[0] + e[1] + e[2] + e[3]
	for _, norm := range []bool{false, true} {
		r := &softmaxRouter{experts: 4, k: 2, norm: norm}
		idx, w, err := r.route(rc, slices.Clone(logits), 1)
		if err != nil {
			t.Fatal(err)
		}
		want := []float64{e[1] / sum, e[2] / sum}
		if norm {
			want = []float64{e[1] / (e[1] + e[2]), e[2] / (e[1] + e[2])}
		}
		if !slices.Equal(idx, []int32{1, 2}) || math.Abs(float64(w[0])-want[0]) > 1e-6 || math.Abs(float64(w[1])-want[1]) > 1e-6 {
			t.Errorf("norm=%v: experts %v weights %v, want [1 2] %v", norm, idx, w, want)
		}
	}
}
