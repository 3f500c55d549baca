package safetensors

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"

	"github.com/marlin-llm/marlin/tensor"
)

// MaxHeaderSize caps the JSON header (the reference implementation uses the
// same 100 MB limit). Larger headers are rejected before anything is read.
const MaxHeaderSize = 100 << 20

// maxDims caps the rank of a tensor; real checkpoints stay far below.
const maxDims = 64

// maxBytes caps a single tensor's byte size (2^50, a petabyte).
const maxBytes = int64(1) << 50

// TensorInfo describes one tensor of a safetensors file.
type TensorInfo struct {
	// Name is the tensor's key in the header.
	Name string
	// DType is the element type.
	DType tensor.DType
	// Shape is the tensor's shape (empty for a scalar).
	Shape []int
	// Begin and End are byte offsets relative to the start of the data
	// section (right after the header), as written in data_offsets.
	Begin, End int64
	// File is the path of the file holding the tensor (set by Open).
	File string
}

// Size is the tensor's size in bytes.
func (ti TensorInfo) Size() int64 { return ti.End - ti.Begin }

// NumElements is the product of the shape.
func (ti TensorInfo) NumElements() int64 {
	n := int64(1)
	for _, d := range ti.Shape {
		n *= int64(d)
	}
	return n
}

// Header is a parsed and validated safetensors header.
type Header struct {
	// Metadata is the optional "__metadata__" string map.
	Metadata map[string]string
	// Tensors lists the tensors in data order (ascending Begin).
	Tensors []TensorInfo
}

type rawInfo struct {
	DType       string          `json:"dtype"`
	Shape       json.RawMessage `json:"shape"`
	DataOffsets json.RawMessage `json:"data_offsets"`
}

// maxArrayText bounds the JSON text of a shape or data_offsets array before
// it is decoded, so a hostile header cannot make a huge integer slice.
const maxArrayText = 4096

func decodeInts(raw json.RawMessage, what string) ([]int64, error) {
	if len(raw) > maxArrayText {
		return nil, fmt.Errorf("%s: %d bytes of JSON is too long", what, len(raw))
	}
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || string(t) == "null" {
		return nil, nil
	}
	// The array holds only integers (anything else is an error), so it is
	// split by hand: json.Unmarshal would allocate a decoder per call,
	// which dominates the cost of headers with a million tensors.
	if t[0] != '[' || t[len(t)-1] != ']' {
		return nil, fmt.Errorf("%s: want an array of integers, got %s", what, t)
	}
	body := bytes.TrimSpace(t[1 : len(t)-1])
	v := []int64{}
	if len(body) == 0 {
		return v, nil
	}
	for _, f := range bytes.Split(body, []byte{','}) {
		f = bytes.TrimSpace(f)
		n, err := strconv.ParseInt(string(f), 10, 64)
		if err != nil || (len(f) > 1 && (f[0] == '0' || (f[0] == '-' && f[1] == '0'))) || (len(f) > 0 && f[0] == '+') {
			return nil, fmt.Errorf("%s: %q is not an integer", what, f)
		}
		v = append(v, n)
	}
	return v, nil
}

// ParseHeader parses and validates a safetensors JSON header for a data
// section of dataLen bytes. It rejects duplicate names, unknown dtypes,
// negative or overflowing shapes, byte lengths that disagree with
// dtype × shape, offsets outside the data section and overlapping tensors.
func ParseHeader(b []byte, dataLen int64) (*Header, error) {
	if len(b) > MaxHeaderSize {
		return nil, fmt.Errorf("header of %d bytes exceeds the %d byte limit", len(b), MaxHeaderSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("header: want a JSON object, got %v", tok)
	}
	h := &Header{}
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("header: %w", err)
		}
		name, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("header: want a key, got %v", tok)
		}
		if seen[name] {
			return nil, fmt.Errorf("header: duplicate entry %q", name)
		}
		seen[name] = true
		if name == "__metadata__" {
			var md map[string]string
			if err := dec.Decode(&md); err != nil {
				return nil, fmt.Errorf("header: __metadata__ must map strings to strings: %w", err)
			}
			h.Metadata = md
			continue
		}
		var ri rawInfo
		if err := dec.Decode(&ri); err != nil {
			return nil, fmt.Errorf("header: tensor %q: %w", name, err)
		}
		ti, err := checkInfo(name, ri, dataLen)
		if err != nil {
			return nil, fmt.Errorf("header: %w", err)
		}
		h.Tensors = append(h.Tensors, ti)
	}
	if _, err := dec.Token(); err != nil { // closing brace
		return nil, fmt.Errorf("header: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("header: trailing data after the JSON object")
	}
	sort.SliceStable(h.Tensors, func(i, j int) bool {
		a, b := h.Tensors[i], h.Tensors[j]
		if a.Begin != b.Begin {
			return a.Begin < b.Begin
		}
		return a.End < b.End
	})
	for i := 1; i < len(h.Tensors); i++ {
		prev, cur := h.Tensors[i-1], h.Tensors[i]
		if cur.Begin < prev.End {
			return nil, fmt.Errorf("header: tensors %q [%d,%d) and %q [%d,%d) overlap",
				prev.Name, prev.Begin, prev.End, cur.Name, cur.Begin, cur.End)
		}
	}
	return h, nil
}

func checkInfo(name string, ri rawInfo, dataLen int64) (TensorInfo, error) {
	ti := TensorInfo{Name: name}
	if name == "" {
		return ti, fmt.Errorf("empty tensor name")
	}
	dt, err := tensor.ParseDType(ri.DType)
	if err != nil || dt == tensor.Invalid {
		return ti, fmt.Errorf("tensor %q: unsupported dtype %q", name, ri.DType)
	}
	ti.DType = dt
	shape, err := decodeInts(ri.Shape, "shape")
	if err != nil {
		return ti, fmt.Errorf("tensor %q: %w", name, err)
	}
	if shape == nil {
		return ti, fmt.Errorf("tensor %q: missing shape", name)
	}
	if len(shape) > maxDims {
		return ti, fmt.Errorf("tensor %q: %d dimensions (limit %d)", name, len(shape), maxDims)
	}
	n := int64(1)
	ti.Shape = make([]int, len(shape))
	for i, d := range shape {
		if d < 0 {
			return ti, fmt.Errorf("tensor %q: negative dimension in shape %v", name, shape)
		}
		if d != 0 && n > maxBytes/d {
			return ti, fmt.Errorf("tensor %q: shape %v too large", name, shape)
		}
		n *= d
		ti.Shape[i] = int(d)
	}
	offs, err := decodeInts(ri.DataOffsets, "data_offsets")
	if err != nil {
		return ti, fmt.Errorf("tensor %q: %w", name, err)
	}
	if len(offs) != 2 {
		return ti, fmt.Errorf("tensor %q: data_offsets must have 2 entries, got %d", name, len(offs))
	}
	ti.Begin, ti.End = offs[0], offs[1]
	if ti.Begin < 0 || ti.End < ti.Begin {
		return ti, fmt.Errorf("tensor %q: bad data_offsets [%d, %d]", name, ti.Begin, ti.End)
	}
	if ti.End > dataLen {
		return ti, fmt.Errorf("tensor %q: data_offsets [%d, %d] past the end of the %d byte data section", name, ti.Begin, ti.End, dataLen)
	}
	if n > maxBytes/int64(dt.Size()) {
		return ti, fmt.Errorf("tensor %q: shape %v too large", name, shape)
	}
	if want := n * int64(dt.Size()); want != ti.End-ti.Begin {
		return ti, fmt.Errorf("tensor %q: %s%v needs %d bytes but data_offsets span %d", name, dt, shape, want, ti.End-ti.Begin)
	}
	return ti, nil
}
