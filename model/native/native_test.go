package native

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/marlin-llm/marlin/model/safetensors"
	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/tensor"
)

func randWeights(r *rand.Rand, n int) []float32 {
	w := make([]float32, n)
	for i := range w {
		w[i] = float32(r.NormFloat64()) * 0.05
	}
	return w
}

// TestRoundTrip packs weights of every format into a two-shard native
// checkpoint, loads them back and checks that dequantization equals
// quant's dequantization of the original Packed bit for bit.
func TestRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const rows, cols = 48, 256
	dir := t.TempDir()
	want := map[string][]float32{}
	var shards [2][]*tensor.Tensor
	i := 0
	for _, name := range quant.Names() {
		f, err := quant.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		w := randWeights(r, rows*cols)
		p, err := quant.Quantize(w, rows, cols, f, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if name == "int4_asym" { // act-order: a permuted group index
			p.GIdx = make([]int32, cols)
			for c := range p.GIdx {
				p.GIdx[c] = int32((c * 7 % cols) / f.GroupSize)
			}
		}
		wn := "model.layers." + strconv.Itoa(i) + ".mlp." + name + ".weight"
		deq := make([]float32, rows*cols)
		p.Dequantize(deq)
		want[wn] = deq
		extra := map[string]string{quant.MetaMethod: "rtn", quant.MetaShape: "48,256", "rotation.input": "hadamard(block=32)"}
		shards[i%2] = append(shards[i%2], p.ToTensors(wn, extra)...)
		i++
	}
	norm := &tensor.Tensor{Name: "model.norm.weight", DType: tensor.F32, Shape: []int{4}, Data: make([]byte, 16)}
	shards[1] = append(shards[1], norm)
	weightMap := map[string]string{}
	var total int64
	for s, ts := range shards {
		names, size, err := WriteShard(filepath.Join(dir, ShardName(s, 2)), ts)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			weightMap[n] = ShardName(s, 2)
		}
		total += size
	}
	if err := WriteIndex(dir, weightMap, total, Manifest{Source: "test", Weights: map[string]string{}, Shards: []string{ShardName(0, 2), ShardName(1, 2)}}); err != nil {
		t.Fatal(err)
	}
	m, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if got := m.Manifest(); got.Format != Format || got.Source != "test" {
		t.Errorf("manifest %+v", got)
	}
	if len(m.Names()) != len(want)+1 {
		t.Errorf("%d names, want %d", len(m.Names()), len(want)+1)
	}
	for name, deq := range want {
		p, err := m.Packed(name)
		if err != nil && m.IsPacked(name) {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := m.Float32(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for j := range deq {
			if math.Float32bits(got[j]) != math.Float32bits(deq[j]) {
				t.Fatalf("%s: value %d = %v, want %v", name, j, got[j], deq[j])
			}
		}
		if p != nil {
			tm, _ := m.Tensor(name)
			if tm.Meta["rotation.input"] != "hadamard(block=32)" || tm.Meta[quant.MetaMethod] != "rtn" {
				t.Errorf("%s: Meta not restored: %v", name, tm.Meta)
			}
		}
	}
	if m.IsPacked("model.norm.weight") {
		t.Error("norm reported as packed")
	}
	if _, err := m.Packed("model.norm.weight"); err == nil {
		t.Error("Packed of a plain tensor succeeded")
	}
}

func TestOpenRejectsForeignFiles(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "model.safetensors")
	tt := &tensor.Tensor{Name: "x", DType: tensor.F32, Shape: []int{1}, Data: make([]byte, 4)}
	if err := safetensors.WriteFile(p, []*tensor.Tensor{tt}, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err == nil {
		t.Fatal("opened a plain safetensors file as a native checkpoint")
	}
	if err := safetensors.WriteFile(p, []*tensor.Tensor{tt}, map[string]string{"format": Format, "marlin.version": "1", "marlin.tensors": "{bad"}); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err == nil {
		t.Fatal("opened a shard with corrupt marlin.tensors")
	}
}

// FuzzTensorMeta feeds arbitrary per-tensor Meta to the loader: Open and
// Packed must fail cleanly or succeed, never panic.
func FuzzTensorMeta(f *testing.F) {
	f.Add(`{"w":{"quant.format":"int4","quant.role":"codes","quant.rows":"2","quant.cols":"8","quant.group_size":"8","quant.scale":"f16"},"w.scales":{"quant.format":"int4","quant.role":"scales"}}`)
	f.Add(`{"w":{"quant.format":"mxfp4","quant.role":"codes","quant.rows":"99999999","quant.cols":"-1"}}`)
	f.Fuzz(func(t *testing.T, meta string) {
		dir := t.TempDir()
		ts := []*tensor.Tensor{
			{Name: "w", DType: tensor.U8, Shape: []int{2, 4}, Data: make([]byte, 8)},
			{Name: "w.scales", DType: tensor.F16, Shape: []int{2, 1}, Data: make([]byte, 4)},
		}
		if err := safetensors.WriteFile(filepath.Join(dir, "model.safetensors"), ts, map[string]string{"format": Format, "marlin.version": "1", "marlin.tensors": meta}); err != nil {
			t.Skip()
		}
		m, err := Open(dir)
		if err != nil {
			return
		}
		defer m.Close()
		for _, n := range m.Names() {
			_, _ = m.Float32(n)
		}
		os.RemoveAll(dir)
	})
}
