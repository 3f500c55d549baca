package gptq

import (
	"context"
	"fmt"
	"math"
	"runtime"

	"golang.org/x/sync/errgroup"

	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/quant/ggml"
)

// StaticFitter is a Grid whose scales are fitted for a whole row before
// any GPTQ update, because several groups share stored state (the
// super-block scales of the GGML K-quants). Quantize calls FitStatic
// instead of Fit; it needs Options.StaticGroups.
type StaticFitter interface {
	// StartRows prepares the grid for a tensor of rows rows.
	StartRows(rows int)
	// FitStatic fits row r (w: its cols values) given the Hessian
	// diagonal hdiag (len cols) and writes the row's group scales to out.
	// Calls for different rows may run concurrently.
	FitStatic(w []float64, r int, hdiag []float64, out []Scale) error
}

// BlockFitter is a StaticFitter that can also fit its scales one block of
// columns at a time, on the weights as GPTQ has updated them so far: GPTQ
// without act-order then fits each block when it reaches the block's
// first column (dynamic groups), as it fits a plain group.
type BlockFitter interface {
	StaticFitter
	// FitBlockSize is the number of columns one fit covers.
	FitBlockSize() int
	// FitBlock fits row r's block starting at column c0 to vals (the
	// block's current weights) with importance hw, and writes the scales
	// of the block's groups to out. Calls for different rows may run
	// concurrently.
	FitBlock(r, c0 int, vals, hw []float64, out []Scale) error
}

// GGMLGrid is the grid of a GGML block format (quant.ElemGGML): the
// blocks' scales are fitted by llama.cpp's importance-weighted quantizer
// (with act-order first, on the original weights with the Hessian
// diagonal as importance, what llama-quantize does with an imatrix;
// without it block by block as GPTQ reaches them, on the updated weights
// with GPTQ's own column weights), then GPTQ chooses every element's code
// under those scales with error feedback across columns. In its Scales,
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

// FitStatic implements StaticFitter: the row is encoded with the
// importance weights hdiag and its blocks' scales are read back.
func (g *GGMLGrid) FitStatic(w []float64, r int, hdiag []float64, out []Scale) error {
	ng := g.cols / g.g.Group
	if len(w) != g.cols || len(hdiag) != g.cols || r < 0 || r >= g.rows || len(out) != ng {
		return fmt.Errorf("gptq: ggml fit: %d weights, %d diagonal entries, %d scales at row %d of %dx%d", len(w), len(hdiag), len(out), r, g.rows, g.cols)
	}
	rb := g.g.RowBytes(g.cols)
	x, qw := make([]float32, g.cols), make([]float32, g.cols)
	for i, v := range hdiag {
		qw[i] = float32(max(v, 0))
		x[i] = float32(w[i])
	}
	row := g.blocks[r*rb : (r+1)*rb]
	if err := g.g.Encode(row, x, qw); err != nil {
		return fmt.Errorf("gptq: row %d: %w", r, err)
	}
	d, m := make([]float32, ng), make([]float32, ng)
	g.g.Params(row, d, m)
	for k := range d {
		out[k] = Scale{Mul: float64(d[k]), Zero: float64(m[k])}
	}
	return nil
}

// FitBlockSize implements BlockFitter: one GGML block.
func (g *GGMLGrid) FitBlockSize() int { return g.g.BlockSize }

// StartRows implements StaticFitter.
func (g *GGMLGrid) StartRows(rows int) {
	g.rows = rows
	g.blocks = make([]byte, rows*g.g.RowBytes(g.cols))
}

// FitBlock implements BlockFitter: the block is encoded by llama.cpp's
// importance-weighted quantizer and its groups' scales read back.
func (g *GGMLGrid) FitBlock(r, c0 int, vals, hw []float64, out []Scale) error {
	bs := g.g.BlockSize
	if len(vals) != bs || len(hw) != bs || c0%bs != 0 || r >= g.rows || len(out) != bs/g.g.Group {
		return fmt.Errorf("gptq: ggml block fit: %d values, %d weights, %d scales at row %d column %d", len(vals), len(hw), len(out), r, c0)
	}
	x, qw := make([]float32, bs), make([]float32, bs)
	for i, v := range vals {
		x[i] = float32(v)
		qw[i] = float32(max(hw[i], 0))
	}
	rb := g.g.RowBytes(g.cols)
	off := r*rb + c0/bs*g.g.BlockBytes
	blk := g.blocks[off : off+g.g.BlockBytes]
	if err := g.g.Encode(blk, x, qw); err != nil {
		return fmt.Errorf("gptq: row %d block at %d: %w", r, c0, err)
	}
	d, m := make([]float32, len(out)), make([]float32, len(out))
	g.g.Params(blk, d, m)
	for k := range out {
		out[k] = Scale{Mul: float64(d[k]), Zero: float64(m[k])}
	}
	return nil
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
	// With act-order the blocks are fitted first, on the original
	// weights; without it each block when GPTQ reaches it.
	opt.StaticGroups = opt.ActOrder
	opt.ClipRatios = nil // the llama.cpp fitters search their own scales
	p, res, err := quantizePacked(ctx, w, rows, cols, h, grid, opt)
	if err != nil || !opt.Refit {
		return p, res, err
	}
	// The refit minimises GPTQ's own objective: the Hessian with the
	// dampening GPTQ used (res.Damp on the diagonal).
	hd := append([]float64(nil), h...)
	for c := 0; c < cols; c++ {
		hd[c*cols+c] += res.Damp
	}
	n, err := refitHalves(ctx, grid.g, p, w, hd, rows, cols)
	if err != nil || n == 0 {
		return p, res, err
	}
	// The refitted rows decode to other values: Q and the error follow.
	p.Dequantize(res.Q)
	if res.Err, err = layerError(w, res.Q, rows, cols, h); err != nil {
		return nil, nil, err
	}
	res.Refit = n
	return p, res, nil
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

// refitHalves re-solves, row by row, the fp16 block scales of GPTQ's GGML
// blocks with the codes and sub-block scales fixed (ggml.Grid.Parts: each
// value is linear in them), minimising the row's error (w−q)ᵀH(w−q) with
// the full Hessian h (quantizeGGML passes GPTQ's damped one); a row keeps
// the new scales only when that error drops. The scales were fitted before GPTQ moved the
// codes (on the original weights, or on the weights as updated when GPTQ
// reached their block), so the codes GPTQ chose usually want slightly
// other scales. It returns the rows changed.
func refitHalves(ctx context.Context, g *ggml.Grid, p *quant.Packed, w []float32, h []float64, rows, cols int) (int, error) {
	nh, bs := g.Halves(), g.BlockSize
	if nh == 0 || cols%bs != 0 || len(h) != cols*cols {
		return 0, nil
	}
	nb := cols / bs
	np := nb * nh
	rb := p.RowBytes()
	changed := make([]bool, rows)
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(runtime.GOMAXPROCS(0))
	for r0 := 0; r0 < rows; r0 += gptqRowChunk {
		r1 := min(rows, r0+gptqRowChunk)
		eg.Go(func() error {
			parts := make([][]float32, nh)
			for t := range parts {
				parts[t] = make([]float32, bs)
			}
			pv := make([]float64, np*bs) // part k's values on its block
			hp := make([]float64, np*cols)
			G := make([]float64, np*np)
			rhs := make([]float64, np)
			q := make([]float32, cols)
			blk := make([]byte, g.BlockBytes)
			theta := make([]float32, nh)
			for r := r0; r < r1; r++ {
				if err := ectx.Err(); err != nil {
					return err
				}
				row := p.Codes[r*rb : (r+1)*rb]
				wr := w[r*cols : (r+1)*cols]
				for b := 0; b < nb; b++ {
					g.Parts(row[b*g.BlockBytes:(b+1)*g.BlockBytes], parts)
					for t := 0; t < nh; t++ {
						k := b*nh + t
						for i, v := range parts[t] {
							pv[k*bs+i] = float64(v)
						}
					}
				}
				// hp_k = H·part_k (part_k lives on block b(k)).
				for k := 0; k < np; k++ {
					c0 := k / nh * bs
					out := hp[k*cols : (k+1)*cols]
					clear(out)
					for i := 0; i < bs; i++ {
						a := pv[k*bs+i]
						if a == 0 {
							continue
						}
						hrow := h[(c0+i)*cols : (c0+i+1)*cols] // H symmetric
						for j, hv := range hrow {
							out[j] += a * hv
						}
					}
				}
				for k := 0; k < np; k++ {
					var s float64
					for j, v := range wr {
						s += float64(v) * hp[k*cols+j]
					}
					rhs[k] = s
					for l := 0; l < np; l++ {
						c0 := l / nh * bs
						var gkl float64
						for i := 0; i < bs; i++ {
							gkl += pv[l*bs+i] * hp[k*cols+c0+i]
						}
						G[k*np+l] = gkl
					}
				}
				theta64, ok := solveSPD(G, rhs, np)
				if !ok {
					continue
				}
				before := rowError(g, row, wr, h, q)
				trial := append([]byte(nil), row...)
				for b := 0; b < nb; b++ {
					for t := 0; t < nh; t++ {
						theta[t] = float32(theta64[b*nh+t])
					}
					copy(blk, trial[b*g.BlockBytes:(b+1)*g.BlockBytes])
					g.SetHalves(blk, theta)
					copy(trial[b*g.BlockBytes:], blk)
				}
				if after := rowError(g, trial, wr, h, q); after < before {
					copy(row, trial)
					changed[r] = true
				}
			}
			return nil
		})
	}
	if err := eg.Wait(); err != nil {
		return 0, fmt.Errorf("gptq: refit: %w", err)
	}
	n := 0
	for _, c := range changed {
		if c {
			n++
		}
	}
	return n, nil
}

// rowError is (w−q)ᵀH(w−q) for a row of blocks (q is scratch, len cols).
func rowError(g *ggml.Grid, row []byte, w []float32, h []float64, q []float32) float64 {
	bs := g.BlockSize
	for b := 0; b < len(q)/bs; b++ {
		g.DecodeBlock(row[b*g.BlockBytes:(b+1)*g.BlockBytes], q[b*bs:(b+1)*bs])
	}
	cols := len(q)
	e := make([]float64, cols)
	for i := range e {
		e[i] = float64(w[i]) - float64(q[i])
	}
	var s float64
	for i, ei := range e {
		if ei == 0 {
			continue
		}
		var t float64
		for j, hv := range h[i*cols : (i+1)*cols] {
			t += hv * e[j]
		}
		s += ei * t
	}
	return s
}

// solveSPD solves A x = b (A n×n symmetric positive definite, copied) by
// Cholesky with a tiny ridge; false when A is not positive definite.
func solveSPD(A, b []float64, n int) ([]float64, bool) {
	L := append([]float64(nil), A...)
	var tr float64
	for i := 0; i < n; i++ {
		tr += L[i*n+i]
	}
	ridge := 1e-12 * tr / float64(n)
	for i := 0; i < n; i++ {
		L[i*n+i] += ridge
	}
	for j := 0; j < n; j++ {
		s := L[j*n+j]
		for k := 0; k < j; k++ {
			s -= L[j*n+k] * L[j*n+k]
		}
		if !(s > 0) {
			return nil, false
		}
		d := math.Sqrt(s)
		L[j*n+j] = d
		for i := j + 1; i < n; i++ {
			t := L[i*n+j]
			for k := 0; k < j; k++ {
				t -= L[i*n+k] * L[j*n+k]
			}
			L[i*n+j] = t / d
		}
	}
	x := append([]float64(nil), b...)
	for i := 0; i < n; i++ {
		for k := 0; k < i; k++ {
			x[i] -= L[i*n+k] * x[k]
		}
		x[i] /= L[i*n+i]
	}
	for i := n - 1; i >= 0; i-- {
		for k := i + 1; k < n; k++ {
			x[i] -= L[k*n+i] * x[k]
		}
		x[i] /= L[i*n+i]
	}
	for _, v := range x {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, false
		}
	}
	return x, true
}
