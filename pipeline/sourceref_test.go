package pipeline

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/tensor"
)

// TestSourceReferences: a tensor marked with MetaSource is stored by
// reference (the blob stays small), read back byte for byte, and a changed
// source file is an error, not silently different weights.
func TestSourceReferences(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "model.bin")
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	const off, n = 4096, 64 << 10
	for _, tc := range []struct {
		name string
		sha  string // "" : the store hashes Data
	}{{"store hashes", ""}, {"loader hashed", sha256Hex(data[off : off+n])}} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := OpenStore(filepath.Join(t.TempDir(), "wd"), StoreOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			tt := &tensor.Tensor{Name: "w", DType: tensor.BF16, Shape: []int{64, 512}, Data: data[off : off+n],
				Meta: map[string]string{MetaSource: SourceRegion(src, off, n, tc.sha), "k": "v"}}
			e, err := st.Put("id-"+strings.ReplaceAll(tc.name, " ", ""), TaskRef{"load", "w"}, &Output{Tensors: []*tensor.Tensor{tt}}, 0)
			if err != nil {
				t.Fatal(err)
			}
			if e.Size > 8<<10 {
				t.Errorf("blob of %d bytes for a referenced tensor of %d", e.Size, n)
			}
			o, err := st.Get(e)
			if err != nil {
				t.Fatal(err)
			}
			g := o.Tensors[0]
			if string(g.Data) != string(data[off:off+n]) || g.DType != tensor.BF16 || len(g.Shape) != 2 || g.Meta["k"] != "v" || g.Meta[metaSourceRef] != "" {
				t.Fatalf("read back %s %v meta %v", g.DType, g.Shape, g.Meta)
			}
		})
	}
	// A changed source is refused.
	st, err := OpenStore(filepath.Join(t.TempDir(), "wd"), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tt := &tensor.Tensor{Name: "w", DType: tensor.U8, Shape: []int{n}, Data: data[off : off+n], Meta: map[string]string{MetaSource: SourceRegion(src, off, n, "")}}
	e, err := st.Put("id", TaskRef{"load", "w"}, &Output{Tensors: []*tensor.Tensor{tt}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	changed := append([]byte(nil), data...)
	changed[off+100]++
	if err := os.WriteFile(src, changed, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(e); err == nil || !strings.Contains(err.Error(), "changed since") {
		t.Errorf("changed source: %v", err)
	}
	if err := os.WriteFile(src, data[:off], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(e); err == nil {
		t.Error("truncated source read back")
	}
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
