package kernels

import (
	"math"
	"testing"

	"github.com/marlin-llm/marlin/quant"
)

// FuzzDequantGEMM feeds arbitrary packed payloads (any registered format,
// small shapes, random codes/scales/zeros/g_idx, truncated buffers) to
// DequantGEMM: it must return an error exactly when the tensor is invalid,
// otherwise the row sums of quant.Packed.Dequantize, and never panic.
func FuzzDequantGEMM(f *testing.F) {
	f.Add(uint8(1), uint8(3), uint8(40), uint8(0), []byte{1, 2, 3, 4, 5})
	f.Add(uint8(5), uint8(1), uint8(1), uint8(1), []byte{0xff, 0x7f, 0x80})
	f.Add(uint8(12), uint8(2), uint8(33), uint8(2), []byte{})
	names := quant.Names()
	be := NewCPU(Options{Threads: 2})
	f.Fuzz(func(t *testing.T, fi, rows, cols, flags uint8, data []byte) {
		fm, err := quant.Lookup(names[int(fi)%len(names)])
		if err != nil {
			t.Fatal(err)
		}
		r, c := int(rows%9)+1, int(cols%70)+1
		p, err := quant.NewPacked(fm, r, c)
		if err != nil {
			return
		}
		k := 0
		next := func() byte {
			if len(data) == 0 {
				return 0
			}
			b := data[k%len(data)]
			k++
			return b
		}
		for i := range p.Codes {
			p.Codes[i] = next()
		}
		for i := range p.Scales {
			p.Scales[i] = next()
		}
		for i := range p.Zeros {
			p.Zeros[i] = next()
		}
		if flags&1 != 0 && p.Groups() > 0 {
			p.GIdx = make([]int32, c)
			for i := range p.GIdx {
				p.GIdx[i] = int32(next()) - 8 // may be out of range: must be an error
			}
		}
		if flags&2 != 0 {
			p.Codes = p.Codes[:len(p.Codes)/2] // truncated: must be an error
		}
		if fm.TensorScale {
			p.TensorScale = float32(next()) / 64
		}
		x := make([]float32, c)
		for i := range x {
			x[i] = 1
		}
		y := make([]float32, r)
		if err := be.DequantGEMM(1, x, c, p, 0, y, r); err != nil {
			if p.Validate() == nil {
				t.Fatalf("valid packed tensor rejected: %v", err)
			}
			return
		}
		w := make([]float32, r*c)
		p.Dequantize(w)
		for i := 0; i < r; i++ {
			var want float64
			var mag float64
			for j := 0; j < c; j++ {
				want += float64(w[i*c+j])
				mag += math.Abs(float64(w[i*c+j]))
			}
			got := float64(y[i])
			if math.IsNaN(want) || mag > math.MaxFloat32/4 {
				continue // NaN weights, or partial sums may overflow float32
			}
			if math.Abs(got-want) > 2*float64(c+2)*u32*mag {
				t.Fatalf("%v %dx%d row %d: got %v want %v", fm, r, c, i, got, want)
			}
		}
	})
}
