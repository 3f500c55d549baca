package ggml

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/marlin-llm/marlin/model/gguf"
	"github.com/marlin-llm/marlin/tensor"
)

// readF16 loads a raw little-endian F16 file as float32.
func readF16(t *testing.T, path string) []float32 {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	x := make([]float32, len(raw)/2)
	for i := range x {
		x[i] = tensor.F16ToF32(binary.LittleEndian.Uint16(raw[2*i:]))
	}
	return x
}

// TestGoldenLlamaQuantize checks every encoder against blocks llama-quantize
// wrote for the same F16 tensor (testdata/README.md).
func TestGoldenLlamaQuantize(t *testing.T) {
	x := readF16(t, filepath.Join("testdata", "attn_k.f16"))
	for _, tc := range []struct{ typ, file string }{
		{"Q8_0", "attn_k.q8_0"}, {"Q4_0", "attn_k.q4_0"}, {"Q5_0", "attn_k.q5_0"},
		{"MXFP4", "attn_k.mxfp4"}, {"Q4_K", "attn_k.q4_k"}, {"Q6_K", "attn_k.q6_k"},
		{"Q5_1", "attn_k.q5_1"}, {"Q5_K", "attn_k.q5_k"},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			enc, err := Lookup(tc.typ)
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := enc.Encode(nil, x)
			if err != nil {
				t.Fatal(err)
			}
			if len(want) < len(got) {
				t.Fatalf("golden has %d bytes, want at least %d", len(want), len(got))
			}
			for b := 0; b < len(got)/enc.BlockBytes; b++ {
				g, w := got[b*enc.BlockBytes:(b+1)*enc.BlockBytes], want[b*enc.BlockBytes:(b+1)*enc.BlockBytes]
				if !bytes.Equal(g, w) {
					t.Fatalf("block %d differs from llama.cpp:\n got %x\nwant %x", b, g, w)
				}
			}
		})
	}
}

// Reference decoders, written from ggml-common.h's block layouts (the
// dequantize_row_* semantics), independent of the encoders above.
func decode(t *testing.T, typ string, b []byte, n int) []float32 {
	t.Helper()
	y := make([]float32, 0, n)
	h := func(o int) float32 { return tensor.F16ToF32(binary.LittleEndian.Uint16(b[o:])) }
	switch typ {
	case "Q8_0":
		for o := 0; o < len(b); o += SizeQ8_0 {
			d := h(o)
			for j := 0; j < 32; j++ {
				y = append(y, float32(int8(b[o+2+j]))*d)
			}
		}
	case "Q4_0":
		for o := 0; o < len(b); o += SizeQ4_0 {
			d := h(o)
			var blk [32]float32
			for j := 0; j < 16; j++ {
				blk[j] = float32(int(b[o+2+j]&15)-8) * d
				blk[j+16] = float32(int(b[o+2+j]>>4)-8) * d
			}
			y = append(y, blk[:]...)
		}
	case "Q5_0":
		for o := 0; o < len(b); o += SizeQ5_0 {
			d := h(o)
			qh := binary.LittleEndian.Uint32(b[o+2:])
			var blk [32]float32
			for j := 0; j < 16; j++ {
				lo := int(b[o+6+j]&15) | int(qh>>j&1)<<4
				hi := int(b[o+6+j]>>4) | int(qh>>(j+16)&1)<<4
				blk[j] = float32(lo-16) * d
				blk[j+16] = float32(hi-16) * d
			}
			y = append(y, blk[:]...)
		}
	case "Q5_1":
		for o := 0; o < len(b); o += SizeQ5_1 {
			d, m := h(o), h(o+2)
			qh := binary.LittleEndian.Uint32(b[o+4:])
			var blk [32]float32
			for j := 0; j < 16; j++ {
				lo := int(b[o+8+j]&15) | int(qh>>j&1)<<4
				hi := int(b[o+8+j]>>4) | int(qh>>(j+16)&1)<<4
				blk[j] = float32(lo)*d + m
				blk[j+16] = float32(hi)*d + m
			}
			y = append(y, blk[:]...)
		}
	case "Q5_K":
		for o := 0; o < len(b); o += SizeQ5_K {
			d, dmin := h(o), h(o+2)
			sc := b[o+4 : o+16]
			qh := b[o+16 : o+48]
			q := b[o+48 : o+SizeQ5_K]
			for j := 0; j < 4; j++ {
				s1, m1 := scaleMinK4(2*j, sc)
				s2, m2 := scaleMinK4(2*j+1, sc)
				for l := 0; l < 32; l++ {
					hb := float32(qh[l] >> (2 * j) & 1 * 16)
					y = append(y, d*float32(s1)*(float32(q[32*j+l]&15)+hb)-dmin*float32(m1))
				}
				for l := 0; l < 32; l++ {
					hb := float32(qh[l] >> (2*j + 1) & 1 * 16)
					y = append(y, d*float32(s2)*(float32(q[32*j+l]>>4)+hb)-dmin*float32(m2))
				}
			}
		}
	case "MXFP4":
		for o := 0; o < len(b); o += SizeMXFP4 {
			d := float32(math.Ldexp(1, int(b[o])-128))
			var blk [32]float32
			for j := 0; j < 16; j++ {
				blk[j] = float32(MXFP4Values[b[o+1+j]&15]) * d
				blk[j+16] = float32(MXFP4Values[b[o+1+j]>>4]) * d
			}
			y = append(y, blk[:]...)
		}
	case "Q4_K":
		for o := 0; o < len(b); o += SizeQ4_K {
			d, dmin := h(o), h(o+2)
			sc := b[o+4 : o+16]
			q := b[o+16 : o+SizeQ4_K]
			for j := 0; j < 4; j++ { // 64 weights per step: low nibbles then high nibbles
				s1, m1 := scaleMinK4(2*j, sc)
				s2, m2 := scaleMinK4(2*j+1, sc)
				for l := 0; l < 32; l++ {
					y = append(y, d*float32(s1)*float32(q[32*j+l]&15)-dmin*float32(m1))
				}
				for l := 0; l < 32; l++ {
					y = append(y, d*float32(s2)*float32(q[32*j+l]>>4)-dmin*float32(m2))
				}
			}
		}
	case "Q6_K":
		for o := 0; o < len(b); o += SizeQ6_K {
			ql, qh, sc := b[o:o+128], b[o+128:o+192], b[o+192:o+208]
			d := h(o + 208)
			var blk [256]float32
			for half := 0; half < 2; half++ {
				for l := 0; l < 32; l++ {
					L := ql[64*half:]
					H := qh[32*half:]
					q1 := int(L[l]&15|(H[l]>>0&3)<<4) - 32
					q2 := int(L[l+32]&15|(H[l]>>2&3)<<4) - 32
					q3 := int(L[l]>>4|(H[l]>>4&3)<<4) - 32
					q4 := int(L[l+32]>>4|(H[l]>>6&3)<<4) - 32
					is := 8*half + l/16
					blk[128*half+l] = d * float32(int8(sc[is])) * float32(q1)
					blk[128*half+l+32] = d * float32(int8(sc[is+2])) * float32(q2)
					blk[128*half+l+64] = d * float32(int8(sc[is+4])) * float32(q3)
					blk[128*half+l+96] = d * float32(int8(sc[is+6])) * float32(q4)
				}
			}
			y = append(y, blk[:]...)
		}
	default:
		t.Fatalf("no decoder for %s", typ)
	}
	if len(y) != n {
		t.Fatalf("%s decoded %d values, want %d", typ, len(y), n)
	}
	return y
}

// TestRoundTripError bounds the reconstruction error of every format on
// Gaussian rows by the format's worst-case step (a half step for the
// symmetric rounders; K-quants get their scale search's slack).
func TestRoundTripError(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, 4*256)
	for i := range x {
		x[i] = float32(r.NormFloat64()) * 0.02
	}
	x[5] = 0.3 // an outlier
	for _, tc := range []struct {
		typ     string
		maxRMSE float64 // relative RMS error bound
	}{
		{"Q8_0", 0.01}, {"Q6_K", 0.03}, {"Q5_K", 0.06}, {"Q5_1", 0.08}, {"Q5_0", 0.06}, {"Q4_K", 0.12}, {"Q4_0", 0.14}, {"MXFP4", 0.2},
	} {
		enc, _ := Lookup(tc.typ)
		b, err := enc.Encode(nil, x)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != enc.RowBytes(len(x)) {
			t.Fatalf("%s: %d bytes, want %d", tc.typ, len(b), enc.RowBytes(len(x)))
		}
		y := decode(t, tc.typ, b, len(x))
		var se, ss float64
		for i := range x {
			e := float64(y[i] - x[i])
			se += e * e
			ss += float64(x[i]) * float64(x[i])
		}
		rel := math.Sqrt(se / ss)
		if rel > tc.maxRMSE {
			t.Errorf("%s: relative RMS error %.4f > %.4f", tc.typ, rel, tc.maxRMSE)
		}
		t.Logf("%s: relative RMS error %.4f", tc.typ, rel)
	}
}

// TestKnownAnswers pins hand-computed blocks.
func TestKnownAnswers(t *testing.T) {
	ramp := make([]float32, 32)
	for i := range ramp {
		ramp[i] = float32(i) - 16 // -16..15: max magnitude element is -16
	}
	t.Run("Q8_0 ramp", func(t *testing.T) {
		b, _ := encoders["Q8_0"].Encode(nil, ramp)
		// d = 16/127; q = round(x·127/16) (ties away from zero).
		if got, want := binary.LittleEndian.Uint16(b), tensor.F32ToF16(16.0/127); got != want {
			t.Errorf("d = %#x, want %#x", got, want)
		}
		for i, v := range ramp {
			want := int8(math.Round(float64(float32(v * float32(127.0/16)))))
			if int8(b[2+i]) != want {
				t.Errorf("q[%d] = %d, want %d", i, int8(b[2+i]), want)
			}
		}
	})
	t.Run("Q4_0 ramp", func(t *testing.T) {
		b, _ := encoders["Q4_0"].Encode(nil, ramp)
		// d = -16/-8 = 2, x/d + 8.5 truncated: -16 → 0, -15 → 1 (−7.5+8.5=1), 15 → 16 → 15.
		if got := tensor.F16ToF32(binary.LittleEndian.Uint16(b)); got != 2 {
			t.Errorf("d = %v, want 2", got)
		}
		if b[2]&15 != 0 || b[3]&15 != 1 || b[17]>>4 != 15 {
			t.Errorf("codes %x", b[2:])
		}
	})
	t.Run("MXFP4 ties to the smaller code", func(t *testing.T) {
		x := make([]float32, 32)
		x[0], x[1], x[2], x[3] = 6, 0.75, 2.5, -5
		x[4] = 100 // the block's amax: e = floor(log2 100) − 2 + 127 = 131
		b, _ := encoders["MXFP4"].Encode(nil, x)
		e := mxfp4Exponent(100)
		if e != 131 || b[0] != e {
			t.Fatalf("e = %d (block %d), want 131", e, b[0])
		}
		// d = 2^(131−128) = 8: grid = {0,8,16,24,32,48,64,96}
		want := []uint8{bestMXFP4(6, 8), bestMXFP4(0.75, 8), bestMXFP4(2.5, 8), bestMXFP4(-5, 8), 7}
		if want[0] != 1 || want[1] != 0 || want[3] != 9 {
			t.Errorf("best codes %v", want)
		}
		for i, w := range want {
			if got := b[1+i] & 15; got != w {
				t.Errorf("code %d = %d, want %d", i, got, w)
			}
		}
		// amax 6: e = 127, d = 0.5, the grid is E2M1 itself. 0.75 is midway
		// between 0.5 and 1 (first best: code 1, not RNE's code 2), 2.5
		// midway between 2 and 3 (code 4), −5 midway between −4 and −6
		// (code 14 = −4).
		y := []float32{6, 0.75, 2.5, -5}
		b, _ = encoders["MXFP4"].Encode(nil, append(y, make([]float32, 28)...))
		if b[0] != 127 {
			t.Fatalf("e = %d, want 127", b[0])
		}
		for i, w := range []uint8{7, 1, 4, 14} {
			if got := b[1+i] & 15; got != w {
				t.Errorf("code %d = %d, want %d", i, got, w)
			}
		}
	})
	t.Run("zero blocks", func(t *testing.T) {
		z := make([]float32, 256)
		for _, name := range Names() {
			b, err := encoders[name].Encode(nil, z)
			if err != nil {
				t.Fatal(err)
			}
			y := decode(t, name, b, 256)
			for i, v := range y {
				if v != 0 {
					t.Fatalf("%s: zero block decodes to %v at %d", name, v, i)
				}
			}
		}
	})
}

func TestEncodeErrors(t *testing.T) {
	for _, name := range Names() {
		enc, _ := Lookup(name)
		if _, err := enc.Encode(nil, make([]float32, enc.BlockSize+1)); err == nil {
			t.Errorf("%s: no error for a partial block", name)
		}
		x := make([]float32, enc.BlockSize)
		x[3] = float32(math.NaN())
		if _, err := enc.Encode(nil, x); err == nil {
			t.Errorf("%s: no error for NaN", name)
		}
		x[3] = float32(math.Inf(-1))
		if _, err := enc.Encode(nil, x); err == nil {
			t.Errorf("%s: no error for -Inf", name)
		}
	}
	if _, err := Lookup("Q3_X"); err == nil {
		t.Error("unknown type accepted")
	}
}

// FuzzEncode checks that no input panics and that decoded values stay
// within the block's range.
func FuzzEncode(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0}, uint8(0))
	f.Add(bytes.Repeat([]byte{0x3c, 0x00}, 128), uint8(3))
	f.Fuzz(func(t *testing.T, raw []byte, which uint8) {
		names := Names()
		enc := encoders[names[int(which)%len(names)]]
		x := make([]float32, enc.BlockSize)
		for i := 0; i+1 < len(raw) && i/2 < len(x); i += 2 {
			x[i/2] = tensor.F16ToF32(binary.LittleEndian.Uint16(raw[i:]))
		}
		b, err := enc.Encode(nil, x)
		if err != nil {
			return // NaN/Inf input
		}
		if len(b) != enc.BlockBytes {
			t.Fatalf("%s: %d bytes", enc.Name, len(b))
		}
		var amax float64
		for _, v := range x {
			amax = math.Max(amax, math.Abs(float64(v)))
		}
		for i, v := range decode(t, enc.Name, b, len(x)) {
			if math.IsNaN(float64(v)) || math.Abs(float64(v)) > 2*amax+1e-30 && math.Abs(float64(v)) > 1e-6 {
				t.Fatalf("%s: value %d decodes to %v, amax %v", enc.Name, i, v, amax)
			}
		}
	})
}

// TestDecodersAgreeWithModelGGUF checks the reference decoders above
// against model/gguf's dequantizers (ggml's dequantize_row_* semantics),
// bit for bit, on blocks our encoders wrote.
func TestDecodersAgreeWithModelGGUF(t *testing.T) {
	x := readF16(t, filepath.Join("testdata", "attn_k.f16"))
	for _, name := range Names() {
		typ, err := gguf.ParseType(name)
		if err != nil {
			t.Fatal(err)
		}
		if !gguf.CanDequantize(typ) {
			t.Logf("%s: model/gguf has no dequantizer; skipped", name)
			continue
		}
		enc, _ := Lookup(name)
		b, err := enc.Encode(nil, x)
		if err != nil {
			t.Fatal(err)
		}
		want, err := gguf.Dequantize(typ, b, int64(len(x)))
		if err != nil {
			t.Fatal(err)
		}
		got := decode(t, name, b, len(x))
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("%s: value %d: ours %v, model/gguf %v", name, i, got[i], want[i])
			}
		}
	}
}
