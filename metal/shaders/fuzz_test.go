//go:build linux && cgo

package shaders

import (
	"math"
	"testing"

	"github.com/marlin-llm/marlin/metal/launch"
	"github.com/marlin-llm/marlin/quant"
)

// FuzzDequantMatchesQuant is a differential fuzzer: the fuzz input picks a
// quantized format, a small shape, a group size and the bytes of codes,
// scales, zero points, g_idx and tensor scale; whatever quant accepts
// (Validate), the emulated dequant kernel must reproduce bit for bit, and
// whatever launch.FromPacked rejects must be rejected by Validate too.
func FuzzDequantMatchesQuant(f *testing.F) {
	f.Add(uint8(0), uint8(3), uint8(37), uint8(16), false, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add(uint8(5), uint8(1), uint8(64), uint8(0), true, []byte{0xff, 0x7f, 0x80, 0x00})
	f.Add(uint8(11), uint8(2), uint8(9), uint8(8), true, []byte("zero points and g_idx"))
	names := quant.Names()
	f.Fuzz(func(t *testing.T, fi, rows, cols, group uint8, gidx bool, data []byte) {
		var quantized []string
		for _, n := range names {
			if q, _ := quant.Lookup(n); q.Quantized() {
				quantized = append(quantized, n)
			}
		}
		format, _ := quant.Lookup(quantized[int(fi)%len(quantized)])
		if g, err := format.WithGroupSize(int(group % 70)); err == nil {
			format = g
		}
		r, c := 1+int(rows%5), 1+int(cols%80)
		pk, err := quant.NewPacked(format, r, c)
		if err != nil {
			t.Skip()
		}
		next := func(i int) byte {
			if len(data) == 0 {
				return 0
			}
			return data[i%len(data)]
		}
		k := 0
		for i := range pk.Codes {
			pk.Codes[i] = next(k)
			k++
		}
		for i := range pk.Scales {
			pk.Scales[i] = next(k)
			k++
		}
		for i := range pk.Zeros {
			pk.Zeros[i] = next(k) % uint8(1<<format.Bits)
			k++
		}
		if format.TensorScale {
			pk.TensorScale = math.Float32frombits(uint32(next(k)) | uint32(next(k+1))<<8 | uint32(next(k+2))<<16 | uint32(next(k+3))<<24)
			k += 4
		}
		if gidx {
			pk.GIdx = make([]int32, c)
			for i := range pk.GIdx {
				pk.GIdx[i] = int32(next(k)) % int32(pk.Groups()+1) // sometimes out of range
				k++
			}
		}
		p, w, err := launch.FromPacked(pk)
		if verr := pk.Validate(); (err == nil) != (verr == nil) {
			t.Fatalf("FromPacked error %v, Validate error %v", err, verr)
		}
		if err != nil {
			return
		}
		got, err := EmuDequant(p, w, Forward)
		if err != nil {
			t.Fatal(err)
		}
		want := make([]float32, r*c)
		pk.Dequantize(want)
		for i := range want {
			if !sameBits(got[i], want[i]) {
				t.Fatalf("%s %dx%d: element %d: kernel %v (%#x), quant %v (%#x)", format, r, c, i,
					got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
			}
		}
	})
}
