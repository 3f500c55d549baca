// Package safetensors reads and writes Hugging Face safetensors checkpoints:
// single files and directories sharded with model.safetensors.index.json.
//
// Files are mapped into memory (mmap, copy-on-write) and tensors are returned
// as zero-copy views of the mapping, so opening a model costs nothing but
// the header parse and only the tensors that are used are read from disk.
// Headers are validated strictly (size cap, dtype × shape × byte length,
// offsets inside the file, no overlaps, no duplicate names) so that a
// corrupt or hostile file gives an error, never a panic or a huge
// allocation. The format is small and fixed; it is implemented here rather
// than through a library because no maintained Go package offers mmapped,
// sharded, validated reading.
package safetensors

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/marlin-llm/marlin/model/internal/mmap"
	"github.com/marlin-llm/marlin/tensor"
)

// IndexFile is the name of the shard index of a sharded checkpoint.
const IndexFile = "model.safetensors.index.json"

// File is one opened safetensors file.
type File struct {
	path      string
	data      []byte // the whole mapping
	dataStart int64  // offset of the data section
	header    *Header
	unmap     func() error
}

// OpenFile opens and maps a single safetensors file and validates its header.
func OpenFile(path string) (*File, error) {
	data, unmap, err := mmap.MapFile(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	bad := func(err error) (*File, error) {
		_ = unmap()
		return nil, fmt.Errorf("safetensors: %s: %w", path, err)
	}
	size := int64(len(data))
	if size < 8 {
		return bad(fmt.Errorf("%d bytes is too short for a header", size))
	}
	n := binary.LittleEndian.Uint64(data)
	if n > MaxHeaderSize {
		return bad(fmt.Errorf("header size %d exceeds the %d byte limit", n, MaxHeaderSize))
	}
	if int64(n) > size-8 {
		return bad(fmt.Errorf("header size %d past the end of the %d byte file", n, size))
	}
	start := 8 + int64(n)
	h, err := ParseHeader(data[8:start], size-start)
	if err != nil {
		return bad(err)
	}
	for i := range h.Tensors {
		h.Tensors[i].File = path
	}
	return &File{path: path, data: data, dataStart: start, header: h, unmap: unmap}, nil
}

// Path is the file's path.
func (f *File) Path() string { return f.path }

// Header is the file's parsed header.
func (f *File) Header() *Header { return f.header }

// view returns the bytes of ti (a tensor of this file), capacity-limited.
func (f *File) view(ti TensorInfo) []byte {
	lo, hi := f.dataStart+ti.Begin, f.dataStart+ti.End
	return f.data[lo:hi:hi]
}

// Close unmaps the file. Tensors obtained from it must not be used after.
func (f *File) Close() error {
	if f.unmap == nil {
		return nil
	}
	err := f.unmap()
	f.unmap, f.data = nil, nil
	return err
}

// Checkpoint is an opened model: one or more safetensors files seen as one
// set of uniquely named tensors.
type Checkpoint struct {
	dir      string
	files    []*File
	infos    map[string]TensorInfo
	fileOf   map[string]*File
	names    []string
	metadata map[string]string
}

// Open opens a checkpoint. path is a .safetensors file or a model directory.
// A directory is read through model.safetensors.index.json when present,
// else model.safetensors, else its only *.safetensors file.
func Open(path string) (*Checkpoint, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	if !st.IsDir() {
		f, err := OpenFile(path)
		if err != nil {
			return nil, err
		}
		c := newCheckpoint(filepath.Dir(path))
		if err := c.add(f, nil); err != nil {
			c.Close()
			return nil, err
		}
		c.metadata = f.header.Metadata
		return c, nil
	}
	idx := filepath.Join(path, IndexFile)
	if b, err := os.ReadFile(idx); err == nil {
		return openSharded(path, idx, b)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	single := filepath.Join(path, "model.safetensors")
	if _, err := os.Stat(single); err != nil {
		m, _ := filepath.Glob(filepath.Join(path, "*.safetensors"))
		if len(m) != 1 {
			return nil, fmt.Errorf("safetensors: %s has no %s or model.safetensors and %d other .safetensors files", path, IndexFile, len(m))
		}
		single = m[0]
	}
	c, err := Open(single)
	if err != nil {
		return nil, err
	}
	c.dir = path
	return c, nil
}

func newCheckpoint(dir string) *Checkpoint {
	return &Checkpoint{dir: dir, infos: map[string]TensorInfo{}, fileOf: map[string]*File{}}
}

// add registers f's tensors; when want is non-nil every tensor must be in it.
func (c *Checkpoint) add(f *File, want map[string]string) error {
	c.files = append(c.files, f)
	base := filepath.Base(f.path)
	for _, ti := range f.header.Tensors {
		if _, dup := c.infos[ti.Name]; dup {
			return fmt.Errorf("safetensors: tensor %q appears in %s and %s", ti.Name, c.infos[ti.Name].File, f.path)
		}
		if want != nil {
			if w, ok := want[ti.Name]; !ok || w != base {
				return fmt.Errorf("safetensors: %s holds %q, which %s maps to %q", f.path, ti.Name, IndexFile, w)
			}
		}
		c.infos[ti.Name] = ti
		c.fileOf[ti.Name] = f
		c.names = append(c.names, ti.Name)
	}
	return nil
}

func openSharded(dir, idxPath string, b []byte) (*Checkpoint, error) {
	idx, err := ParseIndex(b)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %s: %w", idxPath, err)
	}
	c := newCheckpoint(dir)
	c.metadata = map[string]string{}
	for k, v := range idx.Metadata {
		c.metadata[k] = v
	}
	for _, shard := range idx.Files() {
		f, err := OpenFile(filepath.Join(dir, shard))
		if err != nil {
			c.Close()
			return nil, err
		}
		if err := c.add(f, idx.WeightMap); err != nil {
			c.Close()
			return nil, err
		}
	}
	for name, shard := range idx.WeightMap {
		if _, ok := c.infos[name]; !ok {
			c.Close()
			return nil, fmt.Errorf("safetensors: %s maps %q to %s, which does not hold it", idxPath, name, shard)
		}
	}
	return c, nil
}

// Dir is the directory the checkpoint was opened from (or the file's
// directory), where config.json and the tokenizer live.
func (c *Checkpoint) Dir() string { return c.dir }

// Files lists the paths of the checkpoint's files in shard order.
func (c *Checkpoint) Files() []string {
	out := make([]string, len(c.files))
	for i, f := range c.files {
		out[i] = f.path
	}
	return out
}

// Metadata is the "__metadata__" of a single-file checkpoint, or the index's
// "metadata" (values as JSON text unless they are strings) of a sharded one.
func (c *Checkpoint) Metadata() map[string]string { return c.metadata }

// Names lists the tensor names in storage order (shard by shard, by offset).
func (c *Checkpoint) Names() []string { return append([]string(nil), c.names...) }

// Info describes the named tensor.
func (c *Checkpoint) Info(name string) (TensorInfo, bool) {
	ti, ok := c.infos[name]
	return ti, ok
}

// Region returns the file holding the named tensor and the offset of its
// bytes in it (from the start of the file).
func (c *Checkpoint) Region(name string) (path string, offset int64, ok bool) {
	ti, ok := c.infos[name]
	if !ok {
		return "", 0, false
	}
	f := c.fileOf[name]
	return f.path, f.dataStart + ti.Begin, true
}

// Tensor returns the named tensor as a zero-copy view of the mapped file.
// The view stays valid until Close; writes to Data go to private pages and
// never reach the file. Clone the tensor to keep it past Close.
func (c *Checkpoint) Tensor(name string) (*tensor.Tensor, error) {
	ti, ok := c.infos[name]
	if !ok {
		return nil, fmt.Errorf("safetensors: no tensor %q in %s", name, c.dir)
	}
	f := c.fileOf[name]
	if f.data == nil && ti.Size() > 0 {
		return nil, fmt.Errorf("safetensors: tensor %q: checkpoint is closed", name)
	}
	var data []byte
	if ti.Size() > 0 {
		data = f.view(ti)
	} else {
		data = []byte{}
	}
	return &tensor.Tensor{Name: name, DType: ti.DType, Shape: append([]int(nil), ti.Shape...), Data: data}, nil
}

// Close unmaps every file.
func (c *Checkpoint) Close() error {
	var errs []error
	for _, f := range c.files {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}

// Index is a parsed model.safetensors.index.json.
type Index struct {
	// Metadata holds the index's "metadata" object; non-string values are
	// kept as their JSON text (e.g. "total_size": "10049024").
	Metadata map[string]string
	// WeightMap maps each tensor name to the shard file holding it.
	WeightMap map[string]string
}

// Files lists the distinct shard files, sorted.
func (ix *Index) Files() []string {
	set := map[string]bool{}
	for _, f := range ix.WeightMap {
		set[f] = true
	}
	out := make([]string, 0, len(set))
	for f := range set {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}

// validShard reports whether name is a plain file name (no directories, no
// traversal), so an index cannot point outside its model directory.
func validShard(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, `/\`+"\x00")
}
