package gguf

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/internal/assets"
	"github.com/marlin-llm/marlin/model/safetensors"
	"github.com/marlin-llm/marlin/tensor"
)

// TestTypeTable compares block sizes with sizeof() of ggml's block structs
// (testdata/ggml_block_sizes.txt, printed by a C program including
// ggml-common.h).
func TestTypeTable(t *testing.T) {
	f, err := os.Open("testdata/ggml_block_sizes.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		var name string
		var bs, ts int
		if strings.HasPrefix(sc.Text(), "#") {
			continue
		}
		if _, err := fmt.Sscan(sc.Text(), &name, &bs, &ts); err != nil {
			t.Fatal(err)
		}
		typ, err := ParseType(name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		info, _ := typ.Info()
		if info.BlockSize != bs || info.TypeSize != ts {
			t.Errorf("%s: table has %d/%d, ggml %d/%d", name, info.BlockSize, info.TypeSize, bs, ts)
		}
		n++
	}
	if n < 25 {
		t.Errorf("only %d types checked", n)
	}
	if TypeMXFP4 != 39 || TypeBF16 != 30 || TypeQ4_K != 12 {
		t.Error("type ids drifted from ggml.h")
	}
}

// TestDequantGGMLReference compares with the outputs of ggml's own
// dequantize_row_* (testdata/dequant, made by testdata/gen_dequant.c from
// blocks quantized by ggml's reference quantizers plus random bit patterns).
func TestDequantGGMLReference(t *testing.T) {
	for _, name := range []string{"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "MXFP4", "IQ4_NL"} {
		t.Run(name, func(t *testing.T) {
			typ, _ := ParseType(name)
			info, _ := typ.Info()
			b, err := os.ReadFile(filepath.Join("testdata", "dequant", name+".bin"))
			if err != nil {
				t.Fatal(err)
			}
			nb := int(binary.LittleEndian.Uint32(b))
			blocks := b[4 : 4+nb*info.TypeSize]
			want := b[4+nb*info.TypeSize:]
			n := nb * info.BlockSize
			if len(want) != 4*n {
				t.Fatalf("reference has %d bytes for %d values", len(want), n)
			}
			got, err := Dequantize(typ, blocks, int64(n))
			if err != nil {
				t.Fatal(err)
			}
			bad := 0
			for i, g := range got {
				w := binary.LittleEndian.Uint32(want[4*i:])
				if math.Float32bits(g) != w {
					if bad++; bad < 5 {
						t.Errorf("element %d (block %d): %g (%#08x), ggml %g (%#08x)", i, i/info.BlockSize, g, math.Float32bits(g), math.Float32frombits(w), w)
					}
				}
			}
			if bad > 0 {
				t.Errorf("%d of %d elements differ", bad, n)
			}
		})
	}
}

// TestDequantKnownAnswers builds blocks by hand from the layouts in
// ggml-common.h and checks values computed on paper.
func TestDequantKnownAnswers(t *testing.T) {
	h := func(f float32) []byte { return binary.LittleEndian.AppendUint16(nil, tensor.F32ToF16(f)) }
	// Q4_0: d = 0.5; qs[0] = 0x9F: low nibble 15 → (15-8)*0.5 = 3.5 at y[0]; high 9 → 0.5 at y[16].
	q40 := append(h(0.5), make([]byte, 16)...)
	q40[2] = 0x9f
	y, _ := Dequantize(TypeQ4_0, q40, 32)
	if y[0] != 3.5 || y[16] != 0.5 || y[1] != -4 {
		t.Errorf("Q4_0: %v", y)
	}
	// Q8_0: d = 0.25, qs[3] = -128 → -32.
	q80 := append(h(0.25), make([]byte, 32)...)
	q80[2+3] = 0x80
	y, _ = Dequantize(TypeQ8_0, q80, 32)
	if y[3] != -32 || y[0] != 0 {
		t.Errorf("Q8_0: %v", y)
	}
	// MXFP4: e = 127 (scale 1): code 0x7 = 6, code 0xF = -6, code 0x1 = 0.5.
	mx := make([]byte, 17)
	mx[0] = 127
	mx[1] = 0xf7
	mx[2] = 0x01
	y, _ = Dequantize(TypeMXFP4, mx, 32)
	if y[0] != 6 || y[16] != -6 || y[1] != 0.5 || y[17] != 0 {
		t.Errorf("MXFP4: %v", y)
	}
	// E8M0 edge cases: 2^(e-128) including the subnormal results.
	for e, want := range map[uint8]float64{0: math.Ldexp(1, -128), 1: math.Ldexp(1, -127), 2: math.Ldexp(1, -126), 127: 0.5, 254: math.Ldexp(1, 126), 255: math.Ldexp(1, 127)} {
		if got := E8M0ToF32Half(e); float64(got) != want {
			t.Errorf("E8M0ToF32Half(%d) = %g, want %g", e, got, want)
		}
	}
	// Q4_K: d = 1, dmin = 0.5. Sub-block 0: scale 3, min 2 (bytes 0 and 4);
	// sub-block 5 (j>=4 path): scale = scales[9]&15 | (scales[1]>>6)<<4,
	// min = scales[9]>>4 | (scales[5]>>6)<<4. Choose scales[9] = 0x21,
	// scales[1] = 0x40 (scale1 = 0), scales[5] = 0x80 (min1 = 0):
	// scale5 = 1 | 1<<4 = 17, min5 = 2 | 2<<4 = 34.
	q4k := append(append(h(1), h(0.5)...), make([]byte, 12+128)...)
	sc := q4k[4:16]
	sc[0], sc[4], sc[9], sc[1], sc[5] = 3, 2, 0x21, 0x40, 0x80
	qs := q4k[16:]
	qs[0] = 0x05  // y[0] = 1*3*5 - 0.5*2 = 14
	qs[64] = 0x70 // sub-block 5 = high nibbles of qs[64:96]: y[160] = 17*7 - 0.5*34 = 102
	y, _ = Dequantize(TypeQ4_K, q4k, 256)
	if y[0] != 14 || y[160] != 102 || y[1] != -1 {
		t.Errorf("Q4_K: y[0]=%g y[160]=%g y[1]=%g", y[0], y[160], y[1])
	}
	// Q6_K: d = 2; scales[0] = -3; ql[0] = 0x0A, qh[0] = 0x02 → q = 10 | 2<<4 = 42 - 32 = 10 → 2*-3*10 = -60.
	q6k := make([]byte, 210)
	copy(q6k[208:], h(2))
	q6k[192] = 0xfd
	q6k[0], q6k[128] = 0x0a, 0x02
	y, _ = Dequantize(TypeQ6_K, q6k, 256)
	if y[0] != -60 || y[1] != 2*-3*-32 {
		t.Errorf("Q6_K: y[0]=%g y[1]=%g", y[0], y[1])
	}
	if _, err := Dequantize(TypeQ4_0, q40, 31); err == nil {
		t.Error("partial block accepted")
	}
	if _, err := Dequantize(TypeIQ2_XXS, make([]byte, 66), 256); err == nil {
		t.Error("unsupported type accepted")
	}
}

type headerJSON struct {
	Version  int `json:"version"`
	Metadata map[string]struct {
		Type  int             `json:"type"`
		Value json.RawMessage `json:"value"`
	} `json:"metadata"`
	Tensors []struct {
		Name   string   `json:"name"`
		Dims   []uint64 `json:"dims"`
		Type   string   `json:"type"`
		Offset uint64   `json:"offset"`
	} `json:"tensors"`
}

// jsonValue turns a decoded Value into what header.json shows: scalars, or
// {"array_len", "first" (up to 8)} for arrays.
func jsonValue(v Value) any {
	if v.Type != ValueArray {
		if f, ok := v.V.(float32); ok {
			return float64(f)
		}
		return v.V
	}
	rv := reflect.ValueOf(v.V)
	first := []any{}
	for i := 0; i < rv.Len() && i < 8; i++ {
		first = append(first, rv.Index(i).Interface())
	}
	return map[string]any{"array_len": rv.Len(), "first": first}
}

func equalJSON(a any, raw json.RawMessage) bool {
	ab, _ := json.Marshal(a)
	var x, y any
	json.Unmarshal(ab, &x)
	json.Unmarshal(raw, &y)
	return reflect.DeepEqual(x, y)
}

// hfName maps llama.cpp's qwen3 tensor names to the Hugging Face ones.
func hfName(g string) string {
	r := strings.NewReplacer(
		"token_embd", "model.embed_tokens", "output_norm", "model.norm",
		"attn_norm", "input_layernorm", "ffn_norm", "post_attention_layernorm",
		"attn_q_norm", "self_attn.q_norm", "attn_k_norm", "self_attn.k_norm",
		"attn_q.", "self_attn.q_proj.", "attn_k.", "self_attn.k_proj.", "attn_v.", "self_attn.v_proj.",
		"attn_output", "self_attn.o_proj", "ffn_gate", "mlp.gate_proj", "ffn_up", "mlp.up_proj", "ffn_down", "mlp.down_proj",
		"blk.", "model.layers.")
	return r.Replace(g)
}

func TestReadLlamaCppGGUF(t *testing.T) {
	f, err := Open(assets.Shared(t, "gguf", "qwen3-nano-f16.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var hj headerJSON
	assets.ReadJSON(t, assets.Shared(t, "gguf", "qwen3-nano-f16.header.json"), &hj)
	if int(f.Version) != hj.Version {
		t.Errorf("version %d, want %d", f.Version, hj.Version)
	}
	if len(f.KVs) != len(hj.Metadata) {
		t.Errorf("%d metadata keys, header.json has %d", len(f.KVs), len(hj.Metadata))
	}
	for key, want := range hj.Metadata {
		v, ok := f.KV(key)
		if !ok {
			t.Errorf("missing key %s", key)
			continue
		}
		if int(v.Type) != want.Type || !equalJSON(jsonValue(v), want.Value) {
			t.Errorf("%s: %s %v, want type %d %s", key, v.Type, jsonValue(v), want.Type, want.Value)
		}
	}
	if len(f.Tensors) != len(hj.Tensors) {
		t.Fatalf("%d tensors, header.json has %d", len(f.Tensors), len(hj.Tensors))
	}
	ck, err := safetensors.Open(assets.Model(t, "qwen3-nano"))
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	for i, want := range hj.Tensors {
		ti := f.Tensors[i]
		if ti.Name != want.Name || !reflect.DeepEqual(ti.Dims, want.Dims) || ti.Type.String() != want.Type || ti.Offset != want.Offset {
			t.Errorf("tensor %d: %s %v %s @%d, want %s %v %s @%d", i, ti.Name, ti.Dims, ti.Type, ti.Offset, want.Name, want.Dims, want.Type, want.Offset)
			continue
		}
		// Every tensor equals the BF16 checkpoint tensor converted to the
		// GGUF type (F16 round to nearest even; F32 exact).
		src, err := ck.Tensor(hfName(ti.Name))
		if err != nil {
			t.Errorf("%s: %v", ti.Name, err)
			continue
		}
		if !reflect.DeepEqual(DimsFromShape(src.Shape), ti.Dims) {
			t.Errorf("%s: checkpoint shape %v vs dims %v", ti.Name, src.Shape, ti.Dims)
			continue
		}
		vals, _ := tensor.ToFloat32(src)
		var wantBytes []byte
		switch ti.Type {
		case TypeF16:
			c, _ := tensor.FromFloat32(ti.Name, tensor.F16, src.Shape, vals)
			wantBytes = c.Data
		case TypeF32:
			c, _ := tensor.FromFloat32(ti.Name, tensor.F32, src.Shape, vals)
			wantBytes = c.Data
		default:
			t.Errorf("%s: unexpected type %s", ti.Name, ti.Type)
			continue
		}
		got, _ := f.TensorData(ti.Name)
		if !bytes.Equal(got, wantBytes) {
			t.Errorf("%s: data differs from the converted checkpoint", ti.Name)
		}
	}
}

// TestRewriteLlamaCppGGUF copies the reference file through Writer and
// expects the very same bytes back, then re-reads the copy.
func TestRewriteLlamaCppGGUF(t *testing.T) {
	path := assets.Shared(t, "gguf", "qwen3-nano-f16.gguf")
	src, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	out := filepath.Join(t.TempDir(), "copy.gguf")
	w, err := Create(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range src.KVs {
		if err := w.AddKV(kv.Key, kv.Value); err != nil {
			t.Fatal(err)
		}
	}
	for _, ti := range src.Tensors {
		if err := w.AddTensorInfo(ti.Name, ti.Type, ti.Dims); err != nil {
			t.Fatal(err)
		}
	}
	for _, ti := range src.Tensors {
		data, _ := src.TensorData(ti.Name)
		// Write in two chunks to exercise streaming.
		half := len(data) / 2
		if err := w.WriteTensorData(ti.Name, data[:half]); err != nil {
			t.Fatal(err)
		}
		if err := w.WriteTensorData(ti.Name, data[half:]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(path)
	b, _ := os.ReadFile(out)
	if !bytes.Equal(a, b) {
		t.Errorf("rewritten file differs (%d vs %d bytes)", len(b), len(a))
	}
	cp, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	if !reflect.DeepEqual(cp.KVs, src.KVs) || !reflect.DeepEqual(cp.Tensors, src.Tensors) {
		t.Error("re-read metadata or tensor infos differ")
	}
}

// TestWriteAllValueTypes round-trips every metadata type, arrays of each,
// an alignment change and quantized tensors.
func TestWriteAllValueTypes(t *testing.T) {
	kvs := []KV{}
	add := func(k string, v any) {
		val, err := ValueOf(v)
		if err != nil {
			t.Fatal(err)
		}
		kvs = append(kvs, KV{k, val})
	}
	add(KeyAlignment, uint32(64))
	add("u8", uint8(200))
	add("i8", int8(-100))
	add("u16", uint16(65000))
	add("i16", int16(-30000))
	add("u32", uint32(4e9))
	add("i32", int32(-2e9))
	add("f32", float32(1.5e-7))
	add("b", true)
	add("s", "héllo\x00world")
	add("u64", uint64(1<<63+5))
	add("i64", int64(-1<<62))
	add("f64", math.Pi)
	add("au8", []uint8{1, 2})
	add("ai8", []int8{-1})
	add("au16", []uint16{7})
	add("ai16", []int16{-7})
	add("au32", []uint32{9, 10})
	add("ai32", []int32{-9})
	add("af32", []float32{float32(math.Inf(1))})
	add("ab", []bool{true, false})
	add("as", []string{"", "x", "ÿ"})
	add("au64", []uint64{})
	add("ai64", []int64{math.MinInt64})
	add("af64", []float64{math.Copysign(0, -1)})
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, kv := range kvs {
		if err := w.AddKV(kv.Key, kv.Value); err != nil {
			t.Fatal(err)
		}
	}
	q := make([]byte, 2*144)
	for i := range q {
		q[i] = byte(i * 7)
	}
	tensors := []struct {
		name string
		typ  GGMLType
		dims []uint64
		data []byte
	}{
		{"q", TypeQ4_K, []uint64{256, 2}, q},
		{"empty", TypeF32, []uint64{0}, nil},
		{"x", TypeF16, []uint64{3}, []byte{1, 2, 3, 4, 5, 6}},
		{"m", TypeMXFP4, []uint64{32}, make([]byte, 17)},
	}
	for _, tt := range tensors {
		if err := w.AddTensorInfo(tt.name, tt.typ, tt.dims); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range tensors {
		if err := w.WriteTensorData(tt.name, tt.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := Read(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if f.Alignment != 64 || f.DataOffset%64 != 0 {
		t.Errorf("alignment %d, data at %d", f.Alignment, f.DataOffset)
	}
	if len(f.KVs) != len(kvs) {
		t.Fatalf("%d kvs", len(f.KVs))
	}
	for i, kv := range kvs {
		got := f.KVs[i]
		if got.Key != kv.Key || got.Value.Type != kv.Value.Type || got.Value.Elem != kv.Value.Elem ||
			fmt.Sprintf("%#v", got.Value.V) != fmt.Sprintf("%#v", kv.Value.V) {
			t.Errorf("kv %s: got %#v, want %#v", kv.Key, got.Value, kv.Value)
		}
	}
	for _, tt := range tensors {
		ti, ok := f.Info(tt.name)
		if !ok || ti.Offset%64 != 0 || ti.Type != tt.typ {
			t.Errorf("%s: %+v", tt.name, ti)
		}
		d, _ := f.TensorData(tt.name)
		if !bytes.Equal(d, tt.data) {
			t.Errorf("%s: data %v", tt.name, d)
		}
	}
	qt, err := f.Tensor("q")
	if err != nil || qt.DType != tensor.U8 || !reflect.DeepEqual(qt.Shape, []int{2, 144}) || qt.Meta["ggml_type"] != "Q4_K" {
		t.Errorf("quantized tensor view: %+v %v", qt, err)
	}
	xt, _ := f.Tensor("x")
	if xt.DType != tensor.F16 || !reflect.DeepEqual(xt.Shape, []int{3}) {
		t.Errorf("f16 view %+v", xt)
	}
}

func TestWriterMisuse(t *testing.T) {
	w := NewWriter(&bytes.Buffer{})
	if err := w.AddKV("x", 3); err == nil {
		t.Error("plain int accepted")
	}
	if err := w.AddKV(KeyAlignment, uint32(48)); err == nil {
		t.Error("alignment 48 accepted")
	}
	if err := w.AddKV("v", Value{Type: ValueUint32, V: "s"}); err == nil {
		t.Error("mistyped Value accepted")
	}
	w.AddKV("a", uint8(1))
	if err := w.AddKV("a", uint8(1)); err == nil {
		t.Error("duplicate key accepted")
	}
	if err := w.AddTensorInfo("t", TypeQ4_0, []uint64{31}); err == nil {
		t.Error("partial block accepted")
	}
	if err := w.AddTensorInfo("t", TypeF32, []uint64{1, 1, 1, 1, 1}); err == nil {
		t.Error("5 dims accepted")
	}
	w.AddTensorInfo("t", TypeF32, []uint64{2})
	w.AddTensorInfo("u", TypeF32, []uint64{1})
	if err := w.WriteTensorData("u", make([]byte, 4)); err == nil {
		t.Error("out of order accepted")
	}
	if err := w.WriteTensorData("t", make([]byte, 12)); err == nil {
		t.Error("overlong data accepted")
	}
	w.WriteTensorData("t", make([]byte, 8))
	if err := w.Close(); err == nil {
		t.Error("incomplete file closed without error")
	}
	dir := t.TempDir()
	cw, _ := Create(filepath.Join(dir, "x.gguf"))
	cw.AddTensorInfo("t", TypeF32, []uint64{2})
	if err := cw.Close(); err == nil {
		t.Error("missing data accepted")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("left %v behind", ents)
	}
}

// gg builds raw GGUF bytes.
type gg struct{ bytes.Buffer }

func (g *gg) u32(v uint32) *gg { binary.Write(g, binary.LittleEndian, v); return g }
func (g *gg) u64(v uint64) *gg { binary.Write(g, binary.LittleEndian, v); return g }
func (g *gg) s(v string) *gg   { g.u64(uint64(len(v))); g.WriteString(v); return g }
func hdr(nt, nkv uint64) *gg {
	g := &gg{}
	g.WriteString("GGUF")
	return g.u32(3).u64(nt).u64(nkv)
}

func TestHostileFiles(t *testing.T) {
	pad := func(g *gg, n int) []byte { return append(g.Bytes(), make([]byte, n)...) }
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "magic"},
		{"bad magic", []byte("GGML\x03\x00\x00\x00"), "magic"},
		{"version 1", (&gg{Buffer: *bytes.NewBufferString("GGUF")}).u32(1).u64(0).u64(0).Bytes(), "version"},
		{"truncated counts", []byte("GGUF\x03\x00\x00\x00\x01"), "tensor count"},
		{"1e9 kvs", pad(hdr(0, 1e9), 64), "cannot fit"},
		{"2^63 tensors", pad(hdr(1<<63, 0), 64), "cannot fit"},
		{"huge key length", pad(hdr(0, 1).u64(1<<62), 16), "need"},
		{"empty key", pad(hdr(0, 1).s("").u32(0), 8), "empty key"},
		{"bad value type", pad(hdr(0, 1).s("k").u32(13), 8), "invalid value type"},
		{"huge array", pad(hdr(0, 1).s("k").u32(9).u32(4).u64(1<<60), 8), "cannot fit"},
		{"huge string array", pad(hdr(0, 1).s("k").u32(9).u32(8).u64(1<<40), 8), "cannot fit"},
		{"nested array", pad(hdr(0, 1).s("k").u32(9).u32(9).u64(1), 8), "nested"},
		{"alignment type", pad(hdr(0, 1).s(KeyAlignment).u32(10).u64(32), 8), "must be uint32"},
		{"alignment zero", pad(hdr(0, 1).s(KeyAlignment).u32(4).u32(0), 8), "power of two"},
		{"5 dims", pad(hdr(1, 0).s("t").u32(5), 64), "dimensions"},
		{"negative dim", pad(hdr(1, 0).s("t").u32(1).u64(1<<63).u32(0).u64(0), 64), "negative"},
		{"overflow dims", pad(hdr(1, 0).s("t").u32(2).u64(1<<40).u64(1<<40).u32(0).u64(0), 64), "overflow"},
		{"unknown type", pad(hdr(1, 0).s("t").u32(1).u64(1).u32(4).u64(0), 64), "unknown ggml type"},
		{"partial block", pad(hdr(1, 0).s("t").u32(1).u64(31).u32(2).u64(0), 64), "block size"},
		{"offset past EOF", pad(hdr(1, 0).s("t").u32(1).u64(1<<20).u32(0).u64(0), 64), "past the end"},
		{"misplaced offset", pad(hdr(1, 0).s("t").u32(1).u64(1).u32(0).u64(32), 128), "expected 0"},
		{"duplicate tensor", pad(hdr(2, 0).s("t").u32(1).u64(1).u32(0).u64(0).s("t").u32(1).u64(1).u32(0).u64(32), 128), "duplicate tensor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := totalAlloc()
			_, err := Read(tc.b)
			if d := totalAlloc() - before; d > 1<<20 {
				t.Errorf("allocated %d bytes", d)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v does not mention %q", err, tc.want)
			}
		})
	}
	// Duplicate keys, built properly.
	g := hdr(0, 2).s("k").u32(0)
	g.WriteByte(1)
	g.s("k").u32(0)
	g.WriteByte(2)
	if _, err := Read(g.Bytes()); err == nil || !strings.Contains(err.Error(), "duplicate metadata key") {
		t.Errorf("duplicate key: %v", err)
	}
}

func FuzzRead(f *testing.F) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.AddKV("general.architecture", "qwen3")
	w.AddKV("a", []string{"x", "y"})
	w.AddKV("n", uint32(7))
	w.AddKV("f", []float32{1, 2})
	w.AddTensorInfo("t", TypeQ8_0, []uint64{32, 2})
	w.AddTensorInfo("u", TypeF16, []uint64{4})
	w.WriteTensorData("t", make([]byte, 68))
	w.WriteTensorData("u", make([]byte, 8))
	w.Close()
	f.Add(buf.Bytes())
	f.Add(hdr(0, 1).s("k").u32(9).u32(8).u64(3).s("a").s("b").Bytes())
	f.Add([]byte("GGUF"))
	f.Add(hdr(1, 1).s(KeyAlignment).u32(4).u32(64).s("t").u32(2).u64(32).u64(1).u32(uint32(TypeMXFP4)).u64(0).Bytes())
	f.Add(append(hdr(1, 0).s("t").u32(1).u64(256).u32(uint32(TypeQ6_K)).u64(0).Bytes(), make([]byte, 256)...))
	f.Add(hdr(0, 2).s("b").u32(9).u32(7).u64(2).Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		before := totalAlloc()
		g, err := Read(b)
		if d := totalAlloc() - before; d > 1<<20+512*uint64(len(b)) {
			t.Fatalf("parsing %d bytes allocated %d bytes", len(b), d)
		}
		if err != nil {
			return
		}
		for _, ti := range g.Tensors {
			d, err := g.TensorData(ti.Name)
			if err != nil || uint64(len(d)) != ti.Size {
				t.Fatalf("%s: %v", ti.Name, err)
			}
			if CanDequantize(ti.Type) && ti.NumElements() < 1<<16 {
				if _, err := g.Float32(ti.Name); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := g.Tensor(ti.Name); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// totalAlloc is the cumulative heap allocation of the process.
func totalAlloc() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.TotalAlloc
}

// TestDequantParallel checks that the multi-core split gives the same
// result as one block at a time.
func TestDequantParallel(t *testing.T) {
	const blocks = 3*parallelBlocks + 5
	src := make([]byte, blocks*144)
	for i := range src {
		src[i] = byte(i*131 + i>>9)
	}
	for i := 0; i < blocks; i++ { // keep the f16 scales finite
		src[i*144+1] &= 0x3b
		src[i*144+3] &= 0x3b
	}
	got, err := Dequantize(TypeQ4_K, src, blocks*256)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]float32, 256)
	for i := 0; i < blocks; i++ {
		dequantQ4_K(want, src[i*144:(i+1)*144])
		for j, w := range want {
			if math.Float32bits(got[i*256+j]) != math.Float32bits(w) {
				t.Fatalf("block %d element %d: %g, want %g", i, j, got[i*256+j], w)
			}
		}
	}
}

func TestIsFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		path string
		want bool
	}{
		{write("ok.gguf", Magic+"\x03\x00\x00\x00"), true},
		{write("short", "GGU"), false},
		{write("other", "PK\x03\x04"), false},
		{dir, false},
		{filepath.Join(dir, "missing"), false},
	} {
		if got := IsFile(c.path); got != c.want {
			t.Errorf("IsFile(%s) = %v, want %v", c.path, got, c.want)
		}
	}
}
