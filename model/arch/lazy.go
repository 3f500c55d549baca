package arch

import (
	"fmt"
	"math"

	"github.com/marlin-llm/marlin/kernels"
	"github.com/marlin-llm/marlin/tensor"
)

// Lazy is a Linear that keeps its weight as stored (BF16, F16 or F32,
// usually a view of an mmapped safetensors file) and converts it to F32 on
// every Forward, so a model built with Options.Lazy holds no F32 copy of its
// projections: memory stays at what the page cache maps. The conversion is
// O(out·in) per call against the GEMM's O(rows·out·in).
type Lazy struct {
	t       *tensor.Tensor
	out, in int
}

// NewLazy wraps a stored 2-D weight tensor of shape [out, in].
func NewLazy(t *tensor.Tensor) (*Lazy, error) {
	if t == nil || len(t.Shape) != 2 || t.Shape[0] <= 0 || t.Shape[1] <= 0 {
		return nil, fmt.Errorf("arch: lazy linear needs a 2-D tensor")
	}
	switch t.DType {
	case tensor.BF16, tensor.F16, tensor.F32, tensor.F64, tensor.F8E4M3, tensor.F8E5M2:
	default:
		return nil, fmt.Errorf("arch: lazy linear %s: dtype %s (want a float type: BF16, F16, F32, F64, F8_E4M3 or F8_E5M2)", t.Name, t.DType)
	}
	if len(t.Data) != t.Shape[0]*t.Shape[1]*t.DType.Size() {
		return nil, fmt.Errorf("arch: lazy linear %s: %d bytes for shape %v", t.Name, len(t.Data), t.Shape)
	}
	return &Lazy{t: t, out: t.Shape[0], in: t.Shape[1]}, nil
}

// Dims implements Linear.
func (l *Lazy) Dims() (int, int) { return l.out, l.in }

// Tensor returns the stored weight.
func (l *Lazy) Tensor() *tensor.Tensor { return l.t }

// decode converts the weight, rejecting non-finite values.
func (l *Lazy) decode() ([]float32, error) {
	w := make([]float32, l.out*l.in)
	if err := tensor.DecodeFloat32(w, l.t.DType, l.t.Data); err != nil {
		return nil, fmt.Errorf("%s: %w", l.t.Name, err)
	}
	if i := firstNonFinite(w); i >= 0 {
		return nil, fmt.Errorf("tensor %s: non-finite value %v at element %d", l.t.Name, w[i], i)
	}
	return w, nil
}

// Weight implements Weighted. It returns a fresh F32 copy on every call
// (nil if the stored weight holds NaN or Inf).
func (l *Lazy) Weight() []float32 {
	w, err := l.decode()
	if err != nil {
		return nil
	}
	return w
}

// Forward implements Linear.
func (l *Lazy) Forward(b kernels.Backend, x []float32, rows int, y []float32) error {
	if rows == 0 {
		return nil
	}
	w, err := l.decode()
	if err != nil {
		return err
	}
	return b.Sgemm(false, true, rows, l.out, l.in, 1, x, l.in, w, l.in, 0, y, l.out)
}

func firstNonFinite(v []float32) int {
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return i
		}
	}
	return -1
}
