package calib

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/marlin-llm/marlin/quant/gptq"
)

// TestExpertPolicyShrinkAll: by default an expert with at least its input
// width of tokens keeps its own Hessian and one with fewer is mixed up to
// that width; with shrinkAll every expert's Hessian is (n·h + w·pool)/(n+w),
// the pool (the router's input for gate/up) counting as w tokens, and the
// records say "shrunk".
func TestExpertPolicyShrinkAll(t *testing.T) {
	const cols = 4
	rng := rand.New(rand.NewPCG(5, 6))
	mk := func(n int) *gptq.Hessian {
		h, err := gptq.NewHessian(cols, gptq.F64)
		if err != nil {
			t.Fatal(err)
		}
		x := make([]float32, n*cols)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		if err := h.Add(x, n); err != nil {
			t.Fatal(err)
		}
		return h
	}
	const block = "model.layers.1.mlp"
	names := []string{block + ".experts.0.gate_proj", block + ".experts.1.gate_proj"}
	colsOf := map[string]int{names[0]: cols, names[1]: cols}
	for _, all := range []bool{false, true} {
		own, few, pool := mk(10), mk(2), mk(40)
		hess := map[string]*gptq.Hessian{names[0]: own, names[1]: few, block + ".gate": pool}
		cov, err := ExpertPolicy(hess, names, colsOf, gptq.F64, all)
		if err != nil {
			t.Fatal(err)
		}
		for i, h := range []*gptq.Hessian{own, few} {
			n := float64(h.Samples())
			m := math.Max(n, cols) // the default mixes up to the input width
			if all {
				m = n + cols
			}
			want := make([]float64, cols*cols)
			hm, pm := h.Matrix(), pool.Matrix()
			for k := range want {
				want[k] = (n*hm[k] + (m-n)*pm[k]) / m
			}
			if !all && n >= cols {
				want = hm
			}
			got := hess[names[i]].Matrix()
			for k := range want {
				if math.Abs(got[k]-want[k]) > 1e-9*(1+math.Abs(want[k])) {
					t.Fatalf("all=%v %s: H[%d] %v, want %v", all, names[i], k, got[k], want[k])
				}
			}
			wantPolicy := "shrunk"
			if !all && n >= cols {
				wantPolicy = "own"
			}
			if cov[i].Policy != wantPolicy {
				t.Errorf("all=%v %s: policy %s, want %s", all, names[i], cov[i].Policy, wantPolicy)
			}
		}
	}
}
