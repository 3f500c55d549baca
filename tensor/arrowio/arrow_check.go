package arrowio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// checkArrowFooter walks the flatbuffer footer of an Arrow IPC file with
// bounds checks before arrow/go's reader sees it. arrow/go v17 trusts the
// counts in the footer's schema (it allocates `make([]Field, n)` for a
// corrupt n), which turns a damaged blob into a fatal out-of-memory error
// instead of an error value. Only the parts the reader allocates from are
// checked, against the layout Write produces: a schema of exactly two
// flat fields, small metadata lists, no dictionaries, and record-batch
// blocks inside the file.
func checkArrowFooter(r io.ReaderAt, size int64) error {
	const magic = "ARROW1"
	if size < 8+10 {
		return fmt.Errorf("file too small (%d bytes)", size)
	}
	tail := make([]byte, 10)
	if _, err := r.ReadAt(tail, size-10); err != nil {
		return fmt.Errorf("read footer: %w", err)
	}
	if string(tail[4:]) != magic {
		return errors.New("not an Arrow IPC file (missing trailing magic)")
	}
	flen := int64(binary.LittleEndian.Uint32(tail[:4]))
	if flen <= 0 || flen > size-10-8 || flen > 1<<24 {
		return fmt.Errorf("footer length %d out of range", flen)
	}
	fb := make([]byte, flen)
	if _, err := r.ReadAt(fb, size-10-flen); err != nil {
		return fmt.Errorf("read footer: %w", err)
	}
	b := fbuf(fb)
	footer, err := b.root()
	if err != nil {
		return err
	}
	// Footer: version(0) schema(1) dictionaries(2) recordBatches(3)
	if n, ok, err := b.vectorLen(footer, 2, 24); err != nil {
		return fmt.Errorf("dictionaries: %w", err)
	} else if ok && n != 0 {
		return errors.New("dictionaries are not used by this format")
	}
	nb, _, err := b.vectorLen(footer, 3, 24)
	if err != nil {
		return fmt.Errorf("record batches: %w", err)
	}
	if vec, ok, _ := b.field(footer, 3); ok {
		for i := 0; i < nb; i++ {
			p := vec + 4 + 24*i
			off := int64(binary.LittleEndian.Uint64(fb[p:]))
			meta := int64(int32(binary.LittleEndian.Uint32(fb[p+8:])))
			body := int64(binary.LittleEndian.Uint64(fb[p+16:]))
			if off < 8 || meta <= 0 || body < 0 || off > size || meta > size || body > size || off+meta+body > size {
				return fmt.Errorf("record batch %d: block out of range", i)
			}
		}
	}
	schema, ok, err := b.table(footer, 1)
	if err != nil || !ok {
		return fmt.Errorf("schema: missing or corrupt (%v)", err)
	}
	// Schema: endianness(0) fields(1) custom_metadata(2) features(3)
	if err := b.checkKVs(schema, 2); err != nil {
		return fmt.Errorf("schema metadata: %w", err)
	}
	if _, _, err := b.vectorLen(schema, 3, 8); err != nil {
		return fmt.Errorf("schema features: %w", err)
	}
	nf, _, err := b.vectorLen(schema, 1, 4)
	if err != nil {
		return fmt.Errorf("schema fields: %w", err)
	}
	if nf != 2 {
		return fmt.Errorf("schema has %d fields, want 2", nf)
	}
	fields, _, _ := b.field(schema, 1)
	for i := 0; i < nf; i++ {
		f, err := b.indirect(fields + 4 + 4*i)
		if err == nil {
			f, err = b.checkTable(f)
		}
		if err != nil {
			return fmt.Errorf("field %d: %w", i, err)
		}
		// Field: name(0) nullable(1) type_type(2) type(3) dictionary(4) children(5) custom_metadata(6)
		if n, ok, err := b.vectorLen(f, 5, 4); err != nil || (ok && n != 0) {
			return fmt.Errorf("field %d: unexpected children", i)
		}
		if _, ok, err := b.field(f, 4); err != nil || ok {
			return fmt.Errorf("field %d: unexpected dictionary encoding", i)
		}
		if err := b.checkKVs(f, 6); err != nil {
			return fmt.Errorf("field %d metadata: %w", i, err)
		}
		if _, ok, err := b.table(f, 3); err != nil || !ok {
			return fmt.Errorf("field %d: bad type", i)
		}
	}
	return nil
}

// fbuf is a flatbuffer with bounds-checked accessors.
type fbuf []byte

func (b fbuf) u32(p int) (int, error) {
	if p < 0 || p+4 > len(b) {
		return 0, errors.New("offset out of range")
	}
	return int(binary.LittleEndian.Uint32(b[p:])), nil
}

func (b fbuf) root() (int, error) {
	o, err := b.u32(0)
	if err != nil {
		return 0, err
	}
	return b.checkTable(o)
}

func (b fbuf) checkTable(t int) (int, error) {
	if t < 0 || t+4 > len(b) {
		return 0, errors.New("table out of range")
	}
	vt := t - int(int32(binary.LittleEndian.Uint32(b[t:])))
	if vt < 0 || vt+4 > len(b) {
		return 0, errors.New("vtable out of range")
	}
	vsize := int(binary.LittleEndian.Uint16(b[vt:]))
	if vsize < 4 || vt+vsize > len(b) || vsize%2 != 0 {
		return 0, errors.New("vtable size out of range")
	}
	tsize := int(binary.LittleEndian.Uint16(b[vt+2:]))
	if t+tsize > len(b) {
		return 0, errors.New("table size out of range")
	}
	return t, nil
}

// field returns the absolute position of a table's field (following the
// uoffset for offset-typed fields) and whether it is present.
func (b fbuf) field(t, i int) (int, bool, error) {
	if _, err := b.checkTable(t); err != nil {
		return 0, false, err
	}
	vt := t - int(int32(binary.LittleEndian.Uint32(b[t:])))
	vsize := int(binary.LittleEndian.Uint16(b[vt:]))
	if 4+2*i+2 > vsize {
		return 0, false, nil
	}
	off := int(binary.LittleEndian.Uint16(b[vt+4+2*i:]))
	if off == 0 {
		return 0, false, nil
	}
	p, err := b.indirect(t + off)
	return p, err == nil, err
}

func (b fbuf) indirect(p int) (int, error) {
	o, err := b.u32(p)
	if err != nil {
		return 0, err
	}
	q := p + o
	if q < 0 || q+4 > len(b) {
		return 0, errors.New("offset out of range")
	}
	return q, nil
}

func (b fbuf) table(t, i int) (int, bool, error) {
	p, ok, err := b.field(t, i)
	if err != nil || !ok {
		return 0, ok, err
	}
	p, err = b.checkTable(p)
	return p, err == nil, err
}

func (b fbuf) vectorLen(t, i, elem int) (int, bool, error) {
	p, ok, err := b.field(t, i)
	if err != nil || !ok {
		return 0, ok, err
	}
	n, err := b.u32(p)
	if err != nil {
		return 0, true, err
	}
	if int64(n)*int64(elem) > int64(len(b)-p-4) {
		return 0, true, fmt.Errorf("vector of %d elements does not fit", n)
	}
	return n, true, nil
}

func (b fbuf) checkKVs(t, i int) error {
	n, ok, err := b.vectorLen(t, i, 4)
	if err != nil || !ok {
		return err
	}
	if n > 1024 {
		return fmt.Errorf("%d metadata entries", n)
	}
	vec, _, _ := b.field(t, i)
	for k := 0; k < n; k++ {
		kv, err := b.indirect(vec + 4 + 4*k)
		if err != nil {
			return err
		}
		if kv, err = b.checkTable(kv); err != nil {
			return err
		}
		for f := 0; f < 2; f++ {
			if _, _, err := b.vectorLen(kv, f, 1); err != nil {
				return err
			}
		}
	}
	return nil
}
