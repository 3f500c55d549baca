package arch

import (
	"slices"
	"testing"

	"github.com/marlin-llm/marlin/tensor"
)

// TestLazyDTypes: a Lazy linear over each float storage type computes what
// a Dense one over the same values converted to F32 does (the layer tasks
// read their weights in place in whatever type upstream stored them).
func TestLazyDTypes(t *testing.T) {
	const out, in, rows = 3, 5, 2
	vals := make([]float32, out*in)
	for i := range vals {
		vals[i] = float32(i%7-3) * 0.25
	}
	x := make([]float32, rows*in)
	for i := range x {
		x[i] = float32(i%5) - 2
	}
	b := cpuBackend(t)
	for _, dt := range []tensor.DType{tensor.BF16, tensor.F16, tensor.F32, tensor.F64, tensor.F8E4M3, tensor.F8E5M2} {
		t.Run(dt.String(), func(t *testing.T) {
			st, err := tensor.FromFloat32("w", dt, []int{out, in}, vals)
			if err != nil {
				t.Fatal(err)
			}
			lz, err := NewLazy(st)
			if err != nil {
				t.Fatal(err)
			}
			w, err := tensor.ToFloat32(st)
			if err != nil {
				t.Fatal(err)
			}
			d, err := NewDense(out, in, w, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, want := make([]float32, rows*out), make([]float32, rows*out)
			if err := lz.Forward(b, x, rows, got); err != nil {
				t.Fatal(err)
			}
			if err := d.Forward(b, x, rows, want); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Errorf("lazy %v, dense %v", got, want)
			}
		})
	}
	if _, err := NewLazy(&tensor.Tensor{Name: "w", DType: tensor.I32, Shape: []int{1, 1}, Data: make([]byte, 4)}); err == nil {
		t.Error("an integer weight accepted")
	}
}
