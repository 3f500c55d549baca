package quant_test

import (
	"fmt"

	"github.com/marlin-llm/marlin/quant"
)

// Round-to-nearest MXFP4 of one block: the scale is 2^(floor(log2 6) − 2)
// = 1, elements round to the E2M1 grid (2.5 ties to 2, 7 saturates to 6).
func ExampleQuantize() {
	f, _ := quant.Lookup("mxfp4")
	w := make([]float32, 32)
	copy(w, []float32{6, -2.5, 0.3, 7})
	p, _ := quant.Quantize(w, 1, 32, f, &quant.Options{Name: "w"})
	d := make([]float32, 32)
	p.Dequantize(d)
	fmt.Println(d[:4], "scale code", p.Scales[0])
	// Output: [6 -2 0.5 6] scale code 127
}

// The GPTQ-style flow: fit a group's scale when its first column is
// reached, quantize element by element, assemble the Packed.
func ExampleFormat_FitGroup() {
	f, _ := quant.Lookup("int4")
	f, _ = f.WithGroupSize(4)
	f, _ = f.WithScale(quant.ScaleF32)
	w := []float32{0.7, -0.3, 0.1, 0.0, 1.4, 0.2, -0.2, 0.7}
	p, _ := quant.NewPacked(f, 1, len(w))
	var gs quant.GroupScale
	for c, x := range w {
		if c%f.GroupSize == 0 {
			gs = f.FitGroup(w[c:c+f.GroupSize], p.TensorScale, nil)
			p.SetGroup(0, c/f.GroupSize, gs)
		}
		code, deq := f.QuantizeValue(x, gs)
		p.SetCode(0, c, code)
		fmt.Printf("%d:%.2f ", code, deq)
	}
	fmt.Println()
	// Output: 15:0.70 5:-0.30 9:0.10 8:0.00 15:1.40 9:0.20 7:-0.20 12:0.80
}
