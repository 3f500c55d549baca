package pipeline

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/marlin-llm/marlin/tensor"
)

// MetaSource marks a task output tensor whose bytes are an unmodified
// region of a source file (a tensor the load stage maps from a
// safetensors shard): its value is SourceRegion(path, offset). The store
// keeps such a tensor by reference, the file's path, offset, length and the
// SHA-256 of its bytes, instead of copying it into the blob, so the workdir
// holds what was computed and not a second copy of the model. Store.Get
// reads the region back and fails when its digest changed.
const MetaSource = "store.source"

// metaSourceRef holds a stored reference (JSON of sourceRef) in place of
// the tensor's bytes.
const metaSourceRef = "store.source_ref"

// sourceRef is a tensor stored by reference.
type sourceRef struct {
	Path   string `json:"path"`
	Offset int64  `json:"offset"`
	Length int64  `json:"length"`
	SHA256 string `json:"sha256"`
	DType  string `json:"dtype"`
	Shape  []int  `json:"shape"`
}

// SourceRegion is the MetaSource value of length bytes at offset in path
// whose SHA-256 is sha256 (hex). With sha256 empty, the tensor's Data must
// hold the bytes and the store hashes them; otherwise Data may be empty (a
// loader that hashed the mapped bytes as it streamed them).
func SourceRegion(path string, offset, length int64, sha256 string) string {
	b, _ := json.Marshal(sourceRef{Path: path, Offset: offset, Length: length, SHA256: sha256})
	return string(b)
}

// toRefs returns ts with every MetaSource tensor replaced by an empty
// placeholder carrying its reference.
func toRefs(ts []*tensor.Tensor) ([]*tensor.Tensor, error) {
	out, cloned := ts, false
	for i, t := range ts {
		src, ok := t.Meta[MetaSource]
		if !ok {
			continue
		}
		var r sourceRef
		if err := json.Unmarshal([]byte(src), &r); err != nil || r.Path == "" || r.Offset < 0 {
			return nil, fmt.Errorf("tensor %s: bad %s %q", t.Name, MetaSource, src)
		}
		if r.SHA256 == "" {
			sum := sha256.Sum256(t.Data)
			r.Length, r.SHA256 = int64(len(t.Data)), hex.EncodeToString(sum[:])
		}
		if n := int64(t.NumElements()) * int64(t.DType.Size()); n != r.Length {
			return nil, fmt.Errorf("tensor %s: source reference of %d bytes for %s %v", t.Name, r.Length, t.DType, t.Shape)
		}
		r.DType, r.Shape = t.DType.String(), t.Shape
		js, err := json.Marshal(r)
		if err != nil {
			return nil, err
		}
		meta := map[string]string{metaSourceRef: string(js)}
		for k, v := range t.Meta {
			if k != MetaSource {
				meta[k] = v
			}
		}
		if !cloned {
			out, cloned = slices.Clone(ts), true
		}
		out[i] = &tensor.Tensor{Name: t.Name, DType: tensor.U8, Shape: []int{0}, Data: []byte{}, Meta: meta}
	}
	return out, nil
}

// fromRefs reads the referenced regions of ts back in place, checking
// their digests.
func fromRefs(ts []*tensor.Tensor) error {
	for _, t := range ts {
		js, ok := t.Meta[metaSourceRef]
		if !ok {
			continue
		}
		var r sourceRef
		if err := json.Unmarshal([]byte(js), &r); err != nil {
			return fmt.Errorf("tensor %s: bad source reference: %w", t.Name, err)
		}
		dt, err := tensor.ParseDType(r.DType)
		if err != nil {
			return fmt.Errorf("tensor %s: %w", t.Name, err)
		}
		if r.Length < 0 || r.Length > 1<<40 {
			return fmt.Errorf("tensor %s: source reference of %d bytes", t.Name, r.Length)
		}
		f, err := os.Open(r.Path)
		if err != nil {
			return fmt.Errorf("tensor %s: source: %w", t.Name, err)
		}
		st, err := f.Stat()
		if err == nil && st.Size() < r.Offset+r.Length {
			err = fmt.Errorf("%s holds %d bytes, the reference needs %d", r.Path, st.Size(), r.Offset+r.Length)
		}
		var data []byte
		if err == nil {
			data = make([]byte, r.Length)
			_, err = io.ReadFull(io.NewSectionReader(f, r.Offset, r.Length), data)
		}
		f.Close()
		if err != nil {
			return fmt.Errorf("tensor %s: source: %w", t.Name, err)
		}
		if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != r.SHA256 {
			return fmt.Errorf("tensor %s: %s changed since it was checkpointed (bytes %d..%d no longer match): re-run with --fresh", t.Name, r.Path, r.Offset, r.Offset+r.Length)
		}
		delete(t.Meta, metaSourceRef)
		t.DType, t.Shape, t.Data = dt, r.Shape, data
		if err := t.Validate(); err != nil {
			return fmt.Errorf("tensor %s: source reference: %w", t.Name, err)
		}
	}
	return nil
}
