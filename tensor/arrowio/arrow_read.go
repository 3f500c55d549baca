package arrowio

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/marlin-llm/marlin/tensor"
)

// ReadBytes decodes a tensor-set blob (layout in arrow.go) held in
// memory without copying: the returned tensors' Data are sub-slices of
// data, so data must stay unmodified while they are in use. It is the fast
// path the checkpoint store uses (one read of the file, no further copy);
// Read, built on arrow/go's general IPC reader, is the reference it is
// tested against.
//
// The parser is hand-written because arrow/go v17's reader always copies
// (see arrow.go). It accepts exactly the layout Write produces and
// bounds-checks every offset: a corrupt or hostile blob gives an error.
func ReadBytes(data []byte) ([]*tensor.Tensor, map[string]string, error) {
	ts, meta, err := readBytes(data)
	if err != nil {
		return nil, nil, fmt.Errorf("read arrow: %w", err)
	}
	return ts, meta, nil
}

func readBytes(data []byte) ([]*tensor.Tensor, map[string]string, error) {
	size := int64(len(data))
	if size < 18 || string(data[:6]) != "ARROW1" {
		return nil, nil, errors.New("not an Arrow IPC file (missing leading magic)")
	}
	if err := checkArrowFooter(byteReaderAt(data), size); err != nil {
		return nil, nil, err
	}
	flen := int64(binary.LittleEndian.Uint32(data[size-10:]))
	b := fbuf(data[size-10-flen : size-10])
	footer, _ := b.root()
	schema, _, _ := b.table(footer, 1)

	// schema: fields name:utf8 (type 5), data:large_binary (type 19)
	fields, _, _ := b.field(schema, 1)
	for i, want := range []struct {
		name string
		typ  byte
	}{{"name", 5}, {"data", 19}} {
		f, _ := b.indirect(fields + 4 + 4*i)
		name, err := b.str(f, 0)
		if err != nil || name != want.name {
			return nil, nil, fmt.Errorf("field %d is %q, want %q", i, name, want.name)
		}
		if tt, _ := b.u8(f, 2); tt != want.typ {
			return nil, nil, fmt.Errorf("field %q has type id %d, want %d", name, tt, want.typ)
		}
	}
	md, err := b.keyValues(schema, 2)
	if err != nil {
		return nil, nil, fmt.Errorf("schema metadata: %w", err)
	}
	if md[KeyFormat] != Format {
		return nil, nil, fmt.Errorf("%s is %q, want %q", KeyFormat, md[KeyFormat], Format)
	}
	var infos []arrowTensorInfo
	if err := json.Unmarshal([]byte(md[KeyTensors]), &infos); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", KeyTensors, err)
	}
	var meta map[string]string
	if s := md[KeyMeta]; s != "" {
		if err := json.Unmarshal([]byte(s), &meta); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", KeyMeta, err)
		}
	}
	nb, _, _ := b.vectorLen(footer, 3, 24)
	if nb != len(infos) {
		return nil, nil, fmt.Errorf("%d record batches for %d tensors", nb, len(infos))
	}
	blocks, _, _ := b.field(footer, 3)
	out := make([]*tensor.Tensor, len(infos))
	for i, info := range infos {
		p := blocks + 4 + 24*i
		off := int64(binary.LittleEndian.Uint64(b[p:]))
		metaLen := int64(int32(binary.LittleEndian.Uint32(b[p+8:])))
		bodyLen := int64(binary.LittleEndian.Uint64(b[p+16:]))
		// checkArrowFooter verified 0 < off, metaLen, bodyLen and off+metaLen+bodyLen <= size
		name, payload, err := readBatch(data[off:off+metaLen], data[off+metaLen:off+metaLen+bodyLen])
		if err != nil {
			return nil, nil, fmt.Errorf("tensor %d: %w", i, err)
		}
		if name != info.Name {
			return nil, nil, fmt.Errorf("tensor %d: name %q does not match metadata %q", i, name, info.Name)
		}
		dt, err := tensor.ParseDType(info.DType)
		if err != nil {
			return nil, nil, fmt.Errorf("tensor %q: %w", info.Name, err)
		}
		t := &tensor.Tensor{Name: info.Name, DType: dt, Shape: info.Shape, Data: payload, Meta: info.Meta}
		if t.Shape == nil {
			t.Shape = []int{}
		}
		if err := t.Validate(); err != nil {
			return nil, nil, err
		}
		out[i] = t
	}
	return out, meta, nil
}

// readBatch decodes one record batch message (continuation marker, length,
// flatbuffer Message with a RecordBatch header) and its body, returning the
// single row's name and data value.
func readBatch(msg, body []byte) (string, []byte, error) {
	if len(msg) < 8 || binary.LittleEndian.Uint32(msg) != 0xFFFFFFFF {
		return "", nil, errors.New("message lacks continuation marker")
	}
	l := int(binary.LittleEndian.Uint32(msg[4:]))
	if l <= 0 || l > len(msg)-8 {
		return "", nil, errors.New("message length out of range")
	}
	b := fbuf(msg[8 : 8+l])
	m, err := b.root()
	if err != nil {
		return "", nil, err
	}
	// Message: version(0) header_type(1) header(2) bodyLength(3)
	if ht, _ := b.u8(m, 1); ht != 3 {
		return "", nil, fmt.Errorf("message header type %d is not a record batch", ht)
	}
	if bl, _ := b.i64(m, 3); bl != int64(len(body)) {
		return "", nil, fmt.Errorf("body length %d, block says %d", bl, len(body))
	}
	rb, ok, err := b.table(m, 2)
	if err != nil || !ok {
		return "", nil, errors.New("missing record batch header")
	}
	// RecordBatch: length(0) nodes(1) buffers(2) compression(3)
	if n, _ := b.i64(rb, 0); n != 1 {
		return "", nil, fmt.Errorf("record batch has %d rows, want 1", n)
	}
	if _, ok, _ := b.field(rb, 3); ok {
		return "", nil, errors.New("compressed buffers are not used by this format")
	}
	nn, _, err := b.vectorLen(rb, 1, 16)
	if err != nil || nn != 2 {
		return "", nil, errors.New("want 2 field nodes")
	}
	nodes, _, _ := b.field(rb, 1)
	for k := 0; k < 2; k++ {
		length := int64(binary.LittleEndian.Uint64(b[nodes+4+16*k:]))
		nulls := int64(binary.LittleEndian.Uint64(b[nodes+4+16*k+8:]))
		if length != 1 || nulls != 0 {
			return "", nil, errors.New("unexpected field node")
		}
	}
	nbuf, _, err := b.vectorLen(rb, 2, 16)
	if err != nil || nbuf != 6 {
		return "", nil, errors.New("want 6 buffers")
	}
	bufs, _, _ := b.field(rb, 2)
	buf := func(k int) ([]byte, error) {
		o := int64(binary.LittleEndian.Uint64(b[bufs+4+16*k:]))
		n := int64(binary.LittleEndian.Uint64(b[bufs+4+16*k+8:]))
		if o < 0 || n < 0 || o > int64(len(body)) || n > int64(len(body))-o {
			return nil, fmt.Errorf("buffer %d out of range", k)
		}
		return body[o : o+n : o+n], nil
	}
	nameOff, err := buf(1)
	if err != nil {
		return "", nil, err
	}
	nameData, err := buf(2)
	if err != nil {
		return "", nil, err
	}
	if len(nameOff) < 8 {
		return "", nil, errors.New("name offsets too short")
	}
	n0, n1 := binary.LittleEndian.Uint32(nameOff), binary.LittleEndian.Uint32(nameOff[4:])
	if n0 > n1 || int64(n1) > int64(len(nameData)) {
		return "", nil, errors.New("name offsets out of range")
	}
	valOff, err := buf(4)
	if err != nil {
		return "", nil, err
	}
	valData, err := buf(5)
	if err != nil {
		return "", nil, err
	}
	if len(valOff) < 16 {
		return "", nil, errors.New("data offsets too short")
	}
	v0, v1 := binary.LittleEndian.Uint64(valOff), binary.LittleEndian.Uint64(valOff[8:])
	if v0 > v1 || v1 > uint64(len(valData)) {
		return "", nil, errors.New("data offsets out of range")
	}
	return string(nameData[n0:n1]), valData[v0:v1:v1], nil
}

type byteReaderAt []byte

func (r byteReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off > int64(len(r)) {
		return 0, errors.New("offset out of range")
	}
	n := copy(p, r[off:])
	if n < len(p) {
		return n, errors.New("short read")
	}
	return n, nil
}

// scalar returns the absolute position of a table's inline scalar field.
func (b fbuf) scalar(t, i, size int) (int, bool) {
	if _, err := b.checkTable(t); err != nil {
		return 0, false
	}
	vt := t - int(int32(binary.LittleEndian.Uint32(b[t:])))
	vsize := int(binary.LittleEndian.Uint16(b[vt:]))
	if 4+2*i+2 > vsize {
		return 0, false
	}
	off := int(binary.LittleEndian.Uint16(b[vt+4+2*i:]))
	if off == 0 || t+off+size > len(b) {
		return 0, false
	}
	return t + off, true
}

func (b fbuf) u8(t, i int) (byte, bool) {
	p, ok := b.scalar(t, i, 1)
	if !ok {
		return 0, false
	}
	return b[p], true
}

func (b fbuf) i64(t, i int) (int64, bool) {
	p, ok := b.scalar(t, i, 8)
	if !ok {
		return 0, false
	}
	return int64(binary.LittleEndian.Uint64(b[p:])), true
}

// str reads a string field.
func (b fbuf) str(t, i int) (string, error) {
	n, ok, err := b.vectorLen(t, i, 1)
	if err != nil || !ok {
		return "", errors.New("missing string")
	}
	p, _, _ := b.field(t, i)
	return string(b[p+4 : p+4+n]), nil
}

// keyValues reads a vector of KeyValue tables into a map.
func (b fbuf) keyValues(t, i int) (map[string]string, error) {
	if err := b.checkKVs(t, i); err != nil {
		return nil, err
	}
	out := map[string]string{}
	n, ok, _ := b.vectorLen(t, i, 4)
	if !ok {
		return out, nil
	}
	vec, _, _ := b.field(t, i)
	for k := 0; k < n; k++ {
		kv, _ := b.indirect(vec + 4 + 4*k)
		key, err := b.str(kv, 0)
		if err != nil {
			return nil, err
		}
		val, _ := b.str(kv, 1)
		out[key] = val
	}
	return out, nil
}
