package quant

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func mustLookup(t *testing.T, name string) Format {
	t.Helper()
	f, err := Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func dequant(t *testing.T, w []float32, rows, cols int, f Format, opts *Options) (*Packed, []float32) {
	t.Helper()
	p, err := Quantize(w, rows, cols, f, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	d := make([]float32, rows*cols)
	p.Dequantize(d)
	return p, d
}

func eqF32(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] && !(a[i] != a[i] && b[i] != b[i]) {
			return false
		}
	}
	return true
}

func TestLookup(t *testing.T) {
	for _, n := range []string{"fp4", "mxfp4", "nvfp4", "int4", "int4_sym", "INT4_ASYM", "int3", "int2", "nf4", "nf3", "fp8_e4m3", "fp8_e5m2", "bf16", "f16", "fp16"} {
		if _, err := Lookup(n); err != nil {
			t.Errorf("Lookup(%q): %v", n, err)
		}
	}
	_, err := Lookup("fp5")
	if err == nil || !strings.Contains(err.Error(), "mxfp4") || !strings.Contains(err.Error(), `"fp5"`) {
		t.Errorf("unknown format error should name it and list known names: %v", err)
	}
	mx := mustLookup(t, "mxfp4")
	if _, err := mx.WithGroupSize(64); err == nil {
		t.Error("mxfp4 block size must be fixed")
	}
	if _, err := mx.WithScale(ScaleF16); err == nil {
		t.Error("mxfp4 scale type must be fixed")
	}
	bpw := []struct {
		name string
		want float64
	}{{"fp4", 4.125}, {"mxfp4", 4.25}, {"nvfp4", 4.5}, {"int4", 4.125}, {"int4_asym", 4.1875}, {"int3", 3.125}, {"int2", 2.125}, {"nf4", 4.25}, {"bf16", 16}}
	for _, c := range bpw {
		if got := mustLookup(t, c.name).NominalBitsPerWeight(); got != c.want {
			t.Errorf("%s nominal bits/weight %v, want %v", c.name, got, c.want)
		}
	}
	// exact: nvfp4 [16, 256]: 4 + 8/16 + 32/4096
	if got := mustLookup(t, "nvfp4").BitsPerWeight(16, 256); got != 4.5+32.0/4096 {
		t.Errorf("nvfp4 BitsPerWeight = %v", got)
	}
	// fp8 per-row F32 scale on [4, 100]: 8 + 32/100
	if got := mustLookup(t, "fp8_e4m3").BitsPerWeight(4, 100); math.Abs(got-8.32) > 1e-12 {
		t.Errorf("fp8 BitsPerWeight = %v", got)
	}
}

// TestMXFP4KnownAnswers: OCP MX v1.0: X = 2^(floor(log2 amax) − 2), P = E2M1(V/X).
func TestMXFP4KnownAnswers(t *testing.T) {
	f := mustLookup(t, "mxfp4")
	blk := func(vals ...float32) []float32 {
		b := make([]float32, 32)
		copy(b, vals)
		return b
	}
	cases := []struct {
		name  string
		w     []float32
		scale uint8
		deq   []float32
	}{
		{"grid", blk(6, -3, 1.5, 0.5, -0.25), 127, blk(6, -3, 1.5, 0.5, negZero)},
		{"saturate 7.5", blk(7.5, 1), 127, blk(6, 1)},
		{"amax 8 scale 2", blk(8, 5, 1, 0.5), 128, blk(8, 4, 1, 0)},
		{"ties at scale 1/4", blk(1.5, 0.3125, 0.4375, 0.1875), 125, blk(1.5, 0.25, 0.5, 0.25)},
		{"all zero", blk(), 0, blk()},
		{"tiny subnormal amax", blk(0x1p-140, -0x1p-149), 0, blk(0, negZero)},
		{"huge", blk(0x1.8p127), 252, blk(0x1.8p127)},
	}
	for _, c := range cases {
		p, d := dequant(t, c.w, 1, 32, f, nil)
		if p.Scales[0] != c.scale {
			t.Errorf("%s: scale code %d, want %d", c.name, p.Scales[0], c.scale)
		}
		if !eqF32(d, c.deq) {
			t.Errorf("%s: dequantized %v, want %v", c.name, d[:6], c.deq[:6])
		}
	}
	// NaN/Inf: an error by default; passed through, the block's scale is NaN.
	w := blk(1, float32(math.NaN()))
	if _, err := Quantize(w, 1, 32, f, &Options{Name: "m.w"}); err == nil {
		t.Fatal("NaN accepted")
	}
	p, d := dequant(t, append(w, blk(2)...), 1, 64, f, &Options{NonFinite: NonFinitePass})
	if p.Scales[0] != E8M0NaN || d[0] == d[0] || d[32] != 2 {
		t.Errorf("NaN block: scale %#x, deq %v %v", p.Scales[0], d[0], d[32])
	}
}

// TestNVFP4KnownAnswers follows shared/testdata/README.md: g = amax/(6·448),
// s = e4m3(amax_block/6/g), q = E2M1(w/(s·g)).
func TestNVFP4KnownAnswers(t *testing.T) {
	f := mustLookup(t, "nvfp4")
	w := make([]float32, 64)
	w[0] = 2688 // g = 1
	// block 1: amax 12 → s = 2: 0.5 → 0.25 tie → 0, -1 → -0.5, 12 → 6
	w[16], w[17], w[18] = 0.5, -1, 12
	// block 2: amax 0.01 → s = e4m3(0.01/6) = 0.001953125 (E4M3 subnormal 2^-9)
	w[32], w[33] = 0.01, -0.004
	// block 3: all zero
	p, d := dequant(t, w, 1, 64, f, nil)
	if p.TensorScale != 1 {
		t.Fatalf("tensor scale %v, want 1", p.TensorScale)
	}
	if s := E4M3Values[p.Scales[0]]; s != 448 {
		t.Errorf("block 0 scale %v, want 448", s)
	}
	if s := E4M3Values[p.Scales[1]]; s != 2 {
		t.Errorf("block 1 scale %v, want 2", s)
	}
	if s := E4M3Values[p.Scales[2]]; s != 0x1p-9 {
		t.Errorf("block 2 scale %v, want 2^-9", s)
	}
	if p.Scales[3] != 0 {
		t.Errorf("zero block scale code %#x", p.Scales[3])
	}
	// 0.01/2^-9 = 5.12 → 6 ; -0.004/2^-9 = -2.048 → -2
	want := map[int]float32{0: 2688, 16: 0, 17: -1, 18: 12, 32: 6 * 0x1p-9, 33: -2 * 0x1p-9}
	for i, v := range want {
		if d[i] != v {
			t.Errorf("w[%d] = %v dequantized to %v, want %v", i, w[i], d[i], v)
		}
	}
	for i := 48; i < 64; i++ {
		if d[i] != 0 {
			t.Errorf("zero block element %d = %v", i, d[i])
		}
	}
}

func TestIntKnownAnswers(t *testing.T) {
	f32s := func(f Format) Format {
		f, err := f.WithScale(ScaleF32)
		if err != nil {
			t.Fatal(err)
		}
		g, err := f.WithGroupSize(8)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	cases := []struct {
		format string
		w, deq []float32
		codes  []uint32
	}{
		// int4 sym: scale = 7/7 = 1; ties to even; range [-8, 7] (−8 unused by absmax scaling)
		{"int4", []float32{7, 2.5, 3.5, -2.5, -0.5, 0.4, -7, 1}, []float32{7, 2, 4, -2, 0, 0, -7, 1}, []uint32{15, 10, 12, 6, 8, 8, 1, 9}},
		// int2 sym: scale = absmax/1; q in [-2, 1]
		{"int2", []float32{1, -1, 0.5, -0.5, 0.51, -0.9, 0, 0}, []float32{1, -1, 0, 0, 1, -1, 0, 0}, []uint32{3, 1, 2, 2, 3, 1, 2, 2}},
		// int3 sym: scale = 3/3 = 1; q in [-4, 3]
		{"int3", []float32{3, -3, 1.5, 2.5, -1.5, 0, 0, 0}, []float32{3, -3, 2, 2, -2, 0, 0, 0}, []uint32{7, 1, 6, 6, 2, 4, 4, 4}},
		// int4 asym (GPTQ rule): lo = -5, hi = 10, scale = 1, zero = 5
		{"int4_asym", []float32{-5, 10, 0, 2.5, 3.5, -4.5, 1, 1}, []float32{-5, 10, 0, 2, 4, -4, 1, 1}, []uint32{0, 15, 5, 7, 9, 1, 6, 6}},
		// all-zero group
		{"int4", make([]float32, 8), make([]float32, 8), []uint32{8, 8, 8, 8, 8, 8, 8, 8}},
		{"int4_asym", make([]float32, 8), make([]float32, 8), []uint32{0, 0, 0, 0, 0, 0, 0, 0}},
	}
	for _, c := range cases {
		f := f32s(mustLookup(t, c.format))
		p, d := dequant(t, c.w, 1, 8, f, nil)
		if !eqF32(d, c.deq) {
			t.Errorf("%s %v: dequantized %v, want %v", c.format, c.w, d, c.deq)
		}
		for i, want := range c.codes {
			if got := p.Code(0, i); got != want {
				t.Errorf("%s %v: code[%d] = %d, want %d", c.format, c.w, i, got, want)
			}
		}
	}
}

func TestNFAndFP4KnownAnswers(t *testing.T) {
	f, _ := mustLookup(t, "nf4").WithGroupSize(4)
	_, d := dequant(t, []float32{1, -1, 0.5, 0.07}, 1, 4, f, nil)
	if want := []float32{1, -1, NF4Values[12], NF4Values[8]}; !eqF32(d, want) {
		t.Errorf("nf4: %v, want %v", d, want)
	}
	f, _ = mustLookup(t, "nf3").WithGroupSize(4)
	_, d = dequant(t, []float32{-2, 2, 0.3, 0}, 1, 4, f, nil)
	if want := []float32{-2, 2, 2 * NF3Values[4], 0}; !eqF32(d, want) {
		t.Errorf("nf3: %v, want %v", d, want)
	}
	// fp4: FP16 scale = amax/6; 3 → scale 0.5, elements on the grid ×0.5
	f, _ = mustLookup(t, "fp4").WithGroupSize(4)
	_, d = dequant(t, []float32{3, -1.5, 0.625, 0.375}, 1, 4, f, nil)
	if want := []float32{3, -1.5, 0.5, 0.5}; !eqF32(d, want) {
		t.Errorf("fp4: %v, want %v", d, want)
	}
	// FP16 scale overflow saturates at 65504 instead of producing Inf/NaN.
	_, d = dequant(t, []float32{1e6, -1, 0, 0}, 1, 4, f, nil)
	if d[0] != 6*65504 || d[1] != 0 {
		t.Errorf("fp4 scale saturation: %v", d)
	}
	// fp8 per-row scale: amax/448
	f = mustLookup(t, "fp8_e4m3")
	_, d = dequant(t, []float32{448, -224, 1, 0.5, 0}, 1, 5, f, nil)
	if want := []float32{448, -224, 1, 0.5, 0}; !eqF32(d, want) {
		t.Errorf("fp8_e4m3: %v, want %v", d, want)
	}
}

func TestAllZeroGroupsEveryFormat(t *testing.T) {
	for _, n := range Names() {
		f := mustLookup(t, n)
		_, d := dequant(t, make([]float32, 2*256), 2, 256, f, nil)
		for i, v := range d {
			if v != 0 {
				t.Fatalf("%s: element %d = %v", n, i, v)
			}
		}
	}
}

func TestNonFiniteErrorNamesTensorAndIndex(t *testing.T) {
	for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
		for _, n := range Names() {
			w := make([]float32, 3*256)
			w[2*256+17] = bad
			_, err := Quantize(w, 3, 256, mustLookup(t, n), &Options{Name: "model.layers.0.mlp.up_proj.weight"})
			var nf *NonFiniteError
			if !errors.As(err, &nf) || nf.Row != 2 || nf.Col != 17 || !strings.Contains(err.Error(), "model.layers.0.mlp.up_proj.weight") || !strings.Contains(err.Error(), "[2, 17]") {
				t.Errorf("%s %v: error %v", n, bad, err)
			}
		}
	}
	// Passed through: FP8 keeps NaN, Inf saturates in E4M3; others finish.
	w := []float32{float32(math.NaN()), float32(math.Inf(1)), 1, 2}
	for _, n := range Names() {
		if mustLookup(t, n).Elem == ElemGGML {
			if _, err := Quantize(append(w, make([]float32, 252)...), 1, 256, mustLookup(t, n), &Options{NonFinite: NonFinitePass}); err != nil {
				t.Errorf("%s pass: %v", n, err)
			}
			continue
		}
		if _, err := Quantize(w, 1, 4, mustLookup(t, n), &Options{NonFinite: NonFinitePass}); err != nil {
			t.Errorf("%s pass: %v", n, err)
		}
	}
	_, d := dequant(t, w, 1, 4, mustLookup(t, "fp8_e4m3"), &Options{NonFinite: NonFinitePass})
	if d[0] == d[0] || d[1] != 2*448/448 || d[3] != 2 {
		t.Errorf("fp8 pass-through: %v", d)
	}
}

func TestPackingLayout(t *testing.T) {
	cases := []struct {
		bits  int
		codes []uint8
		bytes []byte
	}{
		{4, []uint8{1, 2, 3}, []byte{0x21, 0x03}},
		{2, []uint8{1, 2, 3, 0, 3}, []byte{0x39, 0x03}},
		{3, []uint8{1, 2, 3, 4, 5, 6, 7, 0}, []byte{0xd1, 0x58, 0x1f}},
		{3, []uint8{7, 7, 7}, []byte{0xff, 0x01}},
		{8, []uint8{0xab, 0x01}, []byte{0xab, 0x01}},
	}
	for _, c := range cases {
		f := Format{Name: "t", Elem: ElemInt, Bits: c.bits, GroupSize: 0, Scale: ScaleF16}
		p, err := NewPacked(f, 2, len(c.codes))
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range c.codes {
			p.SetCode(1, i, v)
		}
		row := p.Codes[p.RowBytes():]
		if string(row) != string(c.bytes) {
			t.Errorf("%d-bit %v: packed % x, want % x", c.bits, c.codes, row, c.bytes)
		}
		for i, v := range c.codes {
			if got := p.Code(1, i); got != uint32(v) {
				t.Errorf("%d-bit: code %d reads %d, want %d", c.bits, i, got, v)
			}
		}
		for _, b := range p.Codes[:p.RowBytes()] {
			if b != 0 {
				t.Errorf("%d-bit: row 0 touched", c.bits)
			}
		}
	}
	// GPTQ int32 packing: 8 nibbles of a row read as a little-endian uint32
	f := mustLookup(t, "int4")
	p, _ := NewPacked(f, 1, 8)
	for i := 0; i < 8; i++ {
		p.SetCode(0, i, uint8(i+1))
	}
	if v := uint32(p.Codes[0]) | uint32(p.Codes[1])<<8 | uint32(p.Codes[2])<<16 | uint32(p.Codes[3])<<24; v != 0x87654321 {
		t.Errorf("GPTQ int32 view %#x, want 0x87654321", v)
	}
}

func TestScaleSearchNeverWorse(t *testing.T) {
	w := randWeights(16*256, 9)
	for _, n := range []string{"fp4", "mxfp4", "nvfp4", "int4", "int3", "int4_asym", "nf4"} {
		f := mustLookup(t, n)
		p0, _ := Quantize(w, 16, 256, f, nil)
		p1, _ := Quantize(w, 16, 256, f, &Options{ScaleSearch: true})
		r0, _ := Measure(n, w, p0)
		r1, _ := Measure(n, w, p1)
		if r1.MSE > r0.MSE {
			t.Errorf("%s: scale search MSE %g > RTN %g", n, r1.MSE, r0.MSE)
		}
		t.Logf("%s: MSE %.4g -> %.4g with scale search", n, r0.MSE, r1.MSE)
	}
}

func TestGPTQWords(t *testing.T) {
	f, _ := mustLookup(t, "int4").WithGroupSize(16)
	p, _ := NewPacked(f, 2, 16)
	for n := 0; n < 2; n++ {
		for c := 0; c < 16; c++ {
			p.SetCode(n, c, uint8((c+n)%16))
		}
	}
	w, err := p.GPTQWords()
	if err != nil {
		t.Fatal(err)
	}
	// word (k, n): column 8k+i of row n in nibble i
	for k := 0; k < 2; k++ {
		for n := 0; n < 2; n++ {
			var want uint32
			for i := 0; i < 8; i++ {
				want |= uint32((8*k+i+n)%16) << (4 * i)
			}
			if uint32(w[k*2+n]) != want {
				t.Errorf("word (%d, %d) = %#x, want %#x", k, n, uint32(w[k*2+n]), want)
			}
		}
	}
	p3, _ := NewPacked(mustLookup(t, "int3"), 1, 16)
	if _, err := p3.GPTQWords(); err == nil {
		t.Error("3-bit accepted")
	}
}

// TestPassThroughNaNCodes: with NonFinitePass, NaN encodes as the zero code
// and ±Inf saturates to the group's range, per format family.
func TestPassThroughNaNCodes(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	for _, name := range []string{"int4", "int4_asym", "fp4", "nf4", "int3_asym", "nvfp4", "int2"} {
		f, err := mustLookup(t, name).WithGroupSize(8)
		if err != nil {
			f = mustLookup(t, name)
		}
		w := make([]float32, f.Group(16))
		copy(w, []float32{nan, inf, -inf, 1, -1})
		_, d := dequant(t, w, 1, len(w), f, &Options{NonFinite: NonFinitePass})
		if d[0] != 0 || !(d[1] > 0.8) || !(d[2] < -0.8) { // asym grids end near ±range
			t.Errorf("%s: NaN/Inf/-Inf dequantized to %v", name, d[:3])
		}
	}
}

// TestRowFallback: GGML block formats whose blocks do not divide a row take
// llama-quantize's fallback chain; other formats and fitting rows stay.
func TestRowFallback(t *testing.T) {
	for _, tc := range []struct {
		format string
		cols   int
		want   string
		fell   bool
	}{
		{"q4_k", 512, "q4_k", false},
		{"q4_k", 192, "q5_0", true},
		{"q6_k", 96, "q8_0", true},
		{"q5_k", 160, "q5_1", true},
		{"q4_k", 100, "f16", true}, // Q5_0's 32-blocks do not fit either
		{"mxfp4", 100, "mxfp4", false},
		{"int4", 100, "int4", false},
	} {
		f, err := Lookup(tc.format)
		if err != nil {
			t.Fatal(err)
		}
		got, fell, err := RowFallback(f, tc.cols)
		if err != nil {
			t.Fatalf("%s/%d: %v", tc.format, tc.cols, err)
		}
		if got.Name != tc.want || fell != tc.fell {
			t.Errorf("%s with rows of %d: %s (fell %v), want %s (fell %v)", tc.format, tc.cols, got.Name, fell, tc.want, tc.fell)
		}
	}
}
