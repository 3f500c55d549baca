package quant

import (
	"context"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/tensor"
)

func randWeights(n int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 1))
	w := make([]float32, n)
	for i := range w {
		w[i] = float32(r.NormFloat64() * 0.02)
	}
	return w
}

// TestRoundTripAllFormats quantizes Gaussian weights in every registered
// format, checks the report against loose per-bit-width expectations, and
// that the tensor conversion round-trips to the same dequantized values.
func TestRoundTripAllFormats(t *testing.T) {
	const rows, cols = 8, 256
	w := randWeights(rows*cols, 1)
	// Loose floors for N(0, 0.02²) weights: far below what a correct
	// quantizer reaches, far above what a broken one does.
	minCos := map[int]float64{2: 0.70, 3: 0.95, 4: 0.99, 8: 0.998, 16: 0.99999}
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			f, err := Lookup(name)
			if err != nil {
				t.Fatal(err)
			}
			p, err := Quantize(w, rows, cols, f, &Options{Name: "w"})
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Validate(); err != nil {
				t.Fatal(err)
			}
			rep, err := Measure("w", w, p)
			if err != nil {
				t.Fatal(err)
			}
			t.Log(rep)
			bits := f.Bits
			if f.Elem == ElemGGML {
				bits = int(f.NominalBitsPerWeight()) // 2 for Q2_K's 2.625
			}
			if rep.Cosine < minCos[bits] {
				t.Errorf("cosine %.5f < %.5f", rep.Cosine, minCos[bits])
			}
			ts := p.ToTensors("model.w", map[string]string{MetaMethod: "rtn"})
			q, err := FromTensors("model.w", ts)
			if err != nil {
				t.Fatal(err)
			}
			a := make([]float32, rows*cols)
			b := make([]float32, rows*cols)
			p.Dequantize(a)
			q.Dequantize(b)
			for i := range a {
				if a[i] != b[i] {
					t.Fatalf("element %d: %v before tensors, %v after", i, a[i], b[i])
				}
			}
		})
	}
}

// TestMXFP4BF16PathMatchesFloat32Path: the BF16 lookup path of
// QuantizeTensor gives the same bytes as the float32 path for BF16 values
// of every magnitude (random bit patterns, subnormals, tiny and huge
// blocks) and a partial last block.
func TestMXFP4BF16PathMatchesFloat32Path(t *testing.T) {
	f, _ := Lookup("mxfp4")
	r := rand.New(rand.NewPCG(11, 12))
	const rows, cols = 64, 32*7 + 5
	data := make([]byte, 2*rows*cols)
	w := make([]float32, rows*cols)
	for i := range w {
		var h uint16
		blockKind := (i/cols*7 + (i%cols)/32) % 4
		switch blockKind {
		case 0: // any finite BF16
			for {
				h = uint16(r.Uint32())
				if h&0x7f80 != 0x7f80 {
					break
				}
			}
		case 1: // subnormals and tiny normals
			h = uint16(r.IntN(0x0400)) | uint16(r.IntN(2))<<15
		case 2: // ordinary weights
			h = EncodeBF16(float32(r.NormFloat64() * 0.02))
		case 3: // exponents around the e >= -124 boundary
			h = uint16(r.IntN(0x0300)+0x0080) | uint16(r.IntN(2))<<15
		}
		data[2*i], data[2*i+1] = byte(h), byte(h>>8)
		w[i] = DecodeBF16(h)
	}
	tt := &tensor.Tensor{Name: "x", DType: tensor.BF16, Shape: []int{rows, cols}, Data: data}
	a, err := QuantizeTensor(context.Background(), tt, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Quantize(w, rows, cols, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(a.Scales) != string(b.Scales) {
		t.Error("scales differ")
	}
	for i := range a.Codes {
		if a.Codes[i] != b.Codes[i] {
			t.Fatalf("code byte %d: BF16 path %#x, float32 path %#x", i, a.Codes[i], b.Codes[i])
		}
	}
	// NaN in a BF16 row: the error names the element.
	data[2*(5*cols+7)+1] = 0x7f
	data[2*(5*cols+7)] = 0xc0
	if _, err := QuantizeTensor(context.Background(), tt, f, nil); err == nil || !strings.Contains(err.Error(), "[5, 7]") {
		t.Errorf("NaN error: %v", err)
	}
}

func TestSummarize(t *testing.T) {
	s := Summarize([]Report{
		{Name: "a", Format: "mxfp4", Rows: 2, Cols: 32, Cosine: 0.99, BitsPerWeight: 4.25},
		{Name: "b", Format: "bf16", Rows: 2, Cols: 96, Cosine: 1, BitsPerWeight: 16},
	})
	// (64·4.25 + 192·16) / 256 = 13.0625
	if s.Tensors != 2 || s.Weights != 256 || s.BitsPerWeight != 13.0625 || s.AvgCosine != 0.995 || s.MinCosineTensor != "a" || s.Formats["bf16"] != 1 {
		t.Errorf("%+v", s)
	}
	if z := Summarize(nil); z.Tensors != 0 || z.MinCosine != 0 {
		t.Errorf("empty: %+v", z)
	}
}

func TestMeasureTensorEqualsMeasure(t *testing.T) {
	w := randWeights(16*64, 4)
	tt, err := tensor.FromFloat32("w", tensor.F32, []int{16, 64}, w)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := Lookup("nf4")
	p, err := QuantizeTensor(context.Background(), tt, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := Measure("w", w, p)
	if err != nil {
		t.Fatal(err)
	}
	b, err := MeasureTensor(tt, p)
	if err != nil {
		t.Fatal(err)
	}
	if a != b || a.Cosine < 0.99 {
		t.Errorf("Measure %+v, MeasureTensor %+v", a, b)
	}
}

// TestFastPathsMatchQuantizeValue: on finite weights the per-format group
// loops (taken when NaN/Inf are rejected) give the same bytes as the
// generic FitGroup + QuantizeValue path (taken in pass-through mode).
func TestFastPathsMatchQuantizeValue(t *testing.T) {
	w := randWeights(8*256, 77)
	w[5] = 0.1 // outliers, and exact-zero group below
	for i := 256; i < 256+64; i++ {
		w[i] = 0
	}
	for _, name := range Names() {
		f, _ := Lookup(name)
		for _, g := range []int{f.GroupSize, 64} {
			if ff, err := f.WithGroupSize(g); err == nil {
				f = ff
			}
			a, err := Quantize(w, 8, 256, f, nil)
			if err != nil {
				t.Fatal(err)
			}
			b, err := Quantize(w, 8, 256, f, &Options{NonFinite: NonFinitePass})
			if err != nil {
				t.Fatal(err)
			}
			if string(a.Codes) != string(b.Codes) || string(a.Scales) != string(b.Scales) || string(a.Zeros) != string(b.Zeros) {
				t.Errorf("%s g%d: fast path bytes differ from QuantizeValue's", name, f.GroupSize)
			}
		}
	}
}

// TestParallelRowsDeterministic: any worker count gives the same bytes,
// and the NaN error names the first bad element in row order.
func TestParallelRowsDeterministic(t *testing.T) {
	const rows, cols = 200, 96
	w := randWeights(rows*cols, 13)
	for _, name := range []string{"mxfp4", "nvfp4", "int4_asym", "nf3"} {
		f, _ := Lookup(name)
		a, err := Quantize(w, rows, cols, f, &Options{Workers: 1})
		if err != nil {
			t.Fatal(err)
		}
		b, err := Quantize(w, rows, cols, f, &Options{Workers: 7})
		if err != nil {
			t.Fatal(err)
		}
		if string(a.Codes) != string(b.Codes) || string(a.Scales) != string(b.Scales) || string(a.Zeros) != string(b.Zeros) || a.TensorScale != b.TensorScale {
			t.Errorf("%s: parallel result differs", name)
		}
	}
	bad := append([]float32(nil), w...)
	bad[150*cols+3] = float32(math.NaN())
	bad[40*cols+9] = float32(math.Inf(1))
	for i := 0; i < 20; i++ {
		_, err := Quantize(bad, rows, cols, mustLookup(t, "mxfp4"), &Options{Name: "x", Workers: 8})
		if err == nil || !strings.Contains(err.Error(), "[40, 9]") {
			t.Fatalf("error %v, want the element at [40, 9]", err)
		}
	}
}

// TestQuantizeTensorKeepsHalfTensors: a finite BF16 (F16) tensor asked for
// in bf16 (f16) comes back sharing its bytes, equal to what the row path
// writes; a NaN still takes the row path and its error.
func TestQuantizeTensorKeepsHalfTensors(t *testing.T) {
	for _, tc := range []struct {
		format string
		dtype  tensor.DType
		enc    func(float32) uint16
		nan    uint16
	}{{"bf16", tensor.BF16, EncodeBF16, 0x7fc0}, {"f16", tensor.F16, EncodeF16, 0x7e00}} {
		f, err := Lookup(tc.format)
		if err != nil {
			t.Fatal(err)
		}
		const rows, cols = 3, 10
		data := make([]byte, 2*rows*cols)
		w := make([]float32, rows*cols)
		for i := range w {
			w[i] = float32(i%7) - 2.5
			binary.LittleEndian.PutUint16(data[2*i:], tc.enc(w[i]))
		}
		ten := &tensor.Tensor{Name: "w", DType: tc.dtype, Shape: []int{rows, cols}, Data: data}
		p, err := QuantizeTensor(context.Background(), ten, f, nil)
		if err != nil {
			t.Fatal(err)
		}
		if &p.Codes[0] != &data[0] || p.Validate() != nil {
			t.Errorf("%s: codes not shared or invalid (%v)", tc.format, p.Validate())
		}
		ref, err := Quantize(w, rows, cols, f, nil)
		if err != nil {
			t.Fatal(err)
		}
		if string(ref.Codes) != string(p.Codes) {
			t.Errorf("%s: shared bytes differ from the row path's", tc.format)
		}
		binary.LittleEndian.PutUint16(data[2*7:], tc.nan)
		if _, err := QuantizeTensor(context.Background(), ten, f, nil); err == nil || !strings.Contains(err.Error(), "non-finite") {
			t.Errorf("%s: NaN weight: %v", tc.format, err)
		}
	}
}
