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
	mk := func(n int) *gptq.Hessian { return randomHessian(t, rng, cols, n, gptq.F64) }
	const block = "model.layers.1.mlp"
	names := []string{block + ".experts.0.gate_proj", block + ".experts.1.gate_proj"}
	colsOf := map[string]int{names[0]: cols, names[1]: cols}
	for _, all := range []bool{false, true} {
		own, few, pool := mk(10), mk(2), mk(40)
		hess := map[string]*gptq.Hessian{names[0]: own, names[1]: few, block + ".gate": pool}
		// ExpertPolicy mixes the Hessians in place: keep what they were.
		before := [][]float64{own.Matrix(), few.Matrix()}
		samples := []int64{own.Samples(), few.Samples()}
		cov, err := ExpertPolicy(hess, names, colsOf, gptq.F64, all)
		if err != nil {
			t.Fatal(err)
		}
		for i := range before {
			n := float64(samples[i])
			m := math.Max(n, cols) // the default mixes up to the input width
			if all {
				m = n + cols
			}
			want := make([]float64, cols*cols)
			hm, pm := before[i], pool.Matrix()
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
			if cov[i].Tokens != samples[i] {
				t.Errorf("all=%v %s: %d tokens recorded, want %d", all, names[i], cov[i].Tokens, samples[i])
			}
		}
	}
}

// TestExpertPolicySharedGateUp: an expert's gate_proj and up_proj share one
// Hessian; mixed once (in place), both get the mixed Hessian and both
// records keep the expert's own token count.
func TestExpertPolicySharedGateUp(t *testing.T) {
	const cols = 4
	rng := rand.New(rand.NewPCG(7, 1))
	mk := func(n int) *gptq.Hessian { return randomHessian(t, rng, cols, n, gptq.F32) }
	const block = "model.layers.1.mlp"
	gate, up := block+".experts.0.gate_proj", block+".experts.0.up_proj"
	shared, pool := mk(2), mk(40)
	hess := map[string]*gptq.Hessian{gate: shared, up: shared, block + ".gate": pool}
	cov, err := ExpertPolicy(hess, []string{gate, up}, map[string]int{gate: cols, up: cols}, gptq.F32, false)
	if err != nil {
		t.Fatal(err)
	}
	if hess[gate] != hess[up] {
		t.Error("gate_proj and up_proj no longer share one Hessian")
	}
	if got := hess[gate].Samples(); got != cols {
		t.Errorf("mixed Hessian counts %d samples, want %d (mixed once, up to the input width)", got, cols)
	}
	for _, c := range cov {
		if c.Tokens != 2 || c.Policy != "shrunk" {
			t.Errorf("%s: %d tokens, policy %s; want 2, shrunk", c.Name, c.Tokens, c.Policy)
		}
	}
}

// randomHessian accumulates n rows of normal inputs of width cols.
func randomHessian(t *testing.T, rng *rand.Rand, cols, n int, prec gptq.Precision) *gptq.Hessian {
	t.Helper()
	h, err := gptq.NewHessian(cols, prec)
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
