package quant

import (
	"encoding/binary"
	"math"
	"slices"
	"strconv"
	"testing"

	"github.com/marlin-llm/marlin/tensor"
)

// FuzzFromTensors feeds FromTensors corrupt metadata and buffers: it must
// return an error or a Packed that validates and dequantizes without
// panicking.
func FuzzFromTensors(f *testing.F) {
	w := randWeights(4*64, 3)
	for _, name := range []string{"mxfp4", "nvfp4", "int3_asym", "nf4", "bf16", "fp8_e5m2"} {
		fm, _ := Lookup(name)
		p, err := Quantize(w, 4, 64, fm, nil)
		if err != nil {
			f.Fatal(err)
		}
		ts := p.ToTensors("w", nil)
		var scales []byte
		if len(ts) > 1 {
			scales = ts[1].Data
		}
		f.Add(name, "64", "4", "32", ts[0].Meta[MetaScale], ts[0].Data, scales, "0.5", []byte{1, 0, 0, 0})
	}
	f.Add("int4", "-1", "99999999999", "7", "f32", []byte{}, []byte{1}, "nan", []byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, format, cols, rows, gs, scale string, codes, scales []byte, ts string, gidx []byte) {
		meta := map[string]string{MetaFormat: format, MetaCols: cols, MetaRows: rows, MetaGroupSize: gs, MetaScale: scale, MetaTensorScale: ts, MetaRole: "codes"}
		r, _ := strconv.Atoi(rows)
		bytesPerRow := 0
		if r > 0 && r < 1<<20 {
			bytesPerRow = len(codes) / r
		}
		main := &tensor.Tensor{Name: "w", DType: tensor.U8, Shape: []int{r, bytesPerRow}, Data: codes, Meta: meta}
		list := []*tensor.Tensor{main,
			{Name: "w" + SuffixScales, DType: tensor.U8, Shape: []int{len(scales)}, Data: scales, Meta: meta},
			{Name: "w" + SuffixZeros, DType: tensor.U8, Shape: []int{len(scales)}, Data: scales, Meta: meta},
			{Name: "w" + SuffixGIdx, DType: tensor.I32, Shape: []int{len(gidx) / 4}, Data: gidx[:len(gidx)/4*4], Meta: meta},
		}
		p, err := FromTensors("w", list)
		if err != nil {
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("FromTensors returned an invalid Packed: %v", err)
		}
		if p.Rows*p.Cols > 1<<16 {
			return
		}
		dst := make([]float32, p.Rows*p.Cols)
		p.Dequantize(dst)
	})
}

// FuzzQuantizeValues: any float32 inputs (NaN/Inf passed through) quantize
// without panics in every format, and finite inputs dequantize to finite
// values within the format's range.
func FuzzQuantizeValues(f *testing.F) {
	f.Add([]byte{0, 0, 0x80, 0x7f, 0, 0, 0xc0, 0x7f, 1, 0, 0, 0, 0xff, 0xff, 0x7f, 0x7f})
	f.Fuzz(func(t *testing.T, raw []byte) {
		n := len(raw) / 4
		if n == 0 || n > 4096 {
			return
		}
		w := make([]float32, n)
		finite := true
		for i := range w {
			w[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
			finite = finite && w[i]-w[i] == 0
		}
		for _, name := range Names() {
			fm, _ := Lookup(name)
			if fm.Elem == ElemGGML && n%fm.GroupSize != 0 {
				continue // rows must fill whole blocks
			}
			p, err := Quantize(w, 1, n, fm, &Options{NonFinite: NonFinitePass, ScaleSearch: n < 64})
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			d := make([]float32, n)
			p.Dequantize(d)
			if !finite || name == "f16" || name == "bf16" {
				continue
			}
			for i, v := range d {
				if v-v != 0 {
					t.Fatalf("%s: finite input %v dequantized to %v", name, w[i], v)
				}
			}
		}
	})
}

// TestFromTensorsWrappingShape: 2^50 rows of 2^18 NVFP4 columns make
// rows×cols, the codes size and the scale count all wrap int64 to 0, so
// empty tensors used to pass every size check and DequantizeRow then
// indexed past the codes. FromTensors must refuse the shape.
func TestFromTensorsWrappingShape(t *testing.T) {
	meta := map[string]string{MetaFormat: "nvfp4", MetaCols: "262144", MetaRows: "1125899906842624",
		MetaGroupSize: "16", MetaScale: "e4m3", MetaTensorScale: "1", MetaRole: "codes"}
	ts := []*tensor.Tensor{
		{Name: "w", DType: tensor.U8, Shape: []int{1 << 50, 0}, Meta: meta},
		{Name: "w" + SuffixScales, DType: tensor.U8, Shape: []int{0}, Meta: meta},
	}
	if p, err := FromTensors("w", ts); err == nil {
		t.Fatalf("FromTensors accepted a %d×%d weight with empty codes", p.Rows, p.Cols)
	}
	if _, err := NewPacked(mustLookup(t, "nvfp4"), 1<<50, 1<<18); err == nil {
		t.Error("NewPacked accepted a 2^50×2^18 shape")
	}
}

// TestShapeRoundTrip pins the one Meta shape format (quant.shape and the
// stages' task shape): FormatShape's output parses back to the shape.
func TestShapeRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		shape []int
		text  string
	}{
		{[]int{}, ""},
		{[]int{1024}, "1024"},
		{[]int{768, 256}, "768,256"},
		{[]int{8, 0, 3}, "8,0,3"},
	} {
		if got := FormatShape(tc.shape); got != tc.text {
			t.Errorf("FormatShape(%v) = %q, want %q", tc.shape, got, tc.text)
		}
		got, err := ParseShape(tc.text)
		if err != nil || !slices.Equal(got, tc.shape) || got == nil {
			t.Errorf("ParseShape(%q) = %v, %v; want %v", tc.text, got, err, tc.shape)
		}
	}
	for _, bad := range []string{"[768,256]", "768,", "a", "-1", "1,,2", "99999999999999999999"} {
		if sh, err := ParseShape(bad); err == nil {
			t.Errorf("ParseShape(%q) = %v, want an error", bad, sh)
		}
	}
}

// FuzzParseShape: ParseShape never panics, and what it accepts formats and
// parses back to the same shape.
func FuzzParseShape(f *testing.F) {
	for _, s := range []string{"", "768,256", "1", " 3, 4", "[1,2]", "-1", "1,,2", "+5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sh, err := ParseShape(s)
		if err != nil {
			return
		}
		again, err := ParseShape(FormatShape(sh))
		if err != nil || !slices.Equal(again, sh) {
			t.Fatalf("%q: parsed %v, reformatted %q parses to %v, %v", s, sh, FormatShape(sh), again, err)
		}
	})
}
