package safetensors

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/marlin-llm/marlin/internal/atomicfile"
	"github.com/marlin-llm/marlin/tensor"
)

// Writer streams a safetensors file: the header (with every tensor's dtype,
// shape and offsets) is written first, then each tensor's bytes in the order
// the tensors were declared. Tensors are contiguous (as the reference
// implementation requires) and the data section starts 8-byte aligned (the
// header is padded with spaces). The file is written to a temporary name in
// the target directory, fsynced and renamed by Close; Abort discards it.
type Writer struct {
	path    string
	f       *atomicfile.File
	bw      *bufio.Writer
	infos   []TensorInfo
	cur     int   // index of the tensor being written
	curDone int64 // bytes of infos[cur] written so far
	err     error
	closed  bool
}

// Create starts writing a safetensors file at path with the given
// "__metadata__" (may be nil) and tensors (Name, DType, Shape; offsets are
// computed here). Tensor data must then be supplied in the same order with
// WriteTensor or Write.
func Create(path string, metadata map[string]string, infos []TensorInfo) (*Writer, error) {
	infos = append([]TensorInfo(nil), infos...)
	seen := map[string]bool{}
	var off int64
	for i := range infos {
		ti := &infos[i]
		if ti.Name == "" || ti.Name == "__metadata__" {
			return nil, fmt.Errorf("safetensors: create %s: invalid tensor name %q", path, ti.Name)
		}
		if seen[ti.Name] {
			return nil, fmt.Errorf("safetensors: create %s: duplicate tensor %q", path, ti.Name)
		}
		seen[ti.Name] = true
		if ti.DType == tensor.Invalid || ti.DType.Size() == 0 {
			return nil, fmt.Errorf("safetensors: create %s: tensor %q: invalid dtype", path, ti.Name)
		}
		n := int64(1)
		for _, d := range ti.Shape {
			if d < 0 || (d != 0 && n > maxBytes/int64(d)) {
				return nil, fmt.Errorf("safetensors: create %s: tensor %q: bad shape %v", path, ti.Name, ti.Shape)
			}
			n *= int64(d)
		}
		ti.Begin, ti.End = off, off+n*int64(ti.DType.Size())
		ti.File = path
		off = ti.End
	}
	hdr, err := encodeHeader(metadata, infos)
	if err != nil {
		return nil, fmt.Errorf("safetensors: create %s: %w", path, err)
	}
	f, err := atomicfile.Create(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	w := &Writer{path: path, f: f, bw: bufio.NewWriterSize(f, 1<<20), infos: infos}
	var pre [8]byte
	binary.LittleEndian.PutUint64(pre[:], uint64(len(hdr)))
	if _, err := w.bw.Write(pre[:]); err != nil {
		w.Abort()
		return nil, fmt.Errorf("safetensors: create %s: %w", path, err)
	}
	if _, err := w.bw.Write(hdr); err != nil {
		w.Abort()
		return nil, fmt.Errorf("safetensors: create %s: %w", path, err)
	}
	w.skipEmpty()
	return w, nil
}

// encodeHeader renders the header JSON with keys in declaration order
// (__metadata__ first, its keys sorted), padded with spaces so that
// 8 + len(header) is a multiple of 8.
func encodeHeader(metadata map[string]string, infos []TensorInfo) ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	first := true
	if len(metadata) > 0 {
		keys := make([]string, 0, len(metadata))
		for k := range metadata {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteString(`"__metadata__":{`)
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			kb, _ := json.Marshal(k)
			vb, _ := json.Marshal(metadata[k])
			b.Write(kb)
			b.WriteByte(':')
			b.Write(vb)
		}
		b.WriteByte('}')
		first = false
	}
	for _, ti := range infos {
		if !first {
			b.WriteByte(',')
		}
		first = false
		nb, _ := json.Marshal(ti.Name)
		b.Write(nb)
		fmt.Fprintf(&b, `:{"dtype":%q,"shape":[`, ti.DType.String())
		for i, d := range ti.Shape {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%d", d)
		}
		fmt.Fprintf(&b, `],"data_offsets":[%d,%d]}`, ti.Begin, ti.End)
	}
	b.WriteByte('}')
	for (8+b.Len())%8 != 0 {
		b.WriteByte(' ')
	}
	if b.Len() > MaxHeaderSize {
		return nil, fmt.Errorf("header of %d bytes exceeds the %d byte limit", b.Len(), MaxHeaderSize)
	}
	return b.Bytes(), nil
}

// skipEmpty advances past zero-byte tensors.
func (w *Writer) skipEmpty() {
	for w.cur < len(w.infos) && w.curDone == w.infos[w.cur].Size() {
		w.cur++
		w.curDone = 0
	}
}

// Write appends raw tensor bytes, in declaration order, possibly spanning
// tensors. Writing more than the declared tensors hold is an error.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.closed {
		return 0, errors.New("safetensors: write after close")
	}
	total := 0
	for len(p) > 0 {
		if w.cur >= len(w.infos) {
			w.err = fmt.Errorf("safetensors: %s: %d bytes beyond the declared tensors", w.path, len(p))
			return total, w.err
		}
		n := min(int64(len(p)), w.infos[w.cur].Size()-w.curDone)
		if _, err := w.bw.Write(p[:n]); err != nil {
			w.err = fmt.Errorf("safetensors: %s: %w", w.path, err)
			return total, w.err
		}
		total += int(n)
		p = p[n:]
		w.curDone += n
		w.skipEmpty()
	}
	return total, nil
}

// WriteTensor writes the whole data of the next declared tensor, which must
// be called name.
func (w *Writer) WriteTensor(name string, data []byte) error {
	if w.err != nil {
		return w.err
	}
	if len(data) == 0 {
		// Zero-byte tensors are passed over automatically; accept them in
		// any position at or before the current one.
		for i := range min(w.cur+1, len(w.infos)) {
			if w.infos[i].Name == name && w.infos[i].Size() == 0 {
				return nil
			}
		}
	}
	if w.cur >= len(w.infos) {
		return fmt.Errorf("safetensors: %s: tensor %q was not declared or is already written", w.path, name)
	}
	ti := w.infos[w.cur]
	if w.curDone != 0 || ti.Name != name {
		return fmt.Errorf("safetensors: %s: tensor %q written out of order (next is %q)", w.path, name, ti.Name)
	}
	if int64(len(data)) != ti.Size() {
		return fmt.Errorf("safetensors: %s: tensor %q: %d bytes, header says %d", w.path, name, len(data), ti.Size())
	}
	_, err := w.Write(data)
	return err
}

// Close checks that every declared byte was written, then flushes, fsyncs
// and renames the file into place.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	if w.err == nil && w.cur < len(w.infos) {
		w.err = fmt.Errorf("safetensors: %s: closed before tensor %q was complete", w.path, w.infos[w.cur].Name)
	}
	if w.err != nil {
		w.Abort()
		return w.err
	}
	w.closed = true
	if err := w.bw.Flush(); err != nil {
		w.f.Abort()
		w.err = fmt.Errorf("safetensors: %s: %w", w.path, err)
		return w.err
	}
	if err := w.f.Commit(); err != nil {
		w.err = fmt.Errorf("safetensors: %w", err)
		return w.err
	}
	return nil
}

// Abort discards the partial file.
func (w *Writer) Abort() {
	if w.closed {
		return
	}
	w.closed = true
	w.f.Abort()
	if w.err == nil {
		w.err = errors.New("safetensors: writer aborted")
	}
}

// WriteFile writes tensors (in the given order) to path with the given
// "__metadata__". To keep every tensor aligned to its element size, pass
// them sorted by decreasing dtype size (SortForAlignment).
func WriteFile(path string, tensors []*tensor.Tensor, metadata map[string]string) error {
	infos := make([]TensorInfo, len(tensors))
	for i, t := range tensors {
		if err := t.Validate(); err != nil {
			return fmt.Errorf("safetensors: write %s: %w", path, err)
		}
		infos[i] = TensorInfo{Name: t.Name, DType: t.DType, Shape: t.Shape}
	}
	w, err := Create(path, metadata, infos)
	if err != nil {
		return err
	}
	for _, t := range tensors {
		if err := w.WriteTensor(t.Name, t.Data); err != nil {
			w.Abort()
			return err
		}
	}
	return w.Close()
}

// SortForAlignment orders tensors by decreasing element size, then by name,
// the order the reference implementation writes, so that every tensor
// starts aligned to its element size.
func SortForAlignment(tensors []*tensor.Tensor) {
	sort.SliceStable(tensors, func(i, j int) bool {
		a, b := tensors[i], tensors[j]
		if a.DType.Size() != b.DType.Size() {
			return a.DType.Size() > b.DType.Size()
		}
		return a.Name < b.Name
	})
}
