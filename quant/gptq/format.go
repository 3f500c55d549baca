package gptq

import (
	"context"
	"fmt"
	"math"

	"github.com/marlin-llm/marlin/quant"
)

// FormatGrid is the Grid of a quant.Format for one tensor: group scales come
// from quant.Format.FitGroup and elements from quant.Format.QuantizeValue,
// so GPTQ rounds onto exactly the grid RTN and the packers use.
type FormatGrid struct {
	f     quant.Format
	cols  int
	tscal float32
	// shared is the one scale of a PerTensor format (FP8 per tensor),
	// fitted on the original weights like the tensor scale.
	shared *quant.GroupScale
}

// NewFormatGrid builds the grid of f for a rows×cols weight w. Formats with
// a tensor scale (NVFP4) fix it here from the original weights' absmax, as
// RTN does, before GPTQ changes any weight.
func NewFormatGrid(f quant.Format, w []float32, cols int) (*FormatGrid, error) {
	if !f.Quantized() {
		return nil, fmt.Errorf("gptq: format %s does not quantize", f.Name)
	}
	if f.Bits > 8 {
		return nil, fmt.Errorf("gptq: format %s has %d-bit elements (at most 8)", f.Name, f.Bits)
	}
	g := &FormatGrid{f: f, cols: cols, tscal: 1}
	if f.TensorScale {
		var amax float32
		for _, x := range w {
			amax = max(amax, float32(math.Abs(float64(x))))
		}
		g.tscal = f.TensorScaleFor(amax)
	}
	if f.PerTensor {
		gs := f.FitGroup(w, g.tscal, nil)
		g.shared = &gs
	}
	return g, nil
}

// GroupSize implements Grid.
func (g *FormatGrid) GroupSize() int { return g.f.Group(g.cols) }

// TensorScale is the FP32 tensor scale (1 for formats without one).
func (g *FormatGrid) TensorScale() float32 { return g.tscal }

// Fit implements Grid.
func (g *FormatGrid) Fit(vals []float64, clip float64) Scale {
	if g.shared != nil {
		gs := g.shared
		return Scale{Mul: float64(gs.Mul), Zero: float64(gs.Zero), Enc: gs.Code}
	}
	var arr [256]float32 // typical groups fit: no allocation per group
	buf := arr[:0]
	if len(vals) > len(arr) {
		buf = make([]float32, len(vals))
	}
	buf = buf[:len(vals)]
	for i, v := range vals {
		buf[i] = float32(v)
	}
	var opt *quant.FitOptions
	if clip != 1 {
		opt = &quant.FitOptions{ClipRatios: []float32{float32(clip)}}
	}
	gs := g.f.FitGroup(buf, g.tscal, opt)
	return Scale{Mul: float64(gs.Mul), Zero: float64(gs.Zero), Enc: gs.Code}
}

// ClipInvariant implements ClipInvariant: E8M0 scales (MXFP4, MXFP6, ...)
// search the OCP exponent and its neighbours whatever the clip ratio, and a
// shared scale ignores it.
func (g *FormatGrid) ClipInvariant() bool {
	return g.shared != nil || g.f.Scale == quant.ScaleE8M0
}

// Round implements Grid.
func (g *FormatGrid) Round(v float64, s Scale) (uint8, float64) {
	gs := quant.GroupScale{Code: s.Enc, Zero: uint8(s.Zero), Mul: float32(s.Mul)}
	code, deq := g.f.QuantizeValue(float32(v), gs)
	return code, float64(deq)
}

// Pack stores res (computed on this grid) as a quant.Packed; act-order
// without static groups sets GIdx.
func (g *FormatGrid) Pack(res *Result) (*quant.Packed, error) {
	p, err := quant.NewPacked(g.f, res.Rows, res.Cols)
	if err != nil {
		return nil, fmt.Errorf("gptq: %w", err)
	}
	if p.Groups() != res.Groups {
		return nil, fmt.Errorf("gptq: result has %d groups per row, format %s wants %d", res.Groups, g.f.Name, p.Groups())
	}
	if g.f.TensorScale {
		p.TensorScale = g.tscal
	}
	for r := 0; r < res.Rows; r++ {
		for k := 0; k < res.Groups; k++ {
			s := res.Scales[r*res.Groups+k]
			p.SetGroup(r, k, quant.GroupScale{Code: s.Enc, Zero: uint8(s.Zero), Mul: float32(s.Mul)})
		}
		for c := 0; c < res.Cols; c++ {
			p.SetCode(r, c, res.Codes[r*res.Cols+c])
		}
	}
	if !res.IdentityGroups(g.GroupSize()) {
		p.GIdx = append([]int32(nil), res.GIdx...)
	}
	return p, nil
}

// QuantizeFormat runs GPTQ on the float32 weight w (rows×cols) with Hessian
// h onto format f and returns the packed tensor with the GPTQ result.
func QuantizeFormat(ctx context.Context, w []float32, rows, cols int, h []float64, f quant.Format, opt Options) (*quant.Packed, *Result, error) {
	if len(w) != rows*cols {
		return nil, nil, fmt.Errorf("gptq: weight has %d values for %dx%d", len(w), rows, cols)
	}
	if f.Elem == quant.ElemGGML {
		return quantizeGGML(ctx, w, rows, cols, h, f, opt)
	}
	grid, err := NewFormatGrid(f, w, cols)
	if err != nil {
		return nil, nil, err
	}
	return quantizePacked(ctx, w, rows, cols, h, grid, opt)
}

// packingGrid is a Grid that stores a GPTQ result as a quant.Packed.
type packingGrid interface {
	Grid
	Pack(res *Result) (*quant.Packed, error)
}

// quantizePacked runs GPTQ on the float32 weight w onto grid and packs the
// result.
func quantizePacked(ctx context.Context, w []float32, rows, cols int, h []float64, grid packingGrid, opt Options) (*quant.Packed, *Result, error) {
	res, err := quantize(ctx, w, rows, cols, h, grid, opt)
	if err != nil {
		return nil, nil, err
	}
	p, err := grid.Pack(res)
	if err != nil {
		return nil, nil, err
	}
	return p, res, nil
}
