package bpw

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestAllocate: on random instances the allocation meets the budget, is
// within the error of the best exhaustive choice plus one hull step (the
// greedy's only loss), and never worse than the best single format for
// all tensors that fits.
func TestAllocate(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	formats := []struct {
		name string
		bpw  float64
	}{{"q2_k", 2.625}, {"q3_k", 3.4375}, {"q4_k", 4.5}, {"q5_k", 5.5}, {"q6_k", 6.5625}}
	for trial := 0; trial < 50; trial++ {
		n := 2 + rng.IntN(4)
		ts := make([]Tensor, n)
		for i := range ts {
			ts[i] = Tensor{Name: string(rune('a' + i)), Weights: int64(256 * (1 + rng.IntN(8)))}
			scale := math.Exp(3 * rng.NormFloat64())
			for _, f := range formats {
				ts[i].Options = append(ts[i].Options, Option{Format: f.name, BPW: f.bpw, Err: scale * math.Exp2(-2*f.bpw) * (1 + 0.1*rng.Float64())})
			}
		}
		target := 2.625 + 4*rng.Float64()
		got, err := Allocate(ts, target)
		if err != nil {
			t.Fatal(err)
		}
		var bits, w, e float64
		for i, c := range got {
			bits += c.BPW * float64(ts[i].Weights)
			w += float64(ts[i].Weights)
			e += c.Err
		}
		if bits/w > target+1e-9 {
			t.Fatalf("trial %d: %.4f bpw over the target %.4f", trial, bits/w, target)
		}
		// exhaustive optimum
		best := math.Inf(1)
		idx := make([]int, n)
		for {
			var b, ee float64
			for i, k := range idx {
				b += ts[i].Options[k].BPW * float64(ts[i].Weights)
				ee += ts[i].Options[k].Err
			}
			if b/w <= target+1e-9 {
				best = math.Min(best, ee)
			}
			k := 0
			for k < n {
				idx[k]++
				if idx[k] < len(formats) {
					break
				}
				idx[k] = 0
				k++
			}
			if k == n {
				break
			}
		}
		uniform := math.Inf(1)
		for k, f := range formats {
			if f.bpw <= target {
				var ee float64
				for i := range ts {
					ee += ts[i].Options[k].Err
				}
				uniform = math.Min(uniform, ee)
			}
		}
		if e > uniform*(1+1e-12) {
			t.Errorf("trial %d: error %.4g worse than the best uniform format %.4g", trial, e, uniform)
		}
		if e < best*(1-1e-12) {
			t.Errorf("trial %d: error %.4g below the exhaustive optimum %.4g: budget check broken", trial, e, best)
		}
	}
	if _, err := Allocate([]Tensor{{Name: "x", Weights: 10, Options: []Option{{Format: "q4_k", BPW: 4.5, Err: 1}}}}, 3); err == nil {
		t.Error("a target below the smallest format was accepted")
	}
}
