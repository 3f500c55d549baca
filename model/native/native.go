// Package native writes and reads marlin's native packed checkpoint (the
// pack stage's format native; model/qmodel runs it): the
// quant.Packed buffers the CPU and Metal kernels consume (kernels.Backend's
// DequantGEMM takes a *quant.Packed as is), stored in safetensors shards.
//
// Layout of a native checkpoint directory:
//
//	model-00001-of-0000N.safetensors   shards; per quantized weight W:
//	    W           U8 [rows, row_bytes]   codes (quant.Packed.Codes)
//	    W.scales    F16/BF16/F32/U8/F8_E4M3 [rows, groups]
//	    W.zeros     U8 [rows, groups]      asymmetric formats only
//	    W.g_idx     I32 [cols]             act-order only
//	  and every other tensor (norms, routers, weights kept in BF16) as it
//	  came. Each shard's "__metadata__" holds "format": "marlin-packed",
//	  "marlin.version" and "marlin.tensors": a JSON object mapping every
//	  tensor name to its Meta (quant.format, group size, scale type, rows,
//	  cols, shape, tensor scale, method, Hadamard rotation keys, ...), so a
//	  shard is self-describing.
//	model.safetensors.index.json        the usual weight map
//	marlin.json                         Manifest: format, version, source
//	                                    model, per-weight formats, rotation
//
// The layout is quant.Packed's (rows independent, codes LSB-first within a
// row), so loading is a zero-copy view: Open + Packed returns a Packed
// whose dequantization equals the original bit for bit.
package native

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/marlin-llm/marlin/internal/atomicfile"
	"github.com/marlin-llm/marlin/model/safetensors"
	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/tensor"
)

// Format identifies the layout in metadata.
const (
	Format       = "marlin-packed"
	Version      = 1
	ManifestFile = "marlin.json"
	IndexFile    = "model.safetensors.index.json"
	metaTensors  = "marlin.tensors"
	metaVersion  = "marlin.version"
)

// ShardName is the file name of shard i (0-based) of n.
func ShardName(i, n int) string {
	if n == 1 {
		return "model.safetensors"
	}
	return fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, n)
}

// WriteShard writes tensors (packed companions and plain tensors, with
// their Meta) to path atomically. It returns the names it wrote and their
// total data bytes.
func WriteShard(path string, ts []*tensor.Tensor) (names []string, size int64, err error) {
	metas := map[string]map[string]string{}
	sorted := append([]*tensor.Tensor(nil), ts...)
	safetensors.SortForAlignment(sorted)
	for _, t := range sorted {
		if _, dup := metas[t.Name]; dup {
			return nil, 0, fmt.Errorf("native: %s: tensor %q twice", path, t.Name)
		}
		m := t.Meta
		if m == nil {
			m = map[string]string{}
		}
		metas[t.Name] = m
		names = append(names, t.Name)
		size += int64(len(t.Data))
	}
	mj, err := json.Marshal(metas)
	if err != nil {
		return nil, 0, fmt.Errorf("native: %s: %w", path, err)
	}
	md := map[string]string{"format": Format, metaVersion: strconv.Itoa(Version), metaTensors: string(mj)}
	if err := safetensors.WriteFile(path, sorted, md); err != nil {
		return nil, 0, fmt.Errorf("native: %w", err)
	}
	return names, size, nil
}

// Manifest is marlin.json.
type Manifest struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	// Source is the model the weights came from (directory or hub id).
	Source string `json:"source,omitempty"`
	// Weights maps each quantized weight to its format string
	// (quant.Format.String, e.g. "int4(g=64)").
	Weights map[string]string `json:"weights"`
	// Rotation describes Hadamard rotations folded into the weights, taken
	// from the tensors' hadamard.* / rotation Meta keys (empty if none).
	Rotation map[string]string `json:"rotation,omitempty"`
	// Shards lists the shard files.
	Shards []string `json:"shards"`
}

// WriteIndex writes model.safetensors.index.json (weight → shard) and
// marlin.json into dir, atomically.
func WriteIndex(dir string, weightMap map[string]string, totalSize int64, m Manifest) error {
	m.Format, m.Version = Format, Version
	idx := map[string]any{"metadata": map[string]any{"total_size": totalSize, "format": Format}, "weight_map": weightMap}
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, IndexFile), b); err != nil {
		return fmt.Errorf("native: %w", err)
	}
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, ManifestFile), mb); err != nil {
		return fmt.Errorf("native: %w", err)
	}
	return nil
}

// Model is an opened native checkpoint.
type Model struct {
	ck       *safetensors.Checkpoint
	meta     map[string]map[string]string
	manifest Manifest
}

// Open opens a native checkpoint directory (or a single shard file).
func Open(path string) (*Model, error) {
	ck, err := safetensors.Open(path)
	if err != nil {
		return nil, fmt.Errorf("native: %w", err)
	}
	m := &Model{ck: ck, meta: map[string]map[string]string{}}
	fail := func(err error) (*Model, error) {
		ck.Close()
		return nil, fmt.Errorf("native: %s: %w", path, err)
	}
	for _, f := range ck.Files() {
		sf, err := safetensors.OpenFile(f)
		if err != nil {
			return fail(err)
		}
		md := sf.Header().Metadata
		sf.Close()
		if md["format"] != Format {
			return fail(fmt.Errorf("%s: format %q, want %q", filepath.Base(f), md["format"], Format))
		}
		if v, _ := strconv.Atoi(md[metaVersion]); v != Version {
			return fail(fmt.Errorf("%s: unsupported marlin.version %q", filepath.Base(f), md[metaVersion]))
		}
		var tm map[string]map[string]string
		if err := json.Unmarshal([]byte(md[metaTensors]), &tm); err != nil {
			return fail(fmt.Errorf("%s: %s: %w", filepath.Base(f), metaTensors, err))
		}
		for k, v := range tm {
			m.meta[k] = v
		}
	}
	dir := path
	if st, err := os.Stat(path); err == nil && !st.IsDir() {
		dir = filepath.Dir(path)
	}
	if b, err := os.ReadFile(filepath.Join(dir, ManifestFile)); err == nil {
		if err := json.Unmarshal(b, &m.manifest); err != nil {
			return fail(fmt.Errorf("%s: %w", ManifestFile, err))
		}
	}
	return m, nil
}

// Close unmaps the files.
func (m *Model) Close() error { return m.ck.Close() }

// Manifest returns marlin.json (zero if the directory has none).
func (m *Model) Manifest() Manifest { return m.manifest }

// Names lists the logical weights: packed weights (by their codes tensor)
// and plain tensors, without the .scales/.zeros/.g_idx companions, sorted.
func (m *Model) Names() []string {
	var out []string
	for _, n := range m.ck.Names() {
		role := m.meta[n][quant.MetaRole]
		if role == "scales" || role == "zeros" || role == "g_idx" {
			continue
		}
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Tensor returns a stored tensor with its Meta restored (a view of the
// mapped file, valid until Close).
func (m *Model) Tensor(name string) (*tensor.Tensor, error) {
	t, err := m.ck.Tensor(name)
	if err != nil {
		return nil, fmt.Errorf("native: %w", err)
	}
	t.Meta = m.meta[name]
	return t, nil
}

// IsPacked reports whether name is a quantized weight.
func (m *Model) IsPacked(name string) bool {
	md := m.meta[name]
	return md[quant.MetaFormat] != "" && md[quant.MetaRole] == "codes"
}

// Packed returns the quantized weight name as a quant.Packed (aliasing the
// mapped file).
func (m *Model) Packed(name string) (*quant.Packed, error) {
	if !m.IsPacked(name) {
		return nil, fmt.Errorf("native: %q is not a packed weight", name)
	}
	var ts []*tensor.Tensor
	for _, n := range []string{name, name + quant.SuffixScales, name + quant.SuffixZeros, name + quant.SuffixGIdx} {
		if _, ok := m.ck.Info(n); !ok {
			continue
		}
		t, err := m.Tensor(n)
		if err != nil {
			return nil, err
		}
		ts = append(ts, t)
	}
	p, err := quant.FromTensors(name, ts)
	if err != nil {
		return nil, fmt.Errorf("native: %w", err)
	}
	return p, nil
}

// Float32 returns a weight's values: dequantized for packed weights,
// converted for plain ones.
func (m *Model) Float32(name string) ([]float32, error) {
	if m.IsPacked(name) {
		p, err := m.Packed(name)
		if err != nil {
			return nil, err
		}
		out := make([]float32, p.Rows*p.Cols)
		p.Dequantize(out)
		return out, nil
	}
	t, err := m.Tensor(name)
	if err != nil {
		return nil, err
	}
	return tensor.ToFloat32(t)
}

// RotationMeta extracts rotation-related Meta keys (hadamard.*,
// rotation.*) from a tensor's Meta.
func RotationMeta(meta map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range meta {
		if strings.HasPrefix(k, "hadamard") || strings.HasPrefix(k, "rotation") {
			out[k] = v
		}
	}
	return out
}
