package safetensors

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/internal/assets"
	"github.com/marlin-llm/marlin/tensor"
)

func TestWriteRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.safetensors")
	a, _ := tensor.FromFloat32("a", tensor.F32, []int{2, 2}, []float32{1, 2, 3, 4})
	b, _ := tensor.FromFloat32("b.weight", tensor.BF16, []int{3}, []float32{-1, 0.5, 7})
	c := &tensor.Tensor{Name: "empty", DType: tensor.I32, Shape: []int{0, 4}, Data: nil}
	d := &tensor.Tensor{Name: "scalar", DType: tensor.U8, Shape: []int{}, Data: []byte{9}}
	in := []*tensor.Tensor{a, b, c, d}
	md := map[string]string{"format": "pt", "quote\"key": "v<>&"}
	if err := WriteFile(path, in, md); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := binary.LittleEndian.Uint64(raw); (8+n)%8 != 0 {
		t.Errorf("data section starts at %d, not 8-aligned", 8+n)
	}
	// The header is valid JSON on its own.
	var anyHdr map[string]any
	if err := json.Unmarshal(raw[8:8+binary.LittleEndian.Uint64(raw)], &anyHdr); err != nil {
		t.Fatal(err)
	}
	ck, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	if got := strings.Join(ck.Names(), ","); got != "a,b.weight,empty,scalar" {
		t.Errorf("names %s", got)
	}
	if ck.Metadata()["quote\"key"] != "v<>&" || ck.Metadata()["format"] != "pt" {
		t.Errorf("metadata %v", ck.Metadata())
	}
	for _, want := range in {
		got, err := ck.Tensor(want.Name)
		if err != nil {
			t.Fatal(err)
		}
		if got.DType != want.DType || len(got.Shape) != len(want.Shape) || !bytes.Equal(got.Data, want.Data) {
			t.Errorf("%s: got %s%v %x, want %s%v %x", want.Name, got.DType, got.Shape, got.Data, want.DType, want.Shape, want.Data)
		}
	}
	// No temp files remain.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("dir has %d entries", len(ents))
	}
}

// TestRewriteSharedModel writes a shared checkpoint back out and checks the
// copy reads back byte-identical.
func TestRewriteSharedModel(t *testing.T) {
	src, err := Open(assets.Model(t, "qwen3moe-nano"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var ts []*tensor.Tensor
	for _, n := range src.Names() {
		tt, err := src.Tensor(n)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, tt)
	}
	SortForAlignment(ts)
	out := filepath.Join(t.TempDir(), "m.safetensors")
	if err := WriteFile(out, ts, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	dst, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	for _, n := range src.Names() {
		a, _ := src.Tensor(n)
		b, err := dst.Tensor(n)
		if err != nil || !bytes.Equal(a.Data, b.Data) {
			t.Fatalf("%s differs: %v", n, err)
		}
	}
}

func TestWriterMisuse(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.safetensors")
	infos := []TensorInfo{{Name: "a", DType: tensor.F32, Shape: []int{2}}, {Name: "b", DType: tensor.U8, Shape: []int{3}}}
	if _, err := Create(p, nil, append(infos, TensorInfo{Name: "a", DType: tensor.U8})); err == nil {
		t.Error("duplicate accepted")
	}
	if _, err := Create(p, nil, []TensorInfo{{Name: "n", DType: tensor.U8, Shape: []int{-1}}}); err == nil {
		t.Error("negative dim accepted")
	}
	w, err := Create(p, nil, infos)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteTensor("b", []byte{1, 2, 3}); err == nil {
		t.Error("out-of-order write accepted")
	}
	if err := w.WriteTensor("a", make([]byte, 8)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err == nil {
		t.Error("close with a missing tensor accepted")
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Error("incomplete file was renamed into place")
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 0 {
		t.Errorf("temp file left behind: %v", ents)
	}
	// Streaming through Write across tensor boundaries.
	w, err = Create(p, nil, infos)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte{0, 0, 128, 63, 0, 0, 0, 64, 7, 8}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte{9, 10}); err == nil {
		t.Error("overlong write accepted")
	}
	w, _ = Create(p, nil, infos)
	w.Write([]byte{0, 0, 128, 63, 0, 0, 0, 64, 7, 8, 9})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	ck, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	bt, _ := ck.Tensor("b")
	if !bytes.Equal(bt.Data, []byte{7, 8, 9}) {
		t.Errorf("b = %v", bt.Data)
	}
}

// file builds a safetensors file from a raw header and data.
func file(hdr string, data []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint64(len(hdr)))
	b.WriteString(hdr)
	b.Write(data)
	return b.Bytes()
}

func TestHostileFiles(t *testing.T) {
	huge := make([]byte, 8)
	binary.LittleEndian.PutUint64(huge, 1<<62)
	big := make([]byte, 8)
	binary.LittleEndian.PutUint64(big, MaxHeaderSize+1)
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "too short"},
		{"header size 2^62", huge, "exceeds"},
		{"header size over cap", big, "exceeds"},
		{"header past EOF", file("", nil)[:0:0], "too short"},
		{"header size past EOF", append([]byte{100, 0, 0, 0, 0, 0, 0, 0}, "{}"...), "past the end"},
		{"not json", file("nope", nil), "header"},
		{"array", file("[]", nil), "JSON object"},
		{"trailing", file(`{} {}`, nil), "trailing"},
		{"duplicate", file(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, []byte{1, 2}), "duplicate"},
		{"offset past EOF", file(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}`, []byte{1, 2}), "past the end"},
		{"overlap", file(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}`, []byte{1, 2, 3}), "overlap"},
		{"negative dim", file(`{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}}`, nil), "negative"},
		{"negative offset", file(`{"a":{"dtype":"U8","shape":[0],"data_offsets":[-4,-4]}}`, nil), "bad data_offsets"},
		{"overflowing dims", file(`{"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,0]}}`, nil), "too large"},
		{"int64 overflow dim", file(`{"a":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,0]}}`, nil), "header"},
		{"float dim", file(`{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,0]}}`, nil), "header"},
		{"length mismatch", file(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, make([]byte, 8)), "needs 8 bytes"},
		{"unknown dtype", file(`{"a":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}}`, make([]byte, 1)), "unsupported dtype"},
		{"offsets arity", file(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0]}}`, make([]byte, 1)), "2 entries"},
		{"missing shape", file(`{"a":{"dtype":"U8","data_offsets":[0,1]}}`, make([]byte, 1)), "missing shape"},
		{"bad metadata", file(`{"__metadata__":{"a":1}}`, nil), "__metadata__"},
		{"huge shape text", file(`{"a":{"dtype":"U8","shape":[`+strings.Repeat("0,", 10000)+`0],"data_offsets":[0,0]}}`, nil), "too long"},
		{"too many dims", file(`{"a":{"dtype":"U8","shape":[`+strings.Repeat("1,", 100)+`1],"data_offsets":[0,1]}}`, make([]byte, 1)), "dimensions"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "bad.safetensors")
			if err := os.WriteFile(p, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			c, err := Open(p)
			if err == nil {
				c.Close()
				t.Fatalf("opened a hostile file")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestHostileShards(t *testing.T) {
	mk := func(t *testing.T, index string, shards map[string][]byte) string {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, IndexFile), []byte(index), 0o644)
		for n, b := range shards {
			os.WriteFile(filepath.Join(dir, n), b, 0o644)
		}
		return dir
	}
	one := file(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, []byte{1})
	two := file(`{"b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, []byte{2})
	for _, tc := range []struct {
		name, index string
		shards      map[string][]byte
		want        string
	}{
		{"ok", `{"metadata":{"total_size":2},"weight_map":{"a":"s1","b":"s2"}}`, map[string][]byte{"s1": one, "s2": two}, ""},
		{"traversal", `{"weight_map":{"a":"../s1"}}`, nil, "plain file name"},
		{"missing shard", `{"weight_map":{"a":"s1","b":"s3"}}`, map[string][]byte{"s1": one}, "no such file"},
		{"not in shard", `{"weight_map":{"a":"s1","c":"s1","b":"s2"}}`, map[string][]byte{"s1": one, "s2": two}, `maps "c"`},
		{"unlisted tensor", `{"weight_map":{"a":"s1"}}`, map[string][]byte{"s1": file(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"z":{"dtype":"U8","shape":[0],"data_offsets":[1,1]}}`, []byte{1})}, `holds "z"`},
		{"wrong shard", `{"weight_map":{"a":"s2","b":"s1"}}`, map[string][]byte{"s1": one, "s2": two}, "maps to"},
		{"dup in two shards", `{"weight_map":{"a":"s1"}}`, map[string][]byte{"s1": one}, ""},
		{"dup key", `{"weight_map":{"a":"s1","a":"s1"}}`, map[string][]byte{"s1": one}, "duplicate"},
		{"no weight_map", `{"metadata":{}}`, nil, "missing weight_map"},
		{"garbage", `{"weight_map":[1]}`, nil, "weight_map"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Open(mk(t, tc.index, tc.shards))
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				c.Close()
				return
			}
			if err == nil {
				c.Close()
				t.Fatal("opened a hostile checkpoint")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func FuzzParseHeader(f *testing.F) {
	f.Add([]byte(`{"__metadata__":{"format":"pt"},"a":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[],"data_offsets":[8,12]}}`), int64(12))
	f.Add([]byte(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}`), int64(3))
	f.Add([]byte(`{"a":{"dtype":"F8_E4M3","shape":[4294967296,4294967296],"data_offsets":[0,0]}}`), int64(0))
	f.Add([]byte(`{}`), int64(0))
	f.Fuzz(func(t *testing.T, b []byte, dataLen int64) {
		before := totalAlloc()
		h, err := ParseHeader(b, dataLen)
		if d := totalAlloc() - before; d > 1<<20+512*uint64(len(b)) {
			t.Fatalf("parsing %d bytes allocated %d bytes", len(b), d)
		}
		if err != nil {
			return
		}
		var prevEnd int64
		for _, ti := range h.Tensors {
			if ti.Begin < prevEnd || ti.End > dataLen || ti.End-ti.Begin != ti.NumElements()*int64(ti.DType.Size()) {
				t.Fatalf("accepted inconsistent tensor %+v (data %d)", ti, dataLen)
			}
			prevEnd = ti.End
		}
	})
}

func FuzzParseIndex(f *testing.F) {
	f.Add([]byte(`{"metadata":{"total_size":10049024},"weight_map":{"lm_head.weight":"model-00001-of-00003.safetensors","x":"model-00002-of-00003.safetensors"}}`))
	f.Add([]byte(`{"weight_map":{"a":"../etc/passwd"}}`))
	f.Add([]byte(`{"weight_map":{"a":"s","a":"s"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		before := totalAlloc()
		ix, err := ParseIndex(b)
		if d := totalAlloc() - before; d > 1<<20+512*uint64(len(b)) {
			t.Fatalf("parsing %d bytes allocated %d bytes", len(b), d)
		}
		if err != nil {
			return
		}
		for _, s := range ix.Files() {
			if !validShard(s) {
				t.Fatalf("accepted shard %q", s)
			}
		}
	})
}

// FuzzOpen opens fuzzed whole files (prefix + header + data) through mmap.
func FuzzOpen(f *testing.F) {
	f.Add(file(`{"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}`, []byte{1, 2, 3, 4}))
	f.Add([]byte{255, 255, 255, 255, 255, 255, 255, 255})
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(dir, "f.safetensors")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := Open(p)
		if err != nil {
			return
		}
		defer c.Close()
		for _, n := range c.Names() {
			tt, err := c.Tensor(n)
			if err != nil {
				t.Fatal(err)
			}
			if err := tt.Validate(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestReadPythonWritten reads a file written by Python's safetensors 0.8.0
// (testdata/py.safetensors, made by testdata/pycheck.py on the device
// machine) and compares it with the manifest Python wrote beside it.
func TestReadPythonWritten(t *testing.T) {
	b, err := os.ReadFile("testdata/py_manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	var man struct {
		Tensors map[string]struct {
			DType  string `json:"dtype"`
			Shape  []int  `json:"shape"`
			SHA256 string `json:"sha256"`
		} `json:"tensors"`
		Metadata map[string]string `json:"metadata"`
	}
	if err := json.Unmarshal(b, &man); err != nil {
		t.Fatal(err)
	}
	ck, err := Open("testdata/py.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	if len(ck.Names()) != len(man.Tensors) {
		t.Errorf("%d tensors, manifest %d", len(ck.Names()), len(man.Tensors))
	}
	for k, v := range man.Metadata {
		if ck.Metadata()[k] != v {
			t.Errorf("metadata %s = %q, want %q", k, ck.Metadata()[k], v)
		}
	}
	for name, w := range man.Tensors {
		tt, err := ck.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(tt.Data)
		if tt.DType.String() != w.DType || fmt.Sprint(tt.Shape) != fmt.Sprint(w.Shape) || hex.EncodeToString(h[:]) != w.SHA256 {
			t.Errorf("%s: %s%v, want %s%v (or bytes differ)", name, tt.DType, tt.Shape, w.DType, w.Shape)
		}
	}
}

// totalAlloc is the cumulative heap allocation of the process.
func totalAlloc() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.TotalAlloc
}

// TestShardedRoundTrip writes the sharded MoE nano model again with small
// shards and reads it back through its index.
func TestShardedRoundTrip(t *testing.T) {
	src, err := Open(assets.Model(t, "qwen3moe-nano"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var infos []TensorInfo
	for _, n := range src.Names() {
		ti, _ := src.Info(n)
		infos = append(infos, TensorInfo{Name: n, DType: ti.DType, Shape: ti.Shape})
	}
	dir := t.TempDir()
	sw, err := CreateSharded(dir, map[string]string{"format": "pt"}, infos, 2<<20)
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range infos {
		tt, _ := src.Tensor(ti.Name)
		if err := sw.WriteTensor(ti.Name, tt.Data); err != nil {
			t.Fatal(err)
		}
	}
	if err := sw.Close(); err != nil {
		t.Fatal(err)
	}
	dst, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if n := len(dst.Files()); n < 5 {
		t.Errorf("%d shards for 10 MB in 2 MiB shards", n)
	}
	if dst.Metadata()["total_size"] != src.Metadata()["total_size"] {
		t.Errorf("total_size %q, want %q", dst.Metadata()["total_size"], src.Metadata()["total_size"])
	}
	for _, ti := range infos {
		a, _ := src.Tensor(ti.Name)
		b, err := dst.Tensor(ti.Name)
		if err != nil || !bytes.Equal(a.Data, b.Data) {
			t.Fatalf("%s differs: %v", ti.Name, err)
		}
	}
	// Closing early fails and leaves no index.
	dir2 := t.TempDir()
	sw, _ = CreateSharded(dir2, nil, infos, 2<<20)
	if err := sw.Close(); err == nil {
		t.Error("early close accepted")
	}
	if _, err := os.Stat(filepath.Join(dir2, IndexFile)); err == nil {
		t.Error("index written for an incomplete checkpoint")
	}
}
