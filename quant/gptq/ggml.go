package gptq

import (
	"context"
	"fmt"

	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/quant/ggml"
)

// StaticFitter is a Grid whose scales are fitted for the whole tensor
// before any GPTQ update, because several groups share stored state (the
// super-block scales of the GGML K-quants). Quantize calls FitStatic
// instead of Fit; it needs Options.StaticGroups.
type StaticFitter interface {
	// FitStatic returns the rows×groups scales of w (rows×cols,
	// row-major) given the Hessian diagonal hdiag (len cols).
	FitStatic(w []float64, rows, cols int, hdiag []float64) ([]Scale, error)
}

// GGMLGrid is the grid of a GGML block format (quant.ElemGGML): the
// blocks' scales are fitted first by llama.cpp's importance-weighted
// quantizer with the Hessian diagonal as importance (what llama-quantize
// does with an imatrix), then GPTQ chooses every element's code under
// those fixed scales with error feedback across columns. In its Scales,
// Mul is a group's multiplier D and Zero the subtracted offset M in weight
// units (value = D·level − M, quant/ggml.Grid). A GGMLGrid keeps the
// fitted blocks, so it serves one tensor.
type GGMLGrid struct {
	f      quant.Format
	g      *ggml.Grid
	rows   int
	cols   int
	blocks []byte
}

// NewGGMLGrid builds the grid of GGML format f for rows of cols weights.
func NewGGMLGrid(f quant.Format, cols int) (*GGMLGrid, error) {
	if f.Elem != quant.ElemGGML {
		return nil, fmt.Errorf("gptq: format %s is not a GGML block type", f.Name)
	}
	g, err := ggml.LookupGrid(f.GGML)
	if err != nil {
		return nil, fmt.Errorf("gptq: %w", err)
	}
	if cols%g.BlockSize != 0 {
		return nil, fmt.Errorf("gptq: format %s: rows of %d weights do not fill whole blocks of %d", f.Name, cols, g.BlockSize)
	}
	return &GGMLGrid{f: f, g: g, cols: cols}, nil
}

// GroupSize implements Grid.
func (g *GGMLGrid) GroupSize() int { return g.g.Group }

// Fit implements Grid; GGML scales come from FitStatic only, so Fit
// returns the zero scale.
func (g *GGMLGrid) Fit([]float64, float64) Scale { return Scale{} }

// Round implements Grid.
func (g *GGMLGrid) Round(v float64, s Scale) (uint8, float64) {
	c, q := g.g.Round(float32(v), float32(s.Mul), float32(s.Zero))
	return c, float64(q)
}

// FitStatic implements StaticFitter: every row is encoded with the
// importance weights hdiag and its blocks' scales are read back.
func (g *GGMLGrid) FitStatic(w []float64, rows, cols int, hdiag []float64) ([]Scale, error) {
	if cols != g.cols || len(w) != rows*cols || len(hdiag) != cols {
		return nil, fmt.Errorf("gptq: ggml fit: %d weights, %d diagonal entries for %dx%d", len(w), len(hdiag), rows, cols)
	}
	rb := g.g.RowBytes(cols)
	g.rows = rows
	g.blocks = make([]byte, rows*rb)
	qw := make([]float32, cols)
	for i, v := range hdiag {
		qw[i] = float32(max(v, 0))
	}
	ng := cols / g.g.Group
	out := make([]Scale, rows*ng)
	x := make([]float32, cols)
	d, m := make([]float32, ng), make([]float32, ng)
	for r := 0; r < rows; r++ {
		for c := range x {
			x[c] = float32(w[r*cols+c])
		}
		row := g.blocks[r*rb : (r+1)*rb]
		if err := g.g.Encode(row, x, qw); err != nil {
			return nil, fmt.Errorf("gptq: row %d: %w", r, err)
		}
		g.g.Params(row, d, m)
		for k := range d {
			out[r*ng+k] = Scale{Mul: float64(d[k]), Zero: float64(m[k])}
		}
	}
	return out, nil
}

// Pack stores the GPTQ codes into the fitted blocks.
func (g *GGMLGrid) Pack(res *Result) (*quant.Packed, error) {
	if g.blocks == nil || res.Rows != g.rows || res.Cols != g.cols {
		return nil, fmt.Errorf("gptq: ggml pack: result %dx%d does not match the fitted %dx%d", res.Rows, res.Cols, g.rows, g.cols)
	}
	p, err := quant.NewPacked(g.f, res.Rows, res.Cols)
	if err != nil {
		return nil, fmt.Errorf("gptq: %w", err)
	}
	copy(p.Codes, g.blocks)
	rb := p.RowBytes()
	for r := 0; r < res.Rows; r++ {
		g.g.SetCodes(p.Codes[r*rb:(r+1)*rb], res.Codes[r*res.Cols:(r+1)*res.Cols])
	}
	return p, nil
}

// quantizeGGML is QuantizeFormat for GGML block formats.
func quantizeGGML(ctx context.Context, w []float32, rows, cols int, h []float64, f quant.Format, opt Options) (*quant.Packed, *Result, error) {
	grid, err := NewGGMLGrid(f, cols)
	if err != nil {
		return nil, nil, err
	}
	opt.StaticGroups = true
	opt.ClipRatios = nil // the llama.cpp fitters search their own scales
	return quantizePacked(ctx, w, rows, cols, h, grid, opt)
}

// ImportanceRTN encodes w onto GGML format f with llama.cpp's
// importance-weighted quantizer, the Hessian diagonal as importance (what
// llama-quantize does with an imatrix, whose entries are the diagonal up
// to a factor), without GPTQ's error feedback.
func ImportanceRTN(ctx context.Context, w []float32, rows, cols int, h []float64, f quant.Format) (*quant.Packed, error) {
	if len(h) != cols*cols {
		return nil, fmt.Errorf("gptq: hessian has %d values for %d columns", len(h), cols)
	}
	qw := make([]float32, cols)
	for c := range qw {
		qw[c] = float32(max(h[c*cols+c], 0))
	}
	return quant.QuantizeGGML(ctx, w, rows, cols, f, qw, "")
}
