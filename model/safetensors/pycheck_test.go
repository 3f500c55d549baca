package safetensors

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/marlin-llm/marlin/internal/assets"
	"github.com/marlin-llm/marlin/tensor"
)

// TestWritePythonCheckFiles writes the files that testdata/pycheck.py
// verifies with Python's safetensors and PyTorch on the device machine
// (MARLIN_PYCHECK_DIR=dir go test -run PythonCheck ./model/safetensors).
func TestWritePythonCheckFiles(t *testing.T) {
	dir := os.Getenv("MARLIN_PYCHECK_DIR")
	if dir == "" {
		t.Skip("set MARLIN_PYCHECK_DIR to write the Python cross-check files")
	}
	manifest := map[string]map[string]any{}
	record := func(file string, ts []*tensor.Tensor, md map[string]string) {
		entries := map[string]any{}
		for _, tt := range ts {
			h := sha256.Sum256(tt.Data)
			entries[tt.Name] = map[string]any{"dtype": tt.DType.String(), "shape": tt.Shape, "sha256": hex.EncodeToString(h[:])}
		}
		manifest[file] = map[string]any{"tensors": entries, "metadata": md}
		if err := WriteFile(filepath.Join(dir, file), ts, md); err != nil {
			t.Fatal(err)
		}
	}
	// A real sharded checkpoint rewritten as one file.
	ck, err := Open(assets.Model(t, "qwen3moe-nano"))
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	var ts []*tensor.Tensor
	for _, n := range ck.Names() {
		tt, _ := ck.Tensor(n)
		ts = append(ts, tt)
	}
	SortForAlignment(ts)
	record("qwen3moe.safetensors", ts, map[string]string{"format": "pt"})

	// Every dtype, odd sizes (so later tensors start unaligned), a scalar,
	// an empty tensor, unicode names and metadata.
	raw := func(name string, dt tensor.DType, shape []int) *tensor.Tensor {
		tt := &tensor.Tensor{Name: name, DType: dt, Shape: shape}
		n := tt.NumElements() * dt.Size()
		tt.Data = make([]byte, n)
		for i := range tt.Data {
			tt.Data[i] = byte(i*37 + len(name))
		}
		if dt == tensor.Bool {
			for i := range tt.Data {
				tt.Data[i] &= 1
			}
		}
		return tt
	}
	mixed := []*tensor.Tensor{
		raw("u8", tensor.U8, []int{3}),
		raw("bf16", tensor.BF16, []int{3, 5}),
		raw("f32 ünï", tensor.F32, []int{7}),
		raw("f64", tensor.F64, []int{2, 1, 3}),
		raw("f16", tensor.F16, []int{5}),
		raw("e4m3", tensor.F8E4M3, []int{9}),
		raw("e5m2", tensor.F8E5M2, []int{4}),
		raw("i64", tensor.I64, []int{2}),
		raw("i32", tensor.I32, []int{3}),
		raw("i16", tensor.I16, []int{3}),
		raw("i8", tensor.I8, []int{5}),
		raw("bool", tensor.Bool, []int{6}),
		raw("u16", tensor.U16, []int{3}),
		raw("u32", tensor.U32, []int{1}),
		raw("u64", tensor.U64, []int{2}),
		raw("scalar", tensor.F32, []int{}),
		raw("empty", tensor.BF16, []int{0, 4}),
	}
	record("mixed.safetensors", mixed, map[string]string{"quote\"key": "välue <&>", "format": "pt"})

	// Conversion cross-check: float32 inputs (bit patterns) and our
	// BF16/F16/E4M3/E5M2 encodings, compared with torch's casts.
	var in []uint32
	for _, f := range []float64{0, 1, -1, 0.1, 1.0 / 3, 65504, 65520, 448, 464, 480, 57344, 61440, 1e-8, 6e-8, 2e-3, 1.5e-5, math.Ldexp(1, -9), math.Ldexp(1, -10), math.Ldexp(3, -10), math.Ldexp(1, -16), math.Ldexp(1, -17)} {
		in = append(in, math.Float32bits(float32(f)), math.Float32bits(float32(-f)))
	}
	in = append(in, 0x3f808000, 0x3f818000, 0x3f800001, 0x3f807fff, 0x7f7fffff, 0x00000001, 0x00800000, 0x7f800000, 0xff800000, 0x7fc00000)
	for i := range 4000 { // pseudo-random bit patterns over the interesting exponents
		x := uint32(i)*2654435761 + 12345
		exp := 100 + (x>>8)%50
		in = append(in, x&0x807fffff|exp<<23)
	}
	enc := map[string][]uint32{"bf16": nil, "f16": nil, "e4m3": nil, "e5m2": nil}
	for _, b := range in {
		f := math.Float32frombits(b)
		enc["bf16"] = append(enc["bf16"], uint32(tensor.F32ToBF16(f)))
		enc["f16"] = append(enc["f16"], uint32(tensor.F32ToF16(f)))
		enc["e4m3"] = append(enc["e4m3"], uint32(tensor.F32ToE4M3(f)))
		enc["e5m2"] = append(enc["e5m2"], uint32(tensor.F32ToE5M2(f)))
	}
	conv := map[string]any{"f32_bits": in, "ours": enc}
	for name, v := range map[string]any{"manifest.json": manifest, "conv.json": conv} {
		b, _ := json.MarshalIndent(v, "", " ")
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
