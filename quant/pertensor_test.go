package quant

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/tensor"
)

// TestPerTensorFP8 checks the per-tensor FP8 formats against their
// definition: one scale s = fl(amax(W)/max) for the whole tensor (E4M3
// max 448, E5M2 57344), stored in every row, each element RNE of w/s; the
// per-channel format of the same weights gives rows their own scales.
func TestPerTensorFP8(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	const rows, cols = 6, 40
	w := make([]float32, rows*cols)
	for i := range w {
		w[i] = float32(r.NormFloat64()) * float32(1+i/cols) // rows of growing magnitude
	}
	var amax float32
	for _, x := range w {
		amax = max(amax, abs32(x))
	}
	for _, tc := range []struct {
		name, channel string
		max           float32
	}{{"fp8_e4m3_tensor", "fp8_e4m3", E4M3Max}, {"fp8_e5m2_tensor", "fp8_e5m2", E5M2Max}} {
		f, err := Lookup(tc.name)
		if err != nil {
			t.Fatal(err)
		}
		if !f.PerTensor || f.GroupSize != 0 {
			t.Fatalf("%s: %+v", tc.name, f)
		}
		p, err := Quantize(w, rows, cols, f, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := amax / tc.max
		for row := 0; row < rows; row++ {
			if gs := p.Group(row, 0); gs.Mul != want {
				t.Errorf("%s row %d: scale %v, want amax/max = %v", tc.name, row, gs.Mul, want)
			}
		}
		deq := make([]float32, rows*cols)
		p.Dequantize(deq)
		for i, x := range w {
			code, _ := f.QuantizeValue(x, GroupScale{Code: math.Float32bits(want), Mul: want})
			if v := f.ElemValue(code, 0) * want; deq[i] != v {
				t.Fatalf("%s w[%d] = %v: dequantized %v, want %v", tc.name, i, x, deq[i], v)
			}
		}
		// The BF16 tensor path quantizes the same way.
		bf := make([]byte, 2*len(w))
		for i, x := range w {
			b := EncodeBF16(x)
			bf[2*i], bf[2*i+1] = byte(b), byte(b>>8)
		}
		wb := make([]float32, len(w))
		for i := range wb {
			wb[i] = DecodeBF16(uint16(bf[2*i]) | uint16(bf[2*i+1])<<8)
		}
		pt, err := QuantizeTensor(context.Background(), &tensor.Tensor{Name: "w", DType: tensor.BF16, Shape: []int{rows, cols}, Data: bf}, f, nil)
		if err != nil {
			t.Fatal(err)
		}
		pw, err := Quantize(wb, rows, cols, f, nil)
		if err != nil {
			t.Fatal(err)
		}
		if string(pt.Codes) != string(pw.Codes) || string(pt.Scales) != string(pw.Scales) {
			t.Errorf("%s: QuantizeTensor differs from Quantize of the same values", tc.name)
		}
		// Per channel: the first (smallest) row gets a finer scale.
		fc, _ := Lookup(tc.channel)
		pc, err := Quantize(w, rows, cols, fc, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !(pc.Group(0, 0).Mul < p.Group(0, 0).Mul) {
			t.Errorf("%s: per-channel row 0 scale %v not below the tensor's %v", tc.name, pc.Group(0, 0).Mul, p.Group(0, 0).Mul)
		}
		// Rows that disagree are refused.
		bad := *p
		bad.Scales = append([]byte(nil), p.Scales...)
		bad.Scales[4*3] ^= 1
		if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "row 3") {
			t.Errorf("%s: differing row scale: %v", tc.name, err)
		}
		if _, err := f.WithGroupSize(16); err == nil {
			t.Errorf("%s: group size 16 accepted", tc.name)
		}
	}
}
