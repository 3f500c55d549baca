package llamacpp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/marlin-llm/marlin/internal/assets"
	"github.com/marlin-llm/marlin/model/gguf"
	"github.com/marlin-llm/marlin/model/hfconfig"
	"github.com/marlin-llm/marlin/model/safetensors"
	"github.com/marlin-llm/marlin/tensor"
)

// refHeader is ../shared/testdata/gguf/*.header.json: llama.cpp's converter
// output for the nano models (arrays shortened to array_len + first).
type refHeader struct {
	Version  int `json:"version"`
	Metadata map[string]struct {
		Type  int             `json:"type"`
		Value json.RawMessage `json:"value"`
	} `json:"metadata"`
	Tensors []struct {
		Name string `json:"name"`
		Dims []int  `json:"dims"`
		Type string `json:"type"`
	} `json:"tensors"`
	order []string
}

func loadRef(t *testing.T, path string) *refHeader {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var h refHeader
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	// Key order: decode the metadata object token by token.
	dec := json.NewDecoder(bytes.NewReader(b))
	depth := 0
	inMeta := false
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		switch v := tok.(type) {
		case json.Delim:
			if v == '{' || v == '[' {
				depth++
			} else {
				depth--
				if inMeta && depth == 1 {
					inMeta = false
				}
			}
		case string:
			if depth == 1 && v == "metadata" {
				inMeta = true
				continue
			}
			if inMeta && depth == 2 {
				h.order = append(h.order, v)
				// skip the value object
				var skip json.RawMessage
				if err := dec.Decode(&skip); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return &h
}

func planFor(t *testing.T, model, recipe string) *Plan {
	t.Helper()
	dir := assets.Model(t, model)
	cfg, err := hfconfig.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	ck, err := safetensors.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	p, err := NewPlan(cfg, dir, ck.Names(), func(n string) []int { i, _ := ck.Info(n); return i.Shape }, Options{Recipe: recipe})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestHeaderMatchesConverter compares our planned header with llama.cpp's
// converter output: keys, their order and types, tensor names, order,
// shapes and types. Values are compared too, except general.file_type
// where the reference was made with another recipe. For deepseek2 we add
// expert_gating_func = 2 (sigmoid), which the reference lacks and llama.cpp
// needs (see testdata/README.md).
func TestHeaderMatchesConverter(t *testing.T) {
	for _, tc := range []struct{ model, recipe, ref string }{
		{"qwen3-nano", "f16", "qwen3-nano-f16.header.json"},
		{"qwen3moe-nano", "q8_0", "qwen3moe-nano-q8_0.header.json"},
		{"glm47-nano", "q8_0", "glm47-nano-q8_0.header.json"},
	} {
		t.Run(tc.model, func(t *testing.T) {
			ref := loadRef(t, assets.Shared(t, "gguf", tc.ref))
			p := planFor(t, tc.model, tc.recipe)
			var keys []string
			got := map[string]gguf.Value{}
			for _, kv := range p.KVs {
				keys = append(keys, kv.Key)
				got[kv.Key] = kv.Value
			}
			want := append([]string(nil), ref.order...)
			if p.Arch == "deepseek2" {
				v, ok := got["deepseek2.expert_gating_func"]
				if !ok || v.V != uint32(2) {
					t.Fatalf("deepseek2.expert_gating_func = %v, want uint32 2", v.V)
				}
				// Insert it where llama.cpp's converter writes it.
				for i, k := range want {
					if k == "deepseek2.expert_weights_norm" {
						want = append(want[:i+1], append([]string{"deepseek2.expert_gating_func"}, want[i+1:]...)...)
						break
					}
				}
			}
			if !reflect.DeepEqual(keys, want) {
				t.Fatalf("keys differ:\n got %q\nwant %q", keys, want)
			}
			for _, k := range ref.order {
				r := ref.Metadata[k]
				v := got[k]
				if int(v.Type) != r.Type {
					t.Errorf("%s: type %v, want %d", k, v.Type, r.Type)
					continue
				}
				if k == "general.file_type" {
					continue
				}
				if v.Type == gguf.ValueArray {
					var arr struct {
						Len   int               `json:"array_len"`
						First []json.RawMessage `json:"first"`
					}
					if err := json.Unmarshal(r.Value, &arr); err != nil {
						t.Fatal(err)
					}
					if v.Len() != arr.Len {
						t.Errorf("%s: %d elements, want %d", k, v.Len(), arr.Len)
					}
					rv := reflect.ValueOf(v.V)
					for i, f := range arr.First {
						var w any
						if err := json.Unmarshal(f, &w); err != nil {
							t.Fatal(err)
						}
						if g := rv.Index(i).Interface(); !sameScalar(g, w) {
							t.Errorf("%s[%d] = %v, want %v", k, i, g, w)
						}
					}
					continue
				}
				var w any
				if err := json.Unmarshal(r.Value, &w); err != nil {
					t.Fatal(err)
				}
				if !sameScalar(v.V, w) {
					t.Errorf("%s = %v, want %v", k, v.V, w)
				}
			}
			if len(p.Tensors) != len(ref.Tensors) {
				t.Fatalf("%d tensors, want %d", len(p.Tensors), len(ref.Tensors))
			}
			for i, rt := range ref.Tensors {
				gt := p.Tensors[i]
				if gt.Name != rt.Name || !reflect.DeepEqual(gt.Dims, rt.Dims) || p.Types[i].String() != rt.Type {
					t.Errorf("tensor %d: %s %v %s, want %s %v %s", i, gt.Name, gt.Dims, p.Types[i], rt.Name, rt.Dims, rt.Type)
				}
			}
		})
	}
}

func sameScalar(g, w any) bool {
	switch x := g.(type) {
	case string:
		return x == w
	case bool:
		return x == w
	case uint32:
		f, ok := w.(float64)
		return ok && float64(x) == f
	case int32:
		f, ok := w.(float64)
		return ok && float64(x) == f
	case float32:
		f, ok := w.(float64)
		return ok && float32(f) == x
	}
	return fmt.Sprint(g) == fmt.Sprint(w)
}

// TestF16MatchesConverterFile exports qwen3-nano as F16 and compares the
// whole file's metadata (full token, type and merge arrays) and every
// tensor's bytes with llama.cpp's converter output.
func TestF16MatchesConverterFile(t *testing.T) {
	refPath := assets.Shared(t, "gguf", "qwen3-nano-f16.gguf")
	out := filepath.Join(t.TempDir(), "qwen3-nano-f16.gguf")
	if _, err := ExportDir(context.Background(), assets.Model(t, "qwen3-nano"), out, Options{Recipe: "f16"}); err != nil {
		t.Fatal(err)
	}
	ref, err := gguf.Open(refPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	got, err := gguf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if len(got.KVs) != len(ref.KVs) {
		t.Fatalf("%d keys, want %d", len(got.KVs), len(ref.KVs))
	}
	for i, kv := range ref.KVs {
		g := got.KVs[i]
		if g.Key != kv.Key || !reflect.DeepEqual(g.Value, kv.Value) {
			t.Errorf("kv %d: %s differs", i, kv.Key)
		}
	}
	for _, ti := range ref.Tensors {
		gi, ok := got.Info(ti.Name)
		if !ok || gi.Type != ti.Type || !reflect.DeepEqual(gi.Dims, ti.Dims) || gi.Offset != ti.Offset {
			t.Errorf("%s: info %+v, want %+v", ti.Name, gi, ti)
			continue
		}
		a, _ := got.TensorData(ti.Name)
		b, _ := ref.TensorData(ti.Name)
		if !bytes.Equal(a, b) {
			t.Errorf("%s: data differs", ti.Name)
		}
	}
}

// TestReadBackInvertsExport: every Hugging Face tensor read back from an
// F32 export (stacked experts, split kv_b) equals the checkpoint's values.
func TestReadBackInvertsExport(t *testing.T) {
	dir := assets.Model(t, "glm47-nano")
	out := filepath.Join(t.TempDir(), "glm-f32.gguf")
	p, err := ExportDir(context.Background(), dir, out, Options{Recipe: "f32"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ck, err := safetensors.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	rb := NewReadBack(f, p)
	for _, name := range ck.Names() {
		src, _ := ck.Tensor(name)
		want, _ := CheckpointSource{ck}.Float32(context.Background(), name)
		got, err := rb.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got.Shape, src.Shape) {
			t.Fatalf("%s: shape %v, want %v", name, got.Shape, src.Shape)
		}
		g, _ := tensor.ToFloat32(got)
		if !reflect.DeepEqual(g, want) {
			t.Fatalf("%s: values differ", name)
		}
	}
}
