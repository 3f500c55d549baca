package kernels

import (
	"fmt"
	"sync"

	"github.com/marlin-llm/marlin/quant"
)

// PreparedWeight is a packed weight with the state its products need (code
// tables, scale decoding, the choice of kernel) built once, for weights
// that are multiplied many times: a model's projections during decode. The
// packed weight must not be modified while a PreparedWeight of it is in
// use. It is safe for concurrent use.
type PreparedWeight interface {
	// Weight returns the packed weight.
	Weight() *quant.Packed
	// DequantGEMM computes C = X·Wᵀ + beta*C exactly as the backend's
	// DequantGEMM does for Weight().
	DequantGEMM(m int, x []float32, ldx int, beta float32, c []float32, ldc int) error
}

// Preparer is implemented by backends whose DequantGEMM gains from
// preparing a weight once (the CPU backend).
type Preparer interface {
	// Prepare validates w and builds its PreparedWeight.
	Prepare(w *quant.Packed) (PreparedWeight, error)
}

// Prepare returns b's prepared form of w when b is a Preparer, and
// otherwise a PreparedWeight that calls b.DequantGEMM.
func Prepare(b Backend, w *quant.Packed) (PreparedWeight, error) {
	if p, ok := b.(Preparer); ok {
		return p.Prepare(w)
	}
	if w == nil {
		return nil, fmt.Errorf("kernels: prepare: nil weight: %w", ErrShape)
	}
	if err := w.Validate(); err != nil {
		return nil, fmt.Errorf("kernels: prepare: %w", err)
	}
	return backendWeight{b, w}, nil
}

// backendWeight is the PreparedWeight of a backend without preparation.
type backendWeight struct {
	b Backend
	w *quant.Packed
}

func (p backendWeight) Weight() *quant.Packed { return p.w }

func (p backendWeight) DequantGEMM(m int, x []float32, ldx int, beta float32, c []float32, ldc int) error {
	return p.b.DequantGEMM(m, x, ldx, p.w, beta, c, ldc)
}

// cpuPrepared is the CPU backend's PreparedWeight.
type cpuPrepared struct {
	c   *cpu
	w   *quant.Packed
	dec *tileDecoder
	q8  *q8Weight // nil: no int8-activation GEMV
	// acts recycles the quantized activation rows of q8GEMV.
	acts sync.Pool
}

// getAct returns a q8Act for a row of the weight's inputs.
func (p *cpuPrepared) getAct() *q8Act {
	if a, ok := p.acts.Get().(*q8Act); ok {
		return a
	}
	return newQ8Act(p.w.Cols)
}

// Prepare implements Preparer.
func (c *cpu) Prepare(w *quant.Packed) (PreparedWeight, error) {
	if w == nil {
		return nil, fmt.Errorf("kernels: prepare: nil weight: %w", ErrShape)
	}
	if err := w.Validate(); err != nil {
		return nil, fmt.Errorf("kernels: prepare: %w", err)
	}
	return c.prepare(w, true), nil
}

// prepare builds the prepared form of a validated weight; gemv says
// whether it will serve small batches (the int8 path's state is built
// only then).
func (c *cpu) prepare(w *quant.Packed, gemv bool) *cpuPrepared {
	p := &cpuPrepared{c: c, w: w, dec: newTileDecoder(w, c.simd)}
	if gemv && c.simd && !c.f32Act {
		p.q8 = newQ8Weight(w)
		if p.q8 != nil && p.q8.kind == q8F16 && !haveF16C {
			p.q8 = nil
		}
	}
	return p
}

func (p *cpuPrepared) Weight() *quant.Packed { return p.w }

func (p *cpuPrepared) DequantGEMM(m int, x []float32, ldx int, beta float32, c []float32, ldc int) error {
	return p.c.dequantGEMM(m, x, ldx, p, beta, c, ldc)
}

// q8GEMV runs C += X·Wᵀ (m < dqBigM) through the int8-activation kernel.
// It returns false, having done nothing, when a row of X is not finite.
func (c *cpu) q8GEMV(m int, x []float32, ldx int, pw *cpuPrepared, cm []float32, ldc int) bool {
	w, q := pw.w, pw.q8
	rows, cols := w.Rows, w.Cols
	var acts [dqBigM]*q8Act
	for i := 0; i < m; i++ {
		acts[i] = pw.getAct()
		defer pw.acts.Put(acts[i])
		if !acts[i].quantize(x[i*ldx : i*ldx+cols]) {
			return false
		}
	}
	rb, ng := w.RowBytes(), cols/q8Block
	tasks := (rows + dqTaskRows - 1) / dqTaskRows
	parallelFor(c.threadsFor(m*rows*cols/8), tasks, func(_, t int) {
		r0 := t * dqTaskRows
		nr := min(dqTaskRows, rows-r0)
		for i, a := range acts[:m] {
			switch q.kind {
			case q8E8M0:
				q8MXRows(w.Codes[r0*rb:], rb, w.Scales[r0*ng:], nr, a, &q.lut, cm[i*ldc+r0:])
				continue
			case q8E4M3:
				q8NVRows(w.Codes[r0*rb:], rb, w.Scales[2*r0*ng:], nr, a, q, cm[i*ldc+r0:])
				continue
			}
			var zeros []byte
			if q.asym {
				zeros = w.Zeros[r0*ng/q.k:]
			}
			q8F16Rows(w.Codes[r0*rb:], rb, w.Scales[2*r0*ng/q.k:], zeros, nr, a, q, cm[i*ldc+r0:])
		}
	})
	return true
}
