package ggml

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/model/gguf"
)

// differsFromLlamaQuantize lists the types whose quantizer without
// importance weights is not llama-quantize's: its blocks must differ from
// the golden (remove the entry when the quantizer is made to match).
var differsFromLlamaQuantize = map[string]string{
	"q3_k": "Grid.Encode(qw nil) runs quantize_row_q3_K_impl with weights x²; llama-quantize without an imatrix runs quantize_row_q3_K_ref",
	"q2_k": "Grid.Encode(qw nil) runs quantize_row_q2_K_impl with weights 1; llama-quantize without an imatrix runs quantize_row_q2_K_ref",
}

// TestRegistry is the GGUF-type registry's conformance suite (gonum's
// testblas style): every writable type must be a known ggml type whose
// name parses back, have a codec (floats, a grid or an encoder), fall back
// to a writable type with smaller blocks, encode the golden F16 tensor
// (testdata/attn_k.f16) into RowSize bytes that model/gguf dequantizes
// (for a grid, to exactly the values its codes and scales stand for) and,
// where testdata holds llama-quantize's blocks for the type
// (attn_k.<name>, testdata/README.md), match them byte for byte.
func TestRegistry(t *testing.T) {
	x := readF16(t, filepath.Join("testdata", "attn_k.f16"))
	const cols = 256
	seen := map[gguf.GGMLType]bool{}
	for _, r := range Types() {
		t.Run(r.Name(), func(t *testing.T) {
			if seen[r.Type] {
				t.Fatalf("%s listed twice", r.Type)
			}
			seen[r.Type] = true
			info, ok := r.Type.Info()
			if !ok {
				t.Fatalf("ggml type %d is not in model/gguf's table", r.Type)
			}
			if p, err := ParseType(r.Name()); err != nil || p.Type != r.Type {
				t.Fatalf("ParseType(%q) = %v, %v", r.Name(), p.Type, err)
			}
			g, gerr := LookupGrid(info.Name)
			_, eerr := Lookup(info.Name)
			switch {
			case r.Float() && r.Format:
				t.Fatal("a float type is not a GGML quantize format")
			case r.Format && gerr != nil:
				t.Fatalf("a quantize format needs a grid: %v", gerr)
			case !r.Float() && gerr != nil && eerr != nil:
				t.Fatalf("no codec: %v", errors.Join(gerr, eerr))
			}
			if fb, ok := LookupType(r.Fallback); !ok {
				t.Fatalf("fallback %s is not writable", r.Fallback)
			} else if fi, _ := fb.Type.Info(); fb.Type != gguf.TypeF16 && info.BlockSize%fi.BlockSize != 0 {
				t.Fatalf("fallback %s (block %d) does not divide the block %d", fb.Type, fi.BlockSize, info.BlockSize)
			}
			if r.FileType < -1 || r.FileType >= 0 && !r.Recipe {
				t.Fatalf("file type %d without a recipe", r.FileType)
			}

			b, err := EncodeValues(r.Type, x)
			if err != nil {
				t.Fatal(err)
			}
			if n, _ := r.Type.RowSize(int64(len(x))); int64(len(b)) != n {
				t.Fatalf("%d bytes, want %d", len(b), n)
			}
			y, err := gguf.Dequantize(r.Type, b, int64(len(x)))
			if err != nil {
				t.Fatalf("model/gguf cannot read it back: %v", err)
			}
			for i, v := range y {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					t.Fatalf("value %d reads back as %v", i, v)
				}
			}
			if g != nil {
				// the grid's model of the block: value = float32(D·Levels[c]) − M
				per := cols / g.Group
				d, m := make([]float32, per), make([]float32, per)
				codes := make([]uint8, cols)
				rb := g.RowBytes(cols)
				for row := 0; row < len(x)/cols; row++ {
					blk := b[row*rb : (row+1)*rb]
					g.Params(blk, d, m)
					g.Codes(blk, codes)
					for j, c := range codes {
						want := g.Value(c, d[j/g.Group], m[j/g.Group])
						if got := y[row*cols+j]; math.Float32bits(got) != math.Float32bits(want) {
							t.Fatalf("row %d col %d: model/gguf reads %v, the grid says %v", row, j, got, want)
						}
					}
				}
			}
			golden := filepath.Join("testdata", "attn_k."+r.Name())
			want, err := os.ReadFile(golden)
			if errors.Is(err, os.ErrNotExist) {
				t.Logf("no golden %s", golden)
				return
			} else if err != nil {
				t.Fatal(err)
			}
			if len(want) < len(b) {
				t.Fatalf("golden has %d bytes, want at least %d", len(want), len(b))
			}
			if why, ok := differsFromLlamaQuantize[r.Name()]; ok {
				if bytes.Equal(b, want[:len(b)]) {
					t.Fatalf("matches %s now: remove it from differsFromLlamaQuantize", golden)
				}
				t.Logf("differs from %s (known: %s)", golden, why)
				return
			}
			if !bytes.Equal(b, want[:len(b)]) {
				for i := range b {
					if b[i] != want[i] {
						t.Fatalf("byte %d differs from llama-quantize's (%s): %#x, want %#x", i, golden, b[i], want[i])
					}
				}
			}
		})
	}
	if n := strings.Join(TypeNames(), " "); !strings.Contains(n, "f16") {
		t.Fatalf("TypeNames() = %s lacks f16", n)
	}
}
