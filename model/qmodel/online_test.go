package qmodel

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/marlin-llm/marlin/kernels"
	"github.com/marlin-llm/marlin/model/arch"
	"github.com/marlin-llm/marlin/quant/hadamard"
)

// TestOnlineRotated: a Linear stored as W·Rᵀ (MR-GPTQ's basis) wrapped in
// onlineRotated computes x·Wᵀ, the original weight's product.
func TestOnlineRotated(t *testing.T) {
	const out, in, rows = 48, 64, 5
	rng := rand.New(rand.NewPCG(1, 2))
	w := make([]float32, out*in)
	for i := range w {
		w[i] = float32(rng.NormFloat64())
	}
	x := make([]float32, rows*in)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	r, err := hadamard.New(in, 32, 7)
	if err != nil {
		t.Fatal(err)
	}
	wr := append([]float32(nil), w...)
	if err := r.Apply(wr, out); err != nil { // W → W·Rᵀ
		t.Fatal(err)
	}
	b := kernels.NewCPU(kernels.Options{})
	ref, _ := arch.NewDense(out, in, w, nil)
	rot, _ := arch.NewDense(out, in, wr, nil)
	want := make([]float32, rows*out)
	got := make([]float32, rows*out)
	raw := make([]float32, rows*out)
	xc := append([]float32(nil), x...)
	if err := ref.Forward(b, x, rows, want); err != nil {
		t.Fatal(err)
	}
	if err := (&onlineRotated{Linear: rot, r: r}).Forward(b, x, rows, got); err != nil {
		t.Fatal(err)
	}
	if err := rot.Forward(b, x, rows, raw); err != nil {
		t.Fatal(err)
	}
	var maxd, rawd float64
	for i := range want {
		maxd = math.Max(maxd, math.Abs(float64(got[i]-want[i])))
		rawd = math.Max(rawd, math.Abs(float64(raw[i]-want[i])))
	}
	if maxd > 1e-3 {
		t.Errorf("online-rotated output differs from x·Wᵀ by %g", maxd)
	}
	if rawd < 0.1 {
		t.Errorf("test premise: without the rotation the output should differ (max %g)", rawd)
	}
	for i := range x {
		if x[i] != xc[i] {
			t.Fatal("Forward modified its input")
		}
	}
}
