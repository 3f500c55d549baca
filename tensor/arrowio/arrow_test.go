package arrowio

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/marlin-llm/marlin/tensor"
)

func sampleTensors() []*tensor.Tensor {
	f := make([]byte, 4*6)
	for i := 0; i < 6; i++ {
		binary.LittleEndian.PutUint32(f[4*i:], math.Float32bits(float32(i)-2.5))
	}
	return []*tensor.Tensor{
		{Name: "model.layers.0.w", DType: tensor.F32, Shape: []int{2, 3}, Data: f, Meta: map[string]string{"format": "f32", "group": "128"}},
		{Name: "packed", DType: tensor.U8, Shape: []int{5}, Data: []byte{1, 2, 3, 4, 5}},
		{Name: "scalar", DType: tensor.BF16, Shape: []int{}, Data: []byte{0x80, 0x3f}},
		{Name: "empty", DType: tensor.F16, Shape: []int{0, 4}, Data: []byte{}},
	}
}

func TestArrowRoundTrip(t *testing.T) {
	in := sampleTensors()
	meta := map[string]string{"metric.mse": "0.001", "note": "x"}
	var buf bytes.Buffer
	if err := Write(&buf, in, meta); err != nil {
		t.Fatal(err)
	}
	out, gotMeta, err := Read(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotMeta, meta) {
		t.Errorf("meta %v", gotMeta)
	}
	if len(out) != len(in) {
		t.Fatalf("%d tensors", len(out))
	}
	for i := range in {
		a, b := in[i], out[i]
		if a.Name != b.Name || a.DType != b.DType || !reflect.DeepEqual(a.Shape, b.Shape) || !bytes.Equal(a.Data, b.Data) || !reflect.DeepEqual(a.Meta, b.Meta) {
			t.Errorf("tensor %d: got %+v want %+v", i, b, a)
		}
	}
	// deterministic bytes
	var buf2 bytes.Buffer
	if err := Write(&buf2, sampleTensors(), map[string]string{"note": "x", "metric.mse": "0.001"}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), buf2.Bytes()) {
		t.Error("same input gave different bytes")
	}
	// the file is a standard Arrow IPC file: magic at both ends
	if !bytes.HasPrefix(buf.Bytes(), []byte("ARROW1")) || !bytes.HasSuffix(buf.Bytes(), []byte("ARROW1")) {
		t.Error("missing ARROW1 magic")
	}
}

func TestArrowWriteZeroCopyData(t *testing.T) {
	// A tensor's bytes appear verbatim (contiguously) in the file: the
	// writer streams the tensor's buffer, it does not re-encode it.
	data := bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 1000)
	var buf bytes.Buffer
	if err := Write(&buf, []*tensor.Tensor{{Name: "t", DType: tensor.U32, Shape: []int{1000}, Data: data}}, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(buf.Bytes(), data) {
		t.Error("tensor bytes not found verbatim in the blob")
	}
}

func TestArrowRejectsBadInput(t *testing.T) {
	if err := Write(&bytes.Buffer{}, []*tensor.Tensor{{Name: "x", DType: tensor.F32, Shape: []int{3}, Data: make([]byte, 8)}}, nil); err == nil {
		t.Error("short data accepted")
	}
	var buf bytes.Buffer
	if err := Write(&buf, sampleTensors(), nil); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	for name, bad := range map[string][]byte{
		"empty":     {},
		"garbage":   []byte("not an arrow file at all, just some bytes...."),
		"truncated": good[:len(good)/2],
		"tail only": good[len(good)-20:],
	} {
		if _, _, err := Read(bytes.NewReader(bad), int64(len(bad))); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// every single-byte corruption yields an error or a valid decode, never a panic
	for i := 0; i < len(good); i++ {
		c := append([]byte(nil), good...)
		c[i] ^= 0xff
		Read(bytes.NewReader(c), int64(len(c)))
	}
}

func FuzzReadArrow(f *testing.F) {
	var buf bytes.Buffer
	if err := Write(&buf, sampleTensors(), map[string]string{"a": "b"}); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte("ARROW1\x00\x00ARROW1"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		ts, _, err := Read(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		for _, x := range ts {
			if err := x.Validate(); err != nil {
				t.Fatalf("decoded invalid tensor: %v", err)
			}
		}
	})
}

func BenchmarkArrowWriteRead(b *testing.B) {
	data := make([]byte, 64<<20)
	ts := []*tensor.Tensor{{Name: "w", DType: tensor.BF16, Shape: []int{4096, 8192}, Data: data}}
	b.SetBytes(int64(len(data)))
	var buf bytes.Buffer
	for i := 0; i < b.N; i++ {
		buf.Reset()
		if err := Write(&buf, ts, nil); err != nil {
			b.Fatal(err)
		}
		if _, _, err := Read(bytes.NewReader(buf.Bytes()), int64(buf.Len())); err != nil {
			b.Fatal(err)
		}
	}
}

// TestArrowRandomCorruption decodes thousands of randomly damaged blobs:
// each must give an error or valid tensors, never a panic, hang or OOM.
func TestArrowRandomCorruption(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, sampleTensors(), map[string]string{"a": "b"}); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	rng := rand.New(rand.NewPCG(1, 2))
	for it := 0; it < 5000; it++ {
		c := append([]byte(nil), good...)
		for k := 0; k < 1+rng.IntN(4); k++ {
			c[rng.IntN(len(c))] = byte(rng.Uint32())
		}
		ts, _, err := Read(bytes.NewReader(c), int64(len(c)))
		if err == nil {
			for _, x := range ts {
				if err := x.Validate(); err != nil {
					t.Fatalf("iteration %d: invalid tensor decoded: %v", it, err)
				}
			}
		}
	}
}

// TestReadArrowBytesMatchesArrowReader: the zero-copy parser and arrow/go's
// reader agree on valid blobs, and the zero-copy result aliases the input.
func TestReadArrowBytesMatchesArrowReader(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, sampleTensors(), map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	a, am, err := Read(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	b, bm, err := ReadBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != len(b) || !reflect.DeepEqual(am, bm) {
		t.Fatalf("readers disagree: %d vs %d tensors, meta %v vs %v", len(a), len(b), am, bm)
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Name != y.Name || x.DType != y.DType || !reflect.DeepEqual(x.Shape, y.Shape) || !bytes.Equal(x.Data, y.Data) || !reflect.DeepEqual(x.Meta, y.Meta) {
			t.Errorf("tensor %d: %+v vs %+v", i, x, y)
		}
	}
	// zero copy: tensor 0's bytes lie inside data
	d := b[0].Data
	if len(d) == 0 || !sliceWithin(d, data) {
		t.Error("ReadBytes copied the tensor data")
	}
	// empty set
	buf.Reset()
	Write(&buf, nil, nil)
	if ts, _, err := ReadBytes(buf.Bytes()); err != nil || len(ts) != 0 {
		t.Errorf("empty set: %v %v", ts, err)
	}
}

func sliceWithin(s, in []byte) bool {
	p, lo, hi := uintptrOf(s), uintptrOf(in), uintptrOf(in)+uintptr(len(in))
	return p >= lo && p+uintptr(len(s)) <= hi
}

// TestReadArrowBytesCorruption: random damage never panics, and whenever
// both parsers accept a damaged blob they decode the same tensors.
func TestReadArrowBytesCorruption(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, sampleTensors(), map[string]string{"a": "b"}); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	for i := range good {
		c := append([]byte(nil), good...)
		c[i] ^= 0xff
		ReadBytes(c)
		ReadBytes(c[:i])
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for it := 0; it < 5000; it++ {
		c := append([]byte(nil), good...)
		for k := 0; k < 1+rng.IntN(4); k++ {
			c[rng.IntN(len(c))] = byte(rng.Uint32())
		}
		ts, _, err := ReadBytes(c)
		if err != nil {
			continue
		}
		ref, _, rerr := Read(bytes.NewReader(c), int64(len(c)))
		if rerr != nil {
			// The zero-copy parser ignores message fields it does not need
			// (arrow/go reads them all); content damage is the store's
			// digest's job, not the parser's.
			continue
		}
		for j, x := range ts {
			if err := x.Validate(); err != nil {
				t.Fatalf("invalid tensor accepted: %v", err)
			}
			if x.Name != ref[j].Name || !bytes.Equal(x.Data, ref[j].Data) || !reflect.DeepEqual(x.Shape, ref[j].Shape) {
				t.Fatalf("iteration %d: readers disagree on tensor %d", it, j)
			}
		}
	}
}

func FuzzReadArrowBytes(f *testing.F) {
	var buf bytes.Buffer
	Write(&buf, sampleTensors(), map[string]string{"a": "b"})
	f.Add(buf.Bytes())
	f.Add([]byte("ARROW1\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ts, _, err := ReadBytes(data)
		if err != nil {
			return
		}
		for _, x := range ts {
			if err := x.Validate(); err != nil {
				t.Fatalf("invalid tensor: %v", err)
			}
		}
	})
}

func BenchmarkArrowReadBytes(b *testing.B) {
	data := make([]byte, 64<<20)
	var buf bytes.Buffer
	if err := Write(&buf, []*tensor.Tensor{{Name: "w", DType: tensor.BF16, Shape: []int{4096, 8192}, Data: data}}, nil); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for i := 0; i < b.N; i++ {
		if _, _, err := ReadBytes(buf.Bytes()); err != nil {
			b.Fatal(err)
		}
	}
}
