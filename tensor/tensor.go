// Package tensor holds marlin's tensor type: a named, typed, shaped block of
// little-endian bytes. Tensors are what stages exchange and what checkpoints
// store (as Arrow IPC, see tensor/arrowio); the bytes may alias an mmapped file.
package tensor

import (
	"fmt"
	"sort"
	"strings"
)

// DType is an element type, named as safetensors names it.
type DType uint8

// Element types. U8 also carries packed quantized payloads; their layout is
// described by the tensor's Meta (see the quant package).
const (
	Invalid DType = iota
	F64
	F32
	F16
	BF16
	F8E4M3
	F8E5M2
	I64
	I32
	I16
	I8
	U8
	U16
	U32
	U64
	Bool
)

var dtypeInfo = [...]struct {
	name string
	size int
}{
	Invalid: {"INVALID", 0},
	F64:     {"F64", 8},
	F32:     {"F32", 4},
	F16:     {"F16", 2},
	BF16:    {"BF16", 2},
	F8E4M3:  {"F8_E4M3", 1},
	F8E5M2:  {"F8_E5M2", 1},
	I64:     {"I64", 8},
	I32:     {"I32", 4},
	I16:     {"I16", 2},
	I8:      {"I8", 1},
	U8:      {"U8", 1},
	U16:     {"U16", 2},
	U32:     {"U32", 4},
	U64:     {"U64", 8},
	Bool:    {"BOOL", 1},
}

// String returns the safetensors name of d ("BF16", "F8_E4M3", ...).
func (d DType) String() string {
	if int(d) < len(dtypeInfo) {
		return dtypeInfo[d].name
	}
	return fmt.Sprintf("DType(%d)", uint8(d))
}

// Size is the size of one element in bytes (0 for Invalid).
func (d DType) Size() int {
	if int(d) < len(dtypeInfo) {
		return dtypeInfo[d].size
	}
	return 0
}

// ParseDType parses a safetensors dtype name (case-insensitive).
func ParseDType(s string) (DType, error) {
	u := strings.ToUpper(s)
	for i, info := range dtypeInfo {
		if i != int(Invalid) && info.name == u {
			return DType(i), nil
		}
	}
	return Invalid, fmt.Errorf("unknown dtype %q", s)
}

// Tensor is a named n-dimensional array of little-endian elements.
//
// Data may alias memory the tensor does not own (an mmapped checkpoint);
// callers that keep a tensor beyond the life of its source must Clone it.
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
	// Meta carries self-describing attributes (quantization format, group
	// size, rotation, ...) that travel into checkpoints and exports.
	Meta map[string]string
}

// NumElements is the product of the shape (1 for a scalar).
func (t *Tensor) NumElements() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// maxElements bounds the element count of any tensor (about 10^15), so that
// sizes computed from shapes never overflow.
const maxElements = 1 << 50

// shapeElements returns the element count of shape, rejecting negative
// dimensions and counts over maxElements. The bound is checked before each
// multiplication, so that shapes whose product wraps around int64 (e.g.
// [2^32, 2^32], which would otherwise count as 0) are refused too.
func shapeElements(shape []int) (int64, error) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension in shape %v", shape)
		}
		if d != 0 && n > maxElements/int64(d) {
			return 0, fmt.Errorf("shape %v too large", shape)
		}
		n *= int64(d)
	}
	return n, nil
}

// Clone returns a deep copy of t that owns its data.
func (t *Tensor) Clone() *Tensor {
	c := &Tensor{Name: t.Name, DType: t.DType, Shape: append([]int(nil), t.Shape...), Data: append([]byte(nil), t.Data...)}
	if t.Meta != nil {
		c.Meta = make(map[string]string, len(t.Meta))
		for k, v := range t.Meta {
			c.Meta[k] = v
		}
	}
	return c
}

// Validate checks that the data length matches dtype × shape.
func (t *Tensor) Validate() error {
	n, err := shapeElements(t.Shape)
	if err != nil {
		return fmt.Errorf("tensor %q: %w", t.Name, err)
	}
	if want := n * int64(t.DType.Size()); want != int64(len(t.Data)) {
		return fmt.Errorf("tensor %q: %s%v needs %d bytes, have %d", t.Name, t.DType, t.Shape, want, len(t.Data))
	}
	return nil
}

// SortedMetaKeys returns m's keys in order (helper for deterministic output).
func SortedMetaKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
