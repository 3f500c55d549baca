package arch

import (
	"fmt"
	"sync/atomic"

	"github.com/marlin-llm/marlin/kernels"
	"github.com/marlin-llm/marlin/quant"
)

// Linear is a projection y = x·Wᵀ (+ bias) with W of out×in features. The
// model calls it for every nn.Linear of the checkpoint; implementations may
// hold dense F32 weights (Dense) or packed quantized ones (Quantized).
type Linear interface {
	// Dims returns the output and input feature counts.
	Dims() (out, in int)
	// Forward overwrites y (rows×out) with x (rows×in)·Wᵀ (+ bias).
	Forward(b kernels.Backend, x []float32, rows int, y []float32) error
}

// Weighted is a Linear whose dense weight can be read.
type Weighted interface {
	Linear
	// Weight returns W as out×in row-major floats; callers must not modify it.
	Weight() []float32
}

// Dense is a Linear with F32 weights, run by the backend's SGEMM.
type Dense struct {
	out, in int
	w       []float32
	bias    []float32
}

// NewDense returns a Dense layer of out×in row-major weights w and an
// optional bias of out entries. w and bias are used, not copied.
func NewDense(out, in int, w, bias []float32) (*Dense, error) {
	if out <= 0 || in <= 0 || len(w) != out*in {
		return nil, fmt.Errorf("arch: dense linear %dx%d with %d weights", out, in, len(w))
	}
	if bias != nil && len(bias) != out {
		return nil, fmt.Errorf("arch: dense linear %dx%d with a bias of %d entries", out, in, len(bias))
	}
	return &Dense{out: out, in: in, w: w, bias: bias}, nil
}

// Dims implements Linear.
func (d *Dense) Dims() (int, int) { return d.out, d.in }

// Weight implements Weighted.
func (d *Dense) Weight() []float32 { return d.w }

// Bias returns the bias (nil when the layer has none).
func (d *Dense) Bias() []float32 { return d.bias }

// Forward implements Linear.
func (d *Dense) Forward(b kernels.Backend, x []float32, rows int, y []float32) error {
	if rows == 0 {
		return nil
	}
	if err := b.Sgemm(false, true, rows, d.out, d.in, 1, x, d.in, d.w, d.in, 0, y, d.out); err != nil {
		return err
	}
	addBias(y, d.bias, rows)
	return nil
}

// Quantized is a Linear that runs directly from packed weights through the
// backend's dequant-GEMM. The weight is prepared (kernels.Prepare) for the
// backend of the first Forward and re-prepared if another backend calls.
type Quantized struct {
	m    *quant.Packed
	bias []float32
	prep atomic.Pointer[preparedFor]
}

// preparedFor is a prepared weight and the backend it was prepared for.
type preparedFor struct {
	b  kernels.Backend
	pw kernels.PreparedWeight
}

// NewQuantized wraps a packed matrix (rows = out features) and an optional
// bias.
func NewQuantized(m *quant.Packed, bias []float32) (*Quantized, error) {
	if m == nil {
		return nil, fmt.Errorf("arch: quantized linear: nil matrix")
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("arch: quantized linear: %w", err)
	}
	out, in := m.Rows, m.Cols
	if out <= 0 || in <= 0 || (bias != nil && len(bias) != out) {
		return nil, fmt.Errorf("arch: quantized linear %dx%d with a bias of %d entries", out, in, len(bias))
	}
	return &Quantized{m: m, bias: bias}, nil
}

// Dims implements Linear.
func (q *Quantized) Dims() (int, int) { return q.m.Rows, q.m.Cols }

// Matrix returns the packed weights.
func (q *Quantized) Matrix() *quant.Packed { return q.m }

// Forward implements Linear.
func (q *Quantized) Forward(b kernels.Backend, x []float32, rows int, y []float32) error {
	if rows == 0 {
		return nil
	}
	p := q.prep.Load()
	if p == nil || p.b != b {
		pw, err := kernels.Prepare(b, q.m)
		if err != nil {
			return err
		}
		p = &preparedFor{b: b, pw: pw}
		q.prep.Store(p)
	}
	out, in := q.m.Rows, q.m.Cols
	if err := p.pw.DequantGEMM(rows, x, in, 0, y, out); err != nil {
		return err
	}
	addBias(y, q.bias, rows)
	return nil
}

func addBias(y, bias []float32, rows int) {
	if bias == nil {
		return
	}
	n := len(bias)
	for r := 0; r < rows; r++ {
		row := y[r*n : r*n+n]
		for i, v := range bias {
			row[i] += v
		}
	}
}

// Proj is a named, swappable Linear slot of a model: one nn.Linear of the
// checkpoint, named like its weight without ".weight"
// ("model.layers.0.self_attn.q_proj", "model.layers.1.mlp.experts.3.up_proj",
// "lm_head").
type Proj struct {
	name     string
	layer    int // decoder layer index, -1 for lm_head
	expert   int // routed expert index, -1 otherwise
	inputKey string
	lin      Linear
}

// Name is the checkpoint name of the projection (weight name minus ".weight").
func (p *Proj) Name() string { return p.name }

// InputKey identifies the projection's input: projections with the same key
// always receive identical inputs in a forward pass (q/k/v_proj, gate/up_proj
// of one MLP, a router and its layer's shared experts), so calibration can
// accumulate one Hessian for all of them. It defaults to Name.
func (p *Proj) InputKey() string {
	if p.inputKey == "" {
		return p.name
	}
	return p.inputKey
}

// shareInput gives ps the input key key.
func shareInput(key string, ps ...*Proj) {
	for _, p := range ps {
		if p != nil {
			p.inputKey = key
		}
	}
}

// Layer is the decoder layer the projection belongs to (-1 for lm_head).
func (p *Proj) Layer() int { return p.layer }

// Expert is the routed expert index, or -1 for projections outside experts.
func (p *Proj) Expert() int { return p.expert }

// Linear returns the current implementation.
func (p *Proj) Linear() Linear { return p.lin }

// Set replaces the implementation, which must have the same dimensions.
// It must not be called while a forward pass runs.
func (p *Proj) Set(l Linear) error {
	if l == nil {
		return fmt.Errorf("arch: %s: nil linear", p.name)
	}
	o1, i1 := p.lin.Dims()
	o2, i2 := l.Dims()
	if o1 != o2 || i1 != i2 {
		return fmt.Errorf("arch: %s: replacement is %dx%d, want %dx%d", p.name, o2, i2, o1, i1)
	}
	p.lin = l
	return nil
}
