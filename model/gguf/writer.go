package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/marlin-llm/marlin/internal/atomicfile"
)

// Writer streams a GGUF v3 file: declare metadata with AddKV and tensors
// with AddTensorInfo, then supply every tensor's bytes, in declaration
// order, with WriteTensorData (one call or several consecutive chunks per
// tensor). The header is written on the first WriteTensorData (or on Close)
// with the offsets llama.cpp expects: each tensor starts at a multiple of
// the alignment, padding is zero bytes after every tensor.
type Writer struct {
	bw      *bufio.Writer
	f       *atomicfile.File // nil for NewWriter
	kvs     []KV
	kvSeen  map[string]bool
	tensors []TensorInfo
	tSeen   map[string]bool
	align   uint64
	started bool
	hdrLen  uint64
	cur     int
	curDone uint64
	err     error
	closed  bool
}

// NewWriter returns a Writer that writes to w. Close flushes but does not
// close w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{bw: bufio.NewWriterSize(w, 1<<20), kvSeen: map[string]bool{}, tSeen: map[string]bool{}, align: DefaultAlignment}
}

// Create returns a Writer for a new file at path. Data goes to a temporary
// file in the same directory that Close fsyncs and renames into place.
func Create(path string) (*Writer, error) {
	f, err := atomicfile.Create(path)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	w := NewWriter(f)
	w.f = f
	return w, nil
}

func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return err
}

// AddKV adds a metadata entry. v is a Value or a Go value ValueOf accepts
// (uint32, float32, string, []string, []int32, ...). Keys must be unique;
// general.alignment must be a uint32 power of two and sets the alignment.
func (w *Writer) AddKV(key string, v any) error {
	if w.started || w.closed {
		return fmt.Errorf("gguf: AddKV(%q) after tensor data was written", key)
	}
	if key == "" {
		return fmt.Errorf("gguf: empty metadata key")
	}
	if w.kvSeen[key] {
		return fmt.Errorf("gguf: duplicate metadata key %q", key)
	}
	val, err := ValueOf(v)
	if err != nil {
		return fmt.Errorf("gguf: %s: %w", key, err)
	}
	if err := checkValue(val); err != nil {
		return fmt.Errorf("gguf: %s: %w", key, err)
	}
	if key == KeyAlignment {
		a, ok := val.V.(uint32)
		if !ok || a == 0 || a&(a-1) != 0 {
			return fmt.Errorf("gguf: %s must be a uint32 power of two, got %v", key, val.V)
		}
		w.align = uint64(a)
	}
	w.kvSeen[key] = true
	w.kvs = append(w.kvs, KV{Key: key, Value: val})
	return nil
}

// checkValue verifies that a Value's Go type matches its declared type.
func checkValue(v Value) error {
	want, err := ValueOf(v.V)
	if err != nil {
		return err
	}
	if want.Type != v.Type || (v.Type == ValueArray && want.Elem != v.Elem) {
		return fmt.Errorf("value of Go type %T declared as %s", v.V, v.Type)
	}
	return nil
}

// AddTensorInfo declares a tensor. dims are ggml's ne, innermost first
// (DimsFromShape converts a row-major shape).
func (w *Writer) AddTensorInfo(name string, t GGMLType, dims []uint64) error {
	if w.started || w.closed {
		return fmt.Errorf("gguf: AddTensorInfo(%q) after tensor data was written", name)
	}
	if name == "" || w.tSeen[name] {
		return fmt.Errorf("gguf: empty or duplicate tensor name %q", name)
	}
	if len(dims) > MaxDims {
		return fmt.Errorf("gguf: tensor %q: %d dimensions (ggml allows %d)", name, len(dims), MaxDims)
	}
	size, err := tensorBytes(t, dims)
	if err != nil {
		return fmt.Errorf("gguf: tensor %q: %w", name, err)
	}
	var off uint64
	if n := len(w.tensors); n > 0 {
		last := w.tensors[n-1]
		off = alignUp(last.Offset+last.Size, w.align)
	}
	w.tSeen[name] = true
	w.tensors = append(w.tensors, TensorInfo{Name: name, Dims: append([]uint64(nil), dims...), Type: t, Offset: off, Size: size})
	return nil
}

// DimsFromShape converts a row-major (PyTorch) shape to ggml dims.
func DimsFromShape(shape []int) []uint64 {
	d := make([]uint64, len(shape))
	for i, s := range shape {
		d[len(shape)-1-i] = uint64(s)
	}
	return d
}

func (w *Writer) writeHeader() error {
	w.started = true
	// Recompute offsets: general.alignment may have been set after some
	// tensors were declared.
	var off uint64
	for i := range w.tensors {
		w.tensors[i].Offset = off
		off = alignUp(off+w.tensors[i].Size, w.align)
	}
	e := &encoder{w: w.bw}
	e.raw([]byte(Magic))
	e.u32(Version)
	e.u64(uint64(len(w.tensors)))
	e.u64(uint64(len(w.kvs)))
	for _, kv := range w.kvs {
		e.str(kv.Key)
		e.u32(uint32(kv.Value.Type))
		e.value(kv.Value)
	}
	for _, ti := range w.tensors {
		e.str(ti.Name)
		e.u32(uint32(len(ti.Dims)))
		for _, d := range ti.Dims {
			e.u64(d)
		}
		e.u32(uint32(ti.Type))
		e.u64(ti.Offset)
	}
	if len(w.tensors) > 0 {
		e.pad(w.align)
	}
	w.skipEmpty()
	if e.err != nil {
		return w.fail(fmt.Errorf("gguf: write header: %w", e.err))
	}
	w.hdrLen = e.n
	return nil
}

// skipEmpty passes over zero-byte tensors (writing no padding: their
// successor starts at the same aligned offset).
func (w *Writer) skipEmpty() {
	for w.cur < len(w.tensors) && w.tensors[w.cur].Size == 0 && w.curDone == 0 {
		w.cur++
	}
}

// WriteTensorData writes the next bytes of tensor name, which must be the
// tensor being written (declaration order). A tensor may be written in
// several chunks; padding follows its last byte.
func (w *Writer) WriteTensorData(name string, p []byte) error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return errors.New("gguf: write after close")
	}
	if !w.started {
		if err := w.writeHeader(); err != nil {
			return err
		}
	}
	if w.cur >= len(w.tensors) {
		if len(p) == 0 && w.tSeen[name] {
			return nil
		}
		return fmt.Errorf("gguf: tensor %q: no tensor left to write", name)
	}
	ti := w.tensors[w.cur]
	if ti.Name != name {
		if len(p) == 0 && w.tSeen[name] {
			return nil // a zero-byte tensor that was passed over
		}
		return fmt.Errorf("gguf: tensor %q written out of order (next is %q)", name, ti.Name)
	}
	if uint64(len(p)) > ti.Size-w.curDone {
		return fmt.Errorf("gguf: tensor %q: %d bytes past its %d byte size", name, uint64(len(p))+w.curDone-ti.Size, ti.Size)
	}
	e := &encoder{w: w.bw, n: w.hdrLen + ti.Offset + w.curDone}
	e.raw(p)
	w.curDone += uint64(len(p))
	if w.curDone == ti.Size {
		e.pad(w.align)
		w.cur++
		w.curDone = 0
		w.skipEmpty()
	}
	if e.err != nil {
		return w.fail(fmt.Errorf("gguf: tensor %q: %w", name, e.err))
	}
	return nil
}

// Close writes the header if no data was written, checks that every
// tensor is complete and flushes; for Create it fsyncs and renames the file
// into place.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	if w.err == nil && !w.started {
		_ = w.writeHeader()
	}
	if w.err == nil && w.cur < len(w.tensors) {
		w.fail(fmt.Errorf("gguf: closed before tensor %q was complete", w.tensors[w.cur].Name))
	}
	if w.err == nil {
		if err := w.bw.Flush(); err != nil {
			w.fail(fmt.Errorf("gguf: %w", err))
		}
	}
	if w.err != nil {
		w.Abort()
		return w.err
	}
	w.closed = true
	if w.f == nil {
		return nil
	}
	if err := w.f.Commit(); err != nil {
		return w.fail(fmt.Errorf("gguf: %w", err))
	}
	return nil
}

// Abort discards a file being written by Create.
func (w *Writer) Abort() {
	if w.closed {
		return
	}
	w.closed = true
	w.fail(errors.New("gguf: writer aborted"))
	if w.f != nil {
		w.f.Abort()
	}
}

// encoder writes little-endian values and tracks the byte position.
type encoder struct {
	w   io.Writer
	n   uint64
	err error
	buf [8]byte
}

func (e *encoder) raw(p []byte) {
	if e.err != nil {
		return
	}
	var k int
	k, e.err = e.w.Write(p)
	e.n += uint64(k)
}

func (e *encoder) u8(v uint8) { e.buf[0] = v; e.raw(e.buf[:1]) }
func (e *encoder) u16(v uint16) {
	binary.LittleEndian.PutUint16(e.buf[:], v)
	e.raw(e.buf[:2])
}
func (e *encoder) u32(v uint32) {
	binary.LittleEndian.PutUint32(e.buf[:], v)
	e.raw(e.buf[:4])
}
func (e *encoder) u64(v uint64) {
	binary.LittleEndian.PutUint64(e.buf[:], v)
	e.raw(e.buf[:8])
}
func (e *encoder) str(s string) {
	e.u64(uint64(len(s)))
	e.raw([]byte(s))
}

var zeros [256]byte

func (e *encoder) pad(align uint64) {
	for k := alignUp(e.n, align) - e.n; k > 0; {
		c := min(k, uint64(len(zeros)))
		e.raw(zeros[:c])
		k -= c
	}
}

func (e *encoder) value(v Value) {
	switch x := v.V.(type) {
	case uint8:
		e.u8(x)
	case int8:
		e.u8(uint8(x))
	case bool:
		if x {
			e.u8(1)
		} else {
			e.u8(0)
		}
	case uint16:
		e.u16(x)
	case int16:
		e.u16(uint16(x))
	case uint32:
		e.u32(x)
	case int32:
		e.u32(uint32(x))
	case float32:
		e.u32(math.Float32bits(x))
	case uint64:
		e.u64(x)
	case int64:
		e.u64(uint64(x))
	case float64:
		e.u64(math.Float64bits(x))
	case string:
		e.str(x)
	default:
		e.u32(uint32(v.Elem))
		e.u64(uint64(v.Len()))
		switch a := x.(type) {
		case []uint8:
			e.raw(a)
		case []int8:
			for _, y := range a {
				e.u8(uint8(y))
			}
		case []bool:
			for _, y := range a {
				e.value(Value{Type: ValueBool, V: y})
			}
		case []uint16:
			for _, y := range a {
				e.u16(y)
			}
		case []int16:
			for _, y := range a {
				e.u16(uint16(y))
			}
		case []uint32:
			for _, y := range a {
				e.u32(y)
			}
		case []int32:
			for _, y := range a {
				e.u32(uint32(y))
			}
		case []float32:
			for _, y := range a {
				e.u32(math.Float32bits(y))
			}
		case []uint64:
			for _, y := range a {
				e.u64(y)
			}
		case []int64:
			for _, y := range a {
				e.u64(uint64(y))
			}
		case []float64:
			for _, y := range a {
				e.u64(math.Float64bits(y))
			}
		case []string:
			for _, y := range a {
				e.str(y)
			}
		}
	}
}
