// Package gguf reads and writes GGUF v3 files, llama.cpp's model format:
// metadata key/values of every type (arrays included), tensor infos, the
// aligned data section, and the table of ggml tensor types (types.go). It
// dequantizes F16, BF16, Q4_0, Q8_0, Q4_K, Q6_K and MXFP4 (and a few more)
// to float32 with ggml's reference formulas, bit for bit.
//
// It is hand-written because the Go GGUF packages available either read
// only, allocate per-file copies, or trail ggml's type list; this one keeps
// the type table, validation and the writer in one place. Validation follows
// ggml's gguf.cpp: unique keys and tensor names, general.alignment a uint32
// power of two, at most 4 dimensions, row sizes a multiple of the block
// size, tensor offsets exactly sequential with alignment padding. Every
// count and length is checked against the bytes that remain before
// anything is allocated, so hostile files give errors, not panics or huge
// allocations.
package gguf

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"

	"github.com/marlin-llm/marlin/model/internal/mmap"
	"github.com/marlin-llm/marlin/tensor"
)

// Magic is the four bytes a GGUF file starts with.
const Magic = "GGUF"

// Version is the GGUF version this package writes.
const Version = 3

// DefaultAlignment is the data alignment when general.alignment is absent.
const DefaultAlignment = 32

// KeyAlignment is the metadata key that sets the data alignment.
const KeyAlignment = "general.alignment"

// MaxDims is the most dimensions a ggml tensor has.
const MaxDims = 4

// TensorInfo describes one tensor of a GGUF file.
type TensorInfo struct {
	Name string
	// Dims are ggml's ne: Dims[0] is the innermost (contiguous) dimension,
	// so a PyTorch weight of shape [out, in] has Dims [in, out].
	Dims []uint64
	Type GGMLType
	// Offset is relative to the start of the data section.
	Offset uint64
	// Size is the tensor's byte size (without padding).
	Size uint64
}

// NumElements is the product of the dimensions.
func (ti *TensorInfo) NumElements() int64 {
	n := int64(1)
	for _, d := range ti.Dims {
		n *= int64(d)
	}
	return n
}

// Shape is the row-major (PyTorch) shape: Dims reversed.
func (ti *TensorInfo) Shape() []int {
	s := make([]int, len(ti.Dims))
	for i, d := range ti.Dims {
		s[len(ti.Dims)-1-i] = int(d)
	}
	return s
}

// File is a parsed GGUF file.
type File struct {
	// Version is the file's GGUF version (2 or 3).
	Version uint32
	// KVs are the metadata entries in file order.
	KVs []KV
	// Tensors are the tensor infos in file order.
	Tensors []TensorInfo
	// Alignment is the data alignment in bytes.
	Alignment uint64
	// DataOffset is the file offset of the data section.
	DataOffset int64

	data    []byte // whole file
	kvIndex map[string]int
	tIndex  map[string]int
	unmap   func() error
}

// Open maps a GGUF file and parses it. Tensor data is read lazily from the
// mapping; call Close when done.
func Open(path string) (*File, error) {
	data, unmap, err := mmap.MapFile(path)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	f, err := Read(data)
	if err != nil {
		_ = unmap()
		return nil, fmt.Errorf("gguf: %s: %w", path, err)
	}
	f.unmap = unmap
	return f, nil
}

// IsFile reports whether path names a readable file that starts with the
// GGUF magic. It reads four bytes; it does not validate the rest.
func IsFile(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var m [4]byte
	_, err = io.ReadFull(f, m[:])
	return err == nil && string(m[:]) == Magic
}

// Close releases the mapping of a file opened with Open.
func (f *File) Close() error {
	if f.unmap == nil {
		return nil
	}
	err := f.unmap()
	f.unmap, f.data = nil, nil
	return err
}

// decoder reads little-endian values from a byte slice with bounds checks.
type decoder struct {
	b   []byte
	off uint64
}

func (d *decoder) remaining() uint64 { return uint64(len(d.b)) - d.off }

func (d *decoder) take(n uint64) ([]byte, error) {
	if n > d.remaining() {
		return nil, fmt.Errorf("at offset %d: need %d bytes, %d remain", d.off, n, d.remaining())
	}
	p := d.b[d.off : d.off+n]
	d.off += n
	return p, nil
}

func (d *decoder) u32() (uint32, error) {
	p, err := d.take(4)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(p), nil
}

func (d *decoder) u64() (uint64, error) {
	p, err := d.take(8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(p), nil
}

func (d *decoder) str() (string, error) {
	n, err := d.u64()
	if err != nil {
		return "", err
	}
	p, err := d.take(n)
	if err != nil {
		return "", fmt.Errorf("string of %d bytes: %w", n, err)
	}
	return string(p), nil
}

// Read parses a whole GGUF file held in memory. Tensor data aliases b.
func Read(b []byte) (*File, error) {
	d := &decoder{b: b}
	magic, err := d.take(4)
	if err != nil || string(magic) != Magic {
		return nil, fmt.Errorf("not a GGUF file (bad magic)")
	}
	f := &File{data: b, kvIndex: map[string]int{}, tIndex: map[string]int{}, Alignment: DefaultAlignment}
	if f.Version, err = d.u32(); err != nil {
		return nil, fmt.Errorf("version: %w", err)
	}
	if f.Version != 2 && f.Version != 3 {
		return nil, fmt.Errorf("unsupported GGUF version %d (want 2 or 3)", f.Version)
	}
	nTensors, err := d.u64()
	if err != nil {
		return nil, fmt.Errorf("tensor count: %w", err)
	}
	nKV, err := d.u64()
	if err != nil {
		return nil, fmt.Errorf("metadata count: %w", err)
	}
	// A KV takes at least 8 (key length) + 1 (key) + 4 (type) + 1 bytes,
	// a tensor info at least 8 + 1 + 4 + 4 + 8.
	if nKV > d.remaining()/14 {
		return nil, fmt.Errorf("metadata count %d cannot fit in %d bytes", nKV, d.remaining())
	}
	if nTensors > d.remaining()/25 {
		return nil, fmt.Errorf("tensor count %d cannot fit in %d bytes", nTensors, d.remaining())
	}
	f.KVs = make([]KV, 0, nKV)
	for i := range nKV {
		kv, err := readKV(d)
		if err != nil {
			return nil, fmt.Errorf("metadata entry %d: %w", i, err)
		}
		if _, dup := f.kvIndex[kv.Key]; dup {
			return nil, fmt.Errorf("duplicate metadata key %q", kv.Key)
		}
		f.kvIndex[kv.Key] = len(f.KVs)
		f.KVs = append(f.KVs, kv)
	}
	if v, ok := f.KV(KeyAlignment); ok {
		a, isU32 := v.V.(uint32)
		if !isU32 {
			return nil, fmt.Errorf("%s must be uint32, is %s", KeyAlignment, v.Type)
		}
		if a == 0 || a&(a-1) != 0 {
			return nil, fmt.Errorf("%s = %d is not a power of two", KeyAlignment, a)
		}
		f.Alignment = uint64(a)
	}
	f.Tensors = make([]TensorInfo, 0, nTensors)
	for i := range nTensors {
		ti, err := readTensorInfo(d)
		if err != nil {
			return nil, fmt.Errorf("tensor info %d: %w", i, err)
		}
		if _, dup := f.tIndex[ti.Name]; dup {
			return nil, fmt.Errorf("duplicate tensor name %q", ti.Name)
		}
		f.tIndex[ti.Name] = len(f.Tensors)
		f.Tensors = append(f.Tensors, ti)
	}
	start := d.off
	if nTensors > 0 {
		start = alignUp(d.off, f.Alignment)
		if start > uint64(len(b)) {
			return nil, fmt.Errorf("data section at %d starts past the end of the %d byte file", start, len(b))
		}
	}
	f.DataOffset = int64(start)
	dataLen := uint64(len(b)) - start
	var expect uint64
	for _, ti := range f.Tensors {
		if ti.Offset != expect {
			return nil, fmt.Errorf("tensor %q has offset %d, expected %d", ti.Name, ti.Offset, expect)
		}
		if ti.Size > dataLen || ti.Offset > dataLen-ti.Size {
			return nil, fmt.Errorf("tensor %q [%d, +%d) runs past the end of the %d byte data section", ti.Name, ti.Offset, ti.Size, dataLen)
		}
		expect = alignUp(ti.Offset+ti.Size, f.Alignment)
	}
	return f, nil
}

func alignUp(x, a uint64) uint64 { return (x + a - 1) / a * a }

func readKV(d *decoder) (KV, error) {
	key, err := d.str()
	if err != nil {
		return KV{}, fmt.Errorf("key: %w", err)
	}
	if key == "" {
		return KV{}, fmt.Errorf("empty key")
	}
	t, err := d.u32()
	if err != nil {
		return KV{}, fmt.Errorf("%s: type: %w", key, err)
	}
	v, err := readValue(d, ValueType(t))
	if err != nil {
		return KV{}, fmt.Errorf("%s: %w", key, err)
	}
	return KV{Key: key, Value: v}, nil
}

func readValue(d *decoder, t ValueType) (Value, error) {
	if t != ValueArray {
		v, err := readScalar(d, t)
		return Value{Type: t, V: v}, err
	}
	et, err := d.u32()
	if err != nil {
		return Value{}, fmt.Errorf("array type: %w", err)
	}
	elem := ValueType(et)
	n, err := d.u64()
	if err != nil {
		return Value{}, fmt.Errorf("array length: %w", err)
	}
	size := elem.fixedSize()
	switch {
	case elem == ValueArray:
		return Value{}, fmt.Errorf("nested arrays are not supported")
	case size < 0:
		return Value{}, fmt.Errorf("invalid array element type %d", et)
	case size == 0: // strings: at least 8 bytes each
		if n > d.remaining()/8 {
			return Value{}, fmt.Errorf("array of %d strings cannot fit in %d bytes", n, d.remaining())
		}
	default:
		if n > d.remaining()/uint64(size) {
			return Value{}, fmt.Errorf("array of %d %s cannot fit in %d bytes", n, elem, d.remaining())
		}
	}
	v := Value{Type: ValueArray, Elem: elem}
	if elem == ValueString {
		out := make([]string, n)
		for i := range out {
			if out[i], err = d.str(); err != nil {
				return Value{}, fmt.Errorf("array element %d: %w", i, err)
			}
		}
		v.V = out
		return v, nil
	}
	p, _ := d.take(n * uint64(size))
	v.V = decodeArray(elem, p, int(n))
	return v, nil
}

func decodeArray(t ValueType, p []byte, n int) any {
	le := binary.LittleEndian
	switch t {
	case ValueUint8:
		return bytes.Clone(p)
	case ValueInt8:
		return decodeLE(p, n, 1, func(b []byte) int8 { return int8(b[0]) })
	case ValueBool:
		return decodeLE(p, n, 1, func(b []byte) bool { return b[0] != 0 })
	case ValueUint16:
		return decodeLE(p, n, 2, le.Uint16)
	case ValueInt16:
		return decodeLE(p, n, 2, func(b []byte) int16 { return int16(le.Uint16(b)) })
	case ValueUint32:
		return decodeLE(p, n, 4, le.Uint32)
	case ValueInt32:
		return decodeLE(p, n, 4, func(b []byte) int32 { return int32(le.Uint32(b)) })
	case ValueFloat32:
		return decodeLE(p, n, 4, func(b []byte) float32 { return math.Float32frombits(le.Uint32(b)) })
	case ValueUint64:
		return decodeLE(p, n, 8, le.Uint64)
	case ValueInt64:
		return decodeLE(p, n, 8, func(b []byte) int64 { return int64(le.Uint64(b)) })
	case ValueFloat64:
		return decodeLE(p, n, 8, func(b []byte) float64 { return math.Float64frombits(le.Uint64(b)) })
	}
	return nil
}

// decodeLE decodes n elements of size bytes each from p (which readValue
// has checked holds n*size bytes) with dec.
func decodeLE[T any](p []byte, n, size int, dec func([]byte) T) []T {
	out := make([]T, n)
	for i := range out {
		out[i] = dec(p[size*i : size*i+size])
	}
	return out
}

func readScalar(d *decoder, t ValueType) (any, error) {
	if t == ValueString {
		return d.str()
	}
	size := t.fixedSize()
	if size <= 0 {
		return nil, fmt.Errorf("invalid value type %d", uint32(t))
	}
	p, err := d.take(uint64(size))
	if err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	switch t {
	case ValueUint8:
		return p[0], nil
	case ValueInt8:
		return int8(p[0]), nil
	case ValueBool:
		return p[0] != 0, nil
	case ValueUint16:
		return le.Uint16(p), nil
	case ValueInt16:
		return int16(le.Uint16(p)), nil
	case ValueUint32:
		return le.Uint32(p), nil
	case ValueInt32:
		return int32(le.Uint32(p)), nil
	case ValueFloat32:
		return math.Float32frombits(le.Uint32(p)), nil
	case ValueUint64:
		return le.Uint64(p), nil
	case ValueInt64:
		return int64(le.Uint64(p)), nil
	default: // ValueFloat64
		return math.Float64frombits(le.Uint64(p)), nil
	}
}

func readTensorInfo(d *decoder) (TensorInfo, error) {
	var ti TensorInfo
	var err error
	if ti.Name, err = d.str(); err != nil {
		return ti, fmt.Errorf("name: %w", err)
	}
	nd, err := d.u32()
	if err != nil {
		return ti, fmt.Errorf("%s: dimension count: %w", ti.Name, err)
	}
	if nd > MaxDims {
		return ti, fmt.Errorf("%s: %d dimensions (ggml allows %d)", ti.Name, nd, MaxDims)
	}
	ti.Dims = make([]uint64, nd)
	for i := range ti.Dims {
		if ti.Dims[i], err = d.u64(); err != nil {
			return ti, fmt.Errorf("%s: dimension %d: %w", ti.Name, i, err)
		}
	}
	t, err := d.u32()
	if err != nil {
		return ti, fmt.Errorf("%s: type: %w", ti.Name, err)
	}
	ti.Type = GGMLType(t)
	if ti.Offset, err = d.u64(); err != nil {
		return ti, fmt.Errorf("%s: offset: %w", ti.Name, err)
	}
	size, err := tensorBytes(ti.Type, ti.Dims)
	if err != nil {
		return ti, fmt.Errorf("%s: %w", ti.Name, err)
	}
	ti.Size = size
	return ti, nil
}

// tensorBytes computes the byte size of a tensor, rejecting unknown types,
// negative or overflowing dimensions, and rows that are not whole blocks.
func tensorBytes(t GGMLType, dims []uint64) (uint64, error) {
	info, ok := typeTable[t]
	if !ok {
		return 0, fmt.Errorf("unknown ggml type %d", uint32(t))
	}
	n := uint64(1)
	for i, dm := range dims {
		if dm > math.MaxInt64 {
			return 0, fmt.Errorf("dimension %d is negative (%d)", i, int64(dm))
		}
		if dm != 0 && n > math.MaxInt64/dm {
			return 0, fmt.Errorf("dimensions %v overflow", dims)
		}
		n *= dm
	}
	ne0 := uint64(1)
	if len(dims) > 0 {
		ne0 = dims[0]
	}
	if ne0%uint64(info.BlockSize) != 0 {
		return 0, fmt.Errorf("row of %d elements is not a multiple of the %s block size %d", ne0, info.Name, info.BlockSize)
	}
	blocks := n / uint64(info.BlockSize)
	if blocks > math.MaxInt64/uint64(info.TypeSize) {
		return 0, fmt.Errorf("dimensions %v overflow", dims)
	}
	return blocks * uint64(info.TypeSize), nil
}

// KV returns the value of a metadata key.
func (f *File) KV(key string) (Value, bool) {
	i, ok := f.kvIndex[key]
	if !ok {
		return Value{}, false
	}
	return f.KVs[i].Value, true
}

// Info returns the info of the named tensor.
func (f *File) Info(name string) (TensorInfo, bool) {
	i, ok := f.tIndex[name]
	if !ok {
		return TensorInfo{}, false
	}
	return f.Tensors[i], true
}

// TensorData returns the raw bytes of the named tensor (aliasing the file).
func (f *File) TensorData(name string) ([]byte, error) {
	ti, ok := f.Info(name)
	if !ok {
		return nil, fmt.Errorf("gguf: no tensor %q", name)
	}
	if f.data == nil && ti.Size > 0 {
		return nil, fmt.Errorf("gguf: tensor %q: file is closed", name)
	}
	lo := uint64(f.DataOffset) + ti.Offset
	hi := lo + ti.Size
	return f.data[lo:hi:hi], nil
}

// Float32 dequantizes the named tensor to float32 (row-major, ggml order).
func (f *File) Float32(name string) ([]float32, error) {
	ti, ok := f.Info(name)
	if !ok {
		return nil, fmt.Errorf("gguf: no tensor %q", name)
	}
	b, err := f.TensorData(name)
	if err != nil {
		return nil, err
	}
	out, err := Dequantize(ti.Type, b, ti.NumElements())
	if err != nil {
		return nil, fmt.Errorf("gguf: tensor %q: %w", name, err)
	}
	return out, nil
}

var plainDType = map[GGMLType]tensor.DType{
	TypeF32: tensor.F32, TypeF16: tensor.F16, TypeBF16: tensor.BF16, TypeF64: tensor.F64,
	TypeI8: tensor.I8, TypeI16: tensor.I16, TypeI32: tensor.I32, TypeI64: tensor.I64,
}

// Tensor returns the named tensor as a zero-copy tensor.Tensor with a
// row-major shape (Dims reversed). Plain types keep their dtype; block
// quantized types are returned as U8 of shape [..., rows, row bytes] with
// Meta "ggml_type" (e.g. "Q4_K") and "ggml_dims" (ne, innermost first).
func (f *File) Tensor(name string) (*tensor.Tensor, error) {
	ti, ok := f.Info(name)
	if !ok {
		return nil, fmt.Errorf("gguf: no tensor %q", name)
	}
	b, err := f.TensorData(name)
	if err != nil {
		return nil, err
	}
	shape := ti.Shape()
	t := &tensor.Tensor{Name: name, Shape: shape, Data: b}
	if dt, ok := plainDType[ti.Type]; ok {
		t.DType = dt
		return t, nil
	}
	info := typeTable[ti.Type]
	t.DType = tensor.U8
	if len(shape) == 0 {
		t.Shape = []int{int(ti.Size)}
	} else {
		t.Shape[len(shape)-1] = shape[len(shape)-1] / info.BlockSize * info.TypeSize
	}
	dims := ""
	for i, d := range ti.Dims {
		if i > 0 {
			dims += ","
		}
		dims += fmt.Sprint(d)
	}
	t.Meta = map[string]string{"ggml_type": info.Name, "ggml_dims": dims}
	return t, nil
}
