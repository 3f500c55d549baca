package llamacpp

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/internal/assets"
	"github.com/marlin-llm/marlin/model/gguf"
	"github.com/marlin-llm/marlin/quant/ggml"
)

// TestGridBlocksReadBackInLlamaCpp writes qwen3-nano with every matrix in
// one of the GGML grid types (Q8_0 Q6_K Q5_K Q4_K Q4_0 Q3_K Q2_K IQ4_NL
// IQ4_XS, in turn), fitted with importance weights and then given codes
// that are not the nearest ones (as GPTQ's error feedback chooses them),
// and has llama-quantize --allow-requantize convert the file to F32: every
// tensor must come back bit-identical to our dequantization
// (model/gguf). llama-completion must then generate from the file.
func TestGridBlocksReadBackInLlamaCpp(t *testing.T) {
	if os.Getenv("MARLIN_SLOW") != "1" {
		t.Skip("MARLIN_SLOW=1 runs llama-quantize and llama-completion on every grid type (about 10 s)")
	}
	tools := llamaTools(t)
	src := assets.Shared(t, "gguf", "qwen3-nano-f16.gguf")
	ref, err := gguf.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	dir := t.TempDir()
	ours := filepath.Join(dir, "grids.gguf")
	w, err := gguf.Create(ours)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range ref.KVs {
		if kv.Key == "general.file_type" {
			continue
		}
		if err := w.AddKV(kv.Key, kv.Value); err != nil {
			t.Fatal(err)
		}
	}
	var types []string // the grid types of the GGUF-type registry
	for _, r := range ggml.Types() {
		if r.Format {
			types = append(types, r.Type.String())
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	data := map[string][]byte{}
	want := map[string]gguf.GGMLType{}
	k := 0
	for _, ti := range ref.Tensors {
		x, err := ref.Float32(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		typ := gguf.TypeF32
		var b []byte
		if len(ti.Dims) == 2 && ti.Dims[0]%256 == 0 {
			name := types[k%len(types)]
			k++
			g, err := ggml.LookupGrid(name)
			if err != nil {
				t.Fatal(err)
			}
			typ, _ = gguf.ParseType(name)
			cols := int(ti.Dims[0])
			qw := make([]float32, cols)
			for i := range qw {
				qw[i] = float32(rng.ExpFloat64())
			}
			b = make([]byte, g.RowBytes(len(x)))
			ng := cols / g.Group
			d, m := make([]float32, ng), make([]float32, ng)
			codes := make([]uint8, cols)
			rb := g.RowBytes(cols)
			for r := 0; r < len(x)/cols; r++ {
				row, xr := b[r*rb:(r+1)*rb], x[r*cols:(r+1)*cols]
				if err := g.Encode(row, xr, qw); err != nil {
					t.Fatal(err)
				}
				g.Params(row, d, m)
				for c, v := range xr {
					// a perturbed target: other codes than round-to-nearest
					codes[c], _ = g.Round(v*(1+0.2*float32(rng.NormFloat64())), d[c/g.Group], m[c/g.Group])
				}
				g.SetCodes(row, codes)
			}
		} else {
			b, err = EncodeValues(typ, x)
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := w.AddTensorInfo(ti.Name, typ, ti.Dims); err != nil {
			t.Fatal(err)
		}
		data[ti.Name], want[ti.Name] = b, typ
	}
	for _, ti := range ref.Tensors {
		if err := w.WriteTensorData(ti.Name, data[ti.Name]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f32 := filepath.Join(dir, "f32.gguf")
	if out, err := exec.Command(filepath.Join(tools, "llama-quantize"), "--allow-requantize", ours, f32, "F32", "2").CombinedOutput(); err != nil {
		t.Fatalf("llama-quantize: %v\n%s", err, tail(out))
	}
	back, err := gguf.Open(f32)
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	seen := map[gguf.GGMLType]int{}
	for _, ti := range ref.Tensors {
		typ := want[ti.Name]
		if typ == gguf.TypeF32 {
			continue
		}
		n := int64(1)
		for _, d := range ti.Dims {
			n *= int64(d)
		}
		mine, err := gguf.Dequantize(typ, data[ti.Name], n)
		if err != nil {
			t.Fatal(err)
		}
		theirs, err := back.Float32(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		if bi, _ := back.Info(ti.Name); bi.Type != gguf.TypeF32 {
			t.Fatalf("%s: llama-quantize wrote %s, want F32", ti.Name, bi.Type)
		}
		for i := range mine {
			if mine[i] != theirs[i] {
				t.Fatalf("%s (%s): element %d: ours %v, llama.cpp %v", ti.Name, typ, i, mine[i], theirs[i])
			}
		}
		seen[typ]++
	}
	if len(seen) != len(types) {
		t.Errorf("types checked %v, want all of %v", seen, types)
	}
	t.Logf("bit-identical in llama.cpp: %v", seen)
	if text := complete(t, ours); strings.TrimSpace(text) == "" {
		t.Error("llama-completion generated nothing")
	} else {
		t.Logf("llama-completion: %q", text)
	}
}
