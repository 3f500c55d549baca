package ct

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/tensor"
)

// The readers below follow the published layouts (compressed-tensors'
// pack_quantized / fp4_quantized compressors and dequantize(), vLLM's MX
// scale convention, AutoGPTQ's v1 qweight/qzeros), written from those
// descriptions and not from this package's writer.

// e4m3 decodes OCP FP8 E4M3FN: bias 7, exponent 0 subnormal, S.1111.111 NaN.
func e4m3(b uint8) float32 {
	s := float32(1)
	if b&0x80 != 0 {
		s = -1
	}
	e := int(b>>3) & 15
	m := float64(b & 7)
	if e == 15 && m == 7 {
		return float32(math.NaN())
	}
	if e == 0 {
		return s * float32(m/8*math.Ldexp(1, -6))
	}
	return s * float32((1+m/8)*math.Ldexp(1, e-7))
}

var e2m1 = []float32{0, 0.5, 1, 1.5, 2, 3, 4, 6}

func fp4(n uint8) float32 {
	v := e2m1[n&7]
	if n&8 != 0 {
		v = -v
	}
	return v
}

func byName(ts []*tensor.Tensor) map[string]*tensor.Tensor {
	m := map[string]*tensor.Tensor{}
	for _, t := range ts {
		m[t.Name] = t
	}
	return m
}

func f32at(b []byte, i int) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])) }

func scaleAt(t *tensor.Tensor, i int) float32 {
	switch t.DType {
	case tensor.F16:
		return tensor.F16ToF32(binary.LittleEndian.Uint16(t.Data[2*i:]))
	case tensor.BF16:
		return tensor.BF16ToF32(binary.LittleEndian.Uint16(t.Data[2*i:]))
	case tensor.F32:
		return f32at(t.Data, i)
	}
	panic("scale dtype " + t.DType.String())
}

// readFP4 dequantizes nvfp4/mxfp4-pack-quantized: x_q unpacked low nibble
// first; NVFP4 scale = fp8 / global_scale, MXFP4 scale = 2^(u8 − 127).
func readFP4(t *testing.T, m map[string]*tensor.Tensor, mod string, group int) []float32 {
	wp, sc := m[mod+".weight_packed"], m[mod+".weight_scale"]
	rows, cols := wp.Shape[0], wp.Shape[1]*2
	out := make([]float32, rows*cols)
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			b := wp.Data[r*cols/2+c/2]
			n := b & 15
			if c%2 == 1 {
				n = b >> 4
			}
			si := r*sc.Shape[1] + c/group
			var s float32
			if gsT, ok := m[mod+".weight_global_scale"]; ok {
				s = e4m3(sc.Data[si]) / f32at(gsT.Data, 0)
			} else {
				s = float32(math.Ldexp(1, int(sc.Data[si])-127))
			}
			out[r*cols+c] = fp4(n) * s
		}
	}
	return out
}

// readPacked dequantizes pack-quantized: (x_q − zp) · scale with x_q and zp
// unpacked from int32 words (value j at bits b·j) minus the 2^(b−1) offset.
func readPacked(t *testing.T, m map[string]*tensor.Tensor, mod string, bits, group int) []float32 {
	wp, sc := m[mod+".weight_packed"], m[mod+".weight_scale"]
	shp := m[mod+".weight_shape"]
	rows, cols := int(binary.LittleEndian.Uint32(shp.Data)), int(binary.LittleEndian.Uint32(shp.Data[4:]))
	pf := 32 / bits
	mask := uint32(1)<<bits - 1
	off := int32(1) << (bits - 1)
	word := func(tt *tensor.Tensor, i int) uint32 { return binary.LittleEndian.Uint32(tt.Data[4*i:]) }
	ng := sc.Shape[1]
	gidx := func(c int) int {
		if gi, ok := m[mod+".weight_g_idx"]; ok {
			return int(word(gi, c))
		}
		if group == 0 {
			return 0
		}
		return c / group
	}
	out := make([]float32, rows*cols)
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			q := int32(word(wp, r*wp.Shape[1]+c/pf)>>(bits*(c%pf))&mask) - off
			g := gidx(c)
			var zp int32
			if z, ok := m[mod+".weight_zero_point"]; ok {
				zp = int32(word(z, (r/pf)*ng+g)>>(bits*(r%pf))&mask) - off
			}
			out[r*cols+c] = float32(q-zp) * scaleAt(sc, r*ng+g)
		}
	}
	return out
}

// readGPTQ dequantizes AutoGPTQ v1: w[j,i] = scales[g,j]·(q − (qz+1)).
func readGPTQ(t *testing.T, m map[string]*tensor.Tensor, mod string, bits int) []float32 {
	qw, qz, sc, gi := m[mod+".qweight"], m[mod+".qzeros"], m[mod+".scales"], m[mod+".g_idx"]
	pf := 32 / bits
	mask := uint32(1)<<bits - 1
	in, out := qw.Shape[0]*pf, qw.Shape[1]
	res := make([]float32, out*in)
	for i := 0; i < in; i++ {
		g := int(binary.LittleEndian.Uint32(gi.Data[4*i:]))
		for j := 0; j < out; j++ {
			q := binary.LittleEndian.Uint32(qw.Data[4*((i/pf)*out+j):]) >> (bits * (i % pf)) & mask
			z := (binary.LittleEndian.Uint32(qz.Data[4*(g*qz.Shape[1]+j/pf):])>>(bits*(j%pf))&mask + 1) & mask
			if bits == 8 {
				z = binary.LittleEndian.Uint32(qz.Data[4*(g*qz.Shape[1]+j/pf):])>>(bits*(j%pf))&mask + 1
			}
			s := tensor.F16ToF32(binary.LittleEndian.Uint16(sc.Data[2*(g*out+j):]))
			res[j*in+i] = s * (float32(q) - float32(z))
		}
	}
	return res
}

func quantized(t *testing.T, format string, rows, cols int, mutate func(*quant.Format)) *quant.Packed {
	t.Helper()
	f, err := quant.Lookup(format)
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(&f)
	}
	r := rand.New(rand.NewPCG(9, uint64(len(format))))
	w := make([]float32, rows*cols)
	for i := range w {
		w[i] = float32(r.NormFloat64()) * 0.03
	}
	p, err := quant.Quantize(w, rows, cols, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func compare(t *testing.T, what string, got, want []float32, ulps uint32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range want {
		a, b := math.Float32bits(got[i]), math.Float32bits(want[i])
		d := a - b
		if b > a {
			d = b - a
		}
		if d > ulps && !(got[i] == 0 && want[i] == 0) {
			t.Fatalf("%s: value %d = %v, want %v", what, i, got[i], want[i])
		}
	}
}

func TestCompressedTensorsReadBack(t *testing.T) {
	const rows, cols = 32, 256
	cases := []struct {
		format string
		mut    func(*quant.Format)
		gidx   bool
		ulps   uint32
	}{
		{"mxfp4", nil, false, 0},
		{"nvfp4", nil, false, 2},
		{"int4", nil, false, 0},
		{"int4", func(f *quant.Format) { f.GroupSize = 64; f.Scale = quant.ScaleBF16 }, true, 0},
		{"int4_asym", nil, false, 0},
		{"int4_asym", func(f *quant.Format) { f.GroupSize = 32 }, true, 0},
		{"int8", func(f *quant.Format) { f.GroupSize = 0 }, false, 0},
		{"int2_asym", func(f *quant.Format) { f.GroupSize = 64 }, false, 0},
		{"int3", nil, false, 0},
	}
	schemes := map[string]Scheme{}
	for i, tc := range cases {
		p := quantized(t, tc.format, rows, cols, tc.mut)
		if tc.gidx {
			p.GIdx = make([]int32, cols)
			g := p.Format.Group(cols)
			for c := range p.GIdx {
				p.GIdx[c] = int32(((c * 5) % cols) / g)
			}
		}
		mod := "model.layers." + string(rune('a'+i)) + ".proj"
		ts, s, err := Tensors(mod+".weight", p)
		if err != nil {
			t.Fatalf("%s: %v", tc.format, err)
		}
		schemes[mod] = s
		want := make([]float32, rows*cols)
		p.Dequantize(want)
		m := byName(ts)
		var got []float32
		switch s.Format {
		case FormatNVFP4, FormatMXFP4:
			got = readFP4(t, m, mod, s.GroupSize)
		case FormatPack:
			got = readPacked(t, m, mod, s.NumBits, s.GroupSize)
		}
		compare(t, p.Format.String(), got, want, tc.ulps)
	}
	qc, err := QuantizationConfig(schemes, []string{"lm_head"})
	if err != nil {
		t.Fatal(err)
	}
	if qc["quant_method"] != "compressed-tensors" || qc["format"] != "mixed-precision" || len(qc["config_groups"].(map[string]any)) == 0 {
		t.Errorf("config %v", qc)
	}
}

func TestFP8FloatQuantized(t *testing.T) {
	p := quantized(t, "fp8_e4m3", 8, 64, nil)
	ts, s, err := Tensors("x.weight", p)
	if err != nil {
		t.Fatal(err)
	}
	m := byName(ts)
	w, sc := m["x.weight"], m["x.weight_scale"]
	got := make([]float32, 8*64)
	for r := 0; r < 8; r++ {
		for c := 0; c < 64; c++ {
			got[r*64+c] = e4m3(w.Data[r*64+c]) * f32at(sc.Data, r)
		}
	}
	want := make([]float32, 8*64)
	p.Dequantize(want)
	compare(t, "fp8", got, want, 0)
	if s.Format != FormatFloat {
		t.Errorf("scheme %+v", s)
	}
}

func TestGPTQReadBack(t *testing.T) {
	for _, tc := range []struct {
		format string
		mut    func(*quant.Format)
		gidx   bool
	}{
		{"int4", nil, false},
		{"int4", func(f *quant.Format) { f.GroupSize = 32 }, true},
		{"int4_asym", nil, true},
		{"int8", nil, false},
		{"int2_asym", func(f *quant.Format) { f.GroupSize = 64 }, false},
	} {
		p := quantized(t, tc.format, 32, 256, tc.mut)
		if tc.gidx {
			p.GIdx = make([]int32, 256)
			g := p.Format.Group(256)
			for c := range p.GIdx {
				p.GIdx[c] = int32(((c * 3) % 256) / g)
			}
		}
		ts, cfg, err := GPTQTensors("m.weight", p)
		if err != nil {
			t.Fatalf("%s: %v", tc.format, err)
		}
		want := make([]float32, 32*256)
		p.Dequantize(want)
		compare(t, "gptq "+p.Format.String(), readGPTQ(t, byName(ts), "m", cfg.Bits), want, 0)
		if cfg.DescAct != tc.gidx || cfg.Sym == p.Format.Asym {
			t.Errorf("%s: config %+v", tc.format, cfg)
		}
	}
}

func TestUnsupported(t *testing.T) {
	for _, tc := range []struct{ format, name string }{
		{"nf4", "a.weight"}, {"fp4", "a.weight"}, {"int4", "no_suffix"},
	} {
		p := quantized(t, tc.format, 4, 128, nil)
		if _, _, err := Tensors(tc.name, p); err == nil {
			t.Errorf("%s %s: no error", tc.format, tc.name)
		}
	}
	p := quantized(t, "int4", 8, 128, func(f *quant.Format) { f.Scale = quant.ScaleBF16 })
	if _, _, err := GPTQTensors("a.weight", p); err == nil {
		t.Error("gptq accepted bf16 scales")
	}
	p = quantized(t, "int3", 8, 128, nil)
	if _, _, err := GPTQTensors("a.weight", p); err == nil {
		t.Error("gptq accepted 3-bit codes")
	}
}

// TestFP8PerTensor: fp8_e4m3_tensor is written with the "tensor" strategy
// and one F32 scale, and reads back to the dequantized weights exactly.
func TestFP8PerTensor(t *testing.T) {
	p := quantized(t, "fp8_e4m3_tensor", 8, 64, nil)
	ts, s, err := Tensors("x.weight", p)
	if err != nil {
		t.Fatal(err)
	}
	m := byName(ts)
	w, sc := m["x.weight"], m["x.weight_scale"]
	if len(sc.Shape) != 1 || sc.Shape[0] != 1 || s.Strategy != "tensor" || s.Format != FormatFloat {
		t.Fatalf("scale shape %v, scheme %+v", sc.Shape, s)
	}
	got := make([]float32, 8*64)
	for i := range got {
		got[i] = e4m3(w.Data[i]) * f32at(sc.Data, 0)
	}
	want := make([]float32, 8*64)
	p.Dequantize(want)
	compare(t, "fp8 per tensor", got, want, 0)
}
