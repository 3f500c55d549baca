// Package arrowio encodes sets of tensors as Arrow IPC files: the blobs of
// the checkpoint store (pipeline), which pyarrow can open. It sits apart
// from package tensor so that the packages that only compute on tensors
// (quant, kernels, model, export) do not link Apache Arrow.
package arrowio

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/ipc"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/marlin-llm/marlin/tensor"
)

// Arrow IPC layout of a tensor set (format "marlin-tensors/1").
//
// A set of tensors plus free-form metadata is one Arrow IPC *file* whose
// schema has two columns, name (utf8) and data (large_binary), and one
// record batch of one row per tensor, in order. The bytes of tensor i are
// the single value of batch i's data column (little-endian, as in
// tensor.Tensor.Data). Everything needed to interpret the bytes is in the schema
// metadata, so any Arrow reader (pyarrow: ipc.open_file) can use a blob:
//
//	marlin.format   "marlin-tensors/1"
//	marlin.tensors  JSON list of {"name","dtype","shape","meta"} per batch
//	marlin.meta     JSON object of the set's metadata (string → string)
//
// Writing is zero-copy: the data column's value buffer aliases tensor.Tensor.Data
// and the IPC writer streams it straight to w. Reading has two paths:
// ReadBytes (arrow_read.go) parses a blob held in memory without
// copying (Data aliases the input); Read uses arrow/go's general IPC
// file reader, which has no mmap-backed mode and copies every buffer twice
// (message body, then column buffer). Both bounds-check the footer first
// (arrow_check.go) because arrow/go trusts the counts in it; a corrupt file
// yields an error, not a panic or a huge allocation.

// Format is the value of the marlin.format schema metadata key.
const Format = "marlin-tensors/1"

// Schema metadata keys of the Arrow layout.
const (
	KeyFormat  = "marlin.format"
	KeyTensors = "marlin.tensors"
	KeyMeta    = "marlin.meta"
)

type arrowTensorInfo struct {
	Name  string            `json:"name"`
	DType string            `json:"dtype"`
	Shape []int             `json:"shape"`
	Meta  map[string]string `json:"meta,omitempty"`
}

// posWriter adapts an io.Writer to the io.WriteSeeker the Arrow file writer
// wants (it only asks for the current position).
type posWriter struct {
	w   io.Writer
	pos int64
}

func (p *posWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.pos += int64(n)
	return n, err
}

func (p *posWriter) Seek(off int64, whence int) (int64, error) {
	if off == 0 && whence == io.SeekCurrent {
		return p.pos, nil
	}
	return p.pos, errors.New("tensor: arrow writer: only position queries are supported")
}

// Write writes tensors and meta to w as an Arrow IPC file (layout
// above). The output is deterministic: the same tensors and meta give the
// same bytes.
func Write(w io.Writer, tensors []*tensor.Tensor, meta map[string]string) error {
	infos := make([]arrowTensorInfo, len(tensors))
	for i, t := range tensors {
		if t == nil {
			return fmt.Errorf("write arrow: tensor %d is nil", i)
		}
		if err := t.Validate(); err != nil {
			return fmt.Errorf("write arrow: %w", err)
		}
		if t.DType == tensor.Invalid || t.DType.Size() == 0 {
			return fmt.Errorf("write arrow: tensor %q: invalid dtype", t.Name)
		}
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		infos[i] = arrowTensorInfo{Name: t.Name, DType: t.DType.String(), Shape: shape, Meta: t.Meta}
	}
	tj, err := json.Marshal(infos)
	if err != nil {
		return fmt.Errorf("write arrow: %w", err)
	}
	if meta == nil {
		meta = map[string]string{}
	}
	mj, err := json.Marshal(meta) // map keys are sorted: deterministic
	if err != nil {
		return fmt.Errorf("write arrow: %w", err)
	}
	md := arrow.NewMetadata(
		[]string{KeyFormat, KeyMeta, KeyTensors},
		[]string{Format, string(mj), string(tj)},
	)
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "name", Type: arrow.BinaryTypes.String},
		{Name: "data", Type: arrow.BinaryTypes.LargeBinary},
	}, &md)
	fw, err := ipc.NewFileWriter(&posWriter{w: w}, ipc.WithSchema(schema))
	if err != nil {
		return fmt.Errorf("write arrow: %w", err)
	}
	for _, t := range tensors {
		if err := writeTensorBatch(fw, schema, t); err != nil {
			fw.Close()
			return fmt.Errorf("write arrow: tensor %q: %w", t.Name, err)
		}
	}
	if err := fw.Close(); err != nil {
		return fmt.Errorf("write arrow: %w", err)
	}
	return nil
}

func writeTensorBatch(fw *ipc.FileWriter, schema *arrow.Schema, t *tensor.Tensor) error {
	nameOff := make([]byte, 8)
	binary.LittleEndian.PutUint32(nameOff[4:], uint32(len(t.Name)))
	nameData := array.NewData(arrow.BinaryTypes.String, 1,
		[]*memory.Buffer{nil, memory.NewBufferBytes(nameOff), memory.NewBufferBytes([]byte(t.Name))}, nil, 0, 0)
	defer nameData.Release()
	dataOff := make([]byte, 16)
	binary.LittleEndian.PutUint64(dataOff[8:], uint64(len(t.Data)))
	valData := array.NewData(arrow.BinaryTypes.LargeBinary, 1,
		[]*memory.Buffer{nil, memory.NewBufferBytes(dataOff), memory.NewBufferBytes(t.Data)}, nil, 0, 0)
	defer valData.Release()
	nameArr := array.MakeFromData(nameData)
	defer nameArr.Release()
	valArr := array.MakeFromData(valData)
	defer valArr.Release()
	rec := array.NewRecord(schema, []arrow.Array{nameArr, valArr}, 1)
	defer rec.Release()
	return fw.Write(rec)
}

// ReaderAtSeeker is what Read reads from (an *os.File, a
// *bytes.Reader).
type ReaderAtSeeker interface {
	io.Reader
	io.ReaderAt
	io.Seeker
}

// boundedAlloc is a Go allocator that refuses to allocate more than limit
// bytes in total, so corrupt length fields cannot trigger huge allocations.
type boundedAlloc struct {
	limit, used int64
}

type errAllocLimit struct{ size int }

func (a *boundedAlloc) Allocate(size int) []byte {
	if size < 0 || int64(size) > a.limit-a.used {
		panic(errAllocLimit{size})
	}
	a.used += int64(size)
	// 64-byte aligned like memory.GoAllocator.
	buf := make([]byte, size+64)
	off := 0
	if a := int(uintptrOf(buf) % 64); a != 0 {
		off = 64 - a
	}
	return buf[off : off+size : off+size]
}

func (a *boundedAlloc) Reallocate(size int, b []byte) []byte {
	if size <= cap(b) {
		return b[:size]
	}
	nb := a.Allocate(size)
	copy(nb, b)
	return nb
}

func (a *boundedAlloc) Free([]byte) {}

// Read decodes an Arrow IPC file written by Write. size is the
// file's length in bytes. Any structural problem (not an Arrow file, wrong
// layout, data length not matching dtype × shape) is an error.
func Read(r ReaderAtSeeker, size int64) (tensors []*tensor.Tensor, meta map[string]string, err error) {
	defer func() {
		if p := recover(); p != nil {
			tensors, meta = nil, nil
			if e, ok := p.(errAllocLimit); ok {
				err = fmt.Errorf("read arrow: corrupt file: allocation of %d bytes exceeds file size %d", e.size, size)
				return
			}
			err = fmt.Errorf("read arrow: corrupt file: %v", p)
		}
	}()
	if err := checkArrowFooter(r, size); err != nil {
		return nil, nil, fmt.Errorf("read arrow: %w", err)
	}
	alloc := &boundedAlloc{limit: 2*size + 1<<16}
	fr, err := ipc.NewFileReader(r, ipc.WithAllocator(alloc), ipc.WithFooterOffset(size))
	if err != nil {
		return nil, nil, fmt.Errorf("read arrow: %w", err)
	}
	defer fr.Close()
	schema := fr.Schema()
	md := schema.Metadata()
	if v, _ := metaValue(md, KeyFormat); v != Format {
		return nil, nil, fmt.Errorf("read arrow: %s is %q, want %q", KeyFormat, v, Format)
	}
	if schema.NumFields() != 2 || schema.Field(0).Name != "name" || !arrow.TypeEqual(schema.Field(0).Type, arrow.BinaryTypes.String) ||
		schema.Field(1).Name != "data" || !arrow.TypeEqual(schema.Field(1).Type, arrow.BinaryTypes.LargeBinary) {
		return nil, nil, fmt.Errorf("read arrow: unexpected schema %s", schema)
	}
	var infos []arrowTensorInfo
	tj, _ := metaValue(md, KeyTensors)
	if err := json.Unmarshal([]byte(tj), &infos); err != nil {
		return nil, nil, fmt.Errorf("read arrow: %s: %w", KeyTensors, err)
	}
	mj, _ := metaValue(md, KeyMeta)
	if mj != "" {
		if err := json.Unmarshal([]byte(mj), &meta); err != nil {
			return nil, nil, fmt.Errorf("read arrow: %s: %w", KeyMeta, err)
		}
	}
	if fr.NumRecords() != len(infos) {
		return nil, nil, fmt.Errorf("read arrow: %d record batches for %d tensors", fr.NumRecords(), len(infos))
	}
	tensors = make([]*tensor.Tensor, len(infos))
	for i, info := range infos {
		rec, err := fr.Record(i)
		if err != nil {
			return nil, nil, fmt.Errorf("read arrow: tensor %d: %w", i, err)
		}
		if rec.NumRows() != 1 {
			return nil, nil, fmt.Errorf("read arrow: tensor %d: %d rows, want 1", i, rec.NumRows())
		}
		name, ok1 := rec.Column(0).(*array.String)
		data, ok2 := rec.Column(1).(*array.LargeBinary)
		if !ok1 || !ok2 || name.Len() != 1 || data.Len() != 1 {
			return nil, nil, fmt.Errorf("read arrow: tensor %d: unexpected columns", i)
		}
		if name.Value(0) != info.Name {
			return nil, nil, fmt.Errorf("read arrow: tensor %d: name %q does not match metadata %q", i, name.Value(0), info.Name)
		}
		dt, err := tensor.ParseDType(info.DType)
		if err != nil {
			return nil, nil, fmt.Errorf("read arrow: tensor %q: %w", info.Name, err)
		}
		t := &tensor.Tensor{Name: info.Name, DType: dt, Shape: info.Shape, Data: data.Value(0), Meta: info.Meta}
		if t.Shape == nil {
			t.Shape = []int{}
		}
		if err := t.Validate(); err != nil {
			return nil, nil, fmt.Errorf("read arrow: %w", err)
		}
		tensors[i] = t
	}
	return tensors, meta, nil
}

func metaValue(md arrow.Metadata, key string) (string, bool) {
	i := md.FindKey(key)
	if i < 0 {
		return "", false
	}
	return md.Values()[i], true
}
