package gptq

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sort"

	"golang.org/x/sync/errgroup"

	"github.com/marlin-llm/marlin/kernels"
	"github.com/marlin-llm/marlin/quant"
)

// Reference defaults that Options' zero values stand for (the job file's
// block_size and damp default to them too).
const (
	DefaultBlockSize = 128
	DefaultPercDamp  = 0.01
)

// Options are GPTQ's knobs; the zero value means the reference defaults
// (block DefaultBlockSize, percdamp DefaultPercDamp, no act-order, no
// scale search).
type Options struct {
	// BlockSize is the lazy-batch width (default DefaultBlockSize). It is rounded to a
	// multiple of the group size so that groups never straddle blocks.
	BlockSize int `json:"blocksize,omitempty" yaml:"blocksize,omitempty"`
	// PercDamp is the dampening fraction of mean(diag(H)) (default
	// DefaultPercDamp).
	PercDamp float64 `json:"percdamp,omitempty" yaml:"percdamp,omitempty"`
	// ActOrder quantizes columns in order of decreasing diag(H).
	ActOrder bool `json:"actorder,omitempty" yaml:"actorder,omitempty"`
	// StaticGroups fits every group's scale on the original weights before
	// any update, in the original column order; with ActOrder this keeps
	// groups contiguous (g_idx = column/group), as kernels without g_idx
	// support need.
	StaticGroups bool `json:"static_groups,omitempty" yaml:"static_groups,omitempty"`
	// ClipRatios, when not empty, are the clipping ratios tried for every
	// group's scale; the one with the smallest H-weighted rounding error
	// wins. Empty: clip 1 (absmax).
	ClipRatios []float64 `json:"clip_ratios,omitempty" yaml:"clip_ratios,omitempty"`
	// HessianWeightedSearch weighs each column's rounding error by diag(H)
	// in the static-group scale search (Σ_c H_cc·(w_c−q_c)², the diagonal
	// part of the layer error) instead of the plain squared error. It
	// lowers the layer error on synthetic layers with outlier channels
	// (10-20% for INT4/NVFP4) but moved the nano models' perplexity only
	// within noise (±0.05), so it is off by default. Dynamic groups always
	// weigh by 1/d², the GPTQ loss of the column.
	HessianWeightedSearch bool `json:"hessian_weighted_search,omitempty" yaml:"hessian_weighted_search,omitempty"`
	// BlockActOrder (GGML block formats without ActOrder) quantizes the
	// columns of each block in decreasing diag(H) order, blocks in order,
	// each block fitted when GPTQ reaches it.
	BlockActOrder bool `json:"block_actorder,omitempty" yaml:"block_actorder,omitempty"`
	// Refit (GGML block formats) re-solves every row's fp16 block scales
	// after GPTQ with the codes fixed, minimising the row's error under
	// the full Hessian with GPTQ's dampening; a row keeps them only when
	// that error drops (refitHalves).
	Refit bool `json:"refit,omitempty" yaml:"refit,omitempty"`
}

// DefaultClipRatios is the scale-search grid quant.ClipGrid (1, 0.98, ...,
// 0.70) in float64, as the scale search of RTN uses it in float32.
func DefaultClipRatios() []float64 { return quant.ClipGrid[float64]() }

// Result is a quantized layer.
type Result struct {
	Rows, Cols int
	// Q holds the dequantized weights, rows×cols row-major, original column order.
	Q []float32
	// Codes holds the element codes, rows×cols, original column order.
	Codes []uint8
	// Scales holds rows×Groups scales: Scales[r*Groups+g].
	Scales []Scale
	// Groups is the number of groups per row.
	Groups int
	// GIdx maps every column to its group (act-order without static groups
	// makes it a permutation of the identity grouping).
	GIdx []int32
	// Perm is the quantization order of the columns (nil without act-order).
	Perm []int
	// Loss is the reference's printed error: Σ (w−q)²/d²/2 over the updated
	// weights (d = diag of the Cholesky factor of H⁻¹).
	Loss float64
	// Err is the layer error tr((W−Q) H (W−Q)ᵀ) with the undamped H, i.e.
	// (2/n)·‖WXᵀ − QXᵀ‖²_F over the calibration tokens.
	Err float64
	// Damp is the value added to diag(H) (more than percdamp·mean(diag) when
	// the Cholesky needed retries).
	Damp float64
	// Dead counts input columns with diag(H) = 0.
	Dead int
	// Refit counts the rows whose block scales Options.Refit changed.
	Refit int
}

// IdentityGroups reports whether GIdx[c] == c/groupSize for all columns, that
// is whether the result can be stored in a layout without g_idx.
func (r *Result) IdentityGroups(groupSize int) bool {
	for c, g := range r.GIdx {
		if groupSize > 0 && int(g) != c/groupSize || groupSize <= 0 && g != 0 {
			return false
		}
	}
	return true
}

// Quantize runs GPTQ on w (rows×cols row-major) with Hessian h (cols×cols,
// 2XᵀX/n, row-major) onto grid. See QuantizeFormat for quant formats.
func Quantize(ctx context.Context, w []float64, rows, cols int, h []float64, grid Grid, opt Options) (*Result, error) {
	if rows <= 0 || cols <= 0 || len(w) != rows*cols {
		return nil, fmt.Errorf("gptq: weight has %d values for %dx%d", len(w), rows, cols)
	}
	if len(h) != cols*cols {
		return nil, fmt.Errorf("gptq: hessian has %d values for %d columns", len(h), cols)
	}
	if grid == nil {
		return nil, errors.New("gptq: nil grid")
	}
	for i, v := range w {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("gptq: non-finite weight at row %d col %d", i/cols, i%cols)
		}
	}
	for i, v := range h {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("gptq: non-finite hessian entry (%d,%d)", i/cols, i%cols)
		}
	}
	gs := grid.GroupSize()
	if gs <= 0 || gs > cols {
		gs = cols
	}
	bs := opt.BlockSize
	if bs <= 0 {
		bs = DefaultBlockSize
	}
	if gs >= bs {
		bs = gs
	} else {
		bs -= bs % gs
	}
	percdamp := opt.PercDamp
	if percdamp == 0 {
		percdamp = DefaultPercDamp
	}
	if percdamp < 0 || math.IsNaN(percdamp) {
		return nil, fmt.Errorf("gptq: percdamp %v must be positive", percdamp)
	}
	clips := opt.ClipRatios
	if len(clips) == 0 {
		clips = []float64{1}
	}
	for _, c := range clips {
		if !(c > 0 && c <= 1) {
			return nil, fmt.Errorf("gptq: clip ratio %v outside (0,1]", c)
		}
	}
	if ci, ok := grid.(ClipInvariant); ok && ci.ClipInvariant() {
		clips = distinctClips(clips)
	}
	ngroups := (cols + gs - 1) / gs

	// Working copies: Wt is the weight transposed (cols×rows) so that a
	// column is contiguous; H is modified in place.
	H := append([]float64(nil), h...)
	wt := make([]float64, cols*rows)
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			wt[c*rows+r] = w[r*cols+c]
		}
	}
	res := &Result{Rows: rows, Cols: cols, Groups: ngroups}
	for c := 0; c < cols; c++ {
		if H[c*cols+c] == 0 {
			H[c*cols+c] = 1
			clear(wt[c*rows : (c+1)*rows])
			res.Dead++
		}
	}

	// Static groups: scales from the (dead-zeroed) original weights in the
	// original order, before any permutation or update.
	scales := make([]Scale, rows*ngroups)
	sf, whole := grid.(StaticFitter)
	bf, byBlock := grid.(BlockFitter)
	if whole && !opt.StaticGroups && !byBlock {
		return nil, errors.New("gptq: this grid fits its scales for the whole tensor and needs static groups")
	}
	if byBlock && !opt.StaticGroups {
		if bf.FitBlockSize()%gs != 0 || cols%bf.FitBlockSize() != 0 || bs%bf.FitBlockSize() != 0 && bf.FitBlockSize()%bs != 0 {
			return nil, fmt.Errorf("gptq: blocks of %d columns do not fit groups of %d, rows of %d and lazy batches of %d", bf.FitBlockSize(), gs, cols, bs)
		}
		bf.StartDynamic(rows)
	} else if whole {
		wr := make([]float64, rows*cols)
		hd := make([]float64, cols)
		for c := 0; c < cols; c++ {
			hd[c] = H[c*cols+c]
			for r := 0; r < rows; r++ {
				wr[r*cols+c] = wt[c*rows+r]
			}
		}
		s, err := sf.FitStatic(wr, rows, cols, hd)
		if err != nil {
			return nil, err
		}
		if len(s) != len(scales) {
			return nil, fmt.Errorf("gptq: static fit returned %d scales, want %d", len(s), len(scales))
		}
		copy(scales, s)
	} else if opt.StaticGroups {
		buf := make([]float64, gs)
		wts := make([]float64, gs)
		for g := 0; g < ngroups; g++ {
			c0, c1 := g*gs, min((g+1)*gs, cols)
			var hw []float64
			if opt.HessianWeightedSearch {
				hw = wts[:c1-c0]
				for c := c0; c < c1; c++ {
					hw[c-c0] = H[c*cols+c]
				}
			}
			for r := 0; r < rows; r++ {
				vals := buf[:c1-c0]
				for c := c0; c < c1; c++ {
					vals[c-c0] = wt[c*rows+r]
				}
				scales[r*ngroups+g] = fitGroup(grid, vals, hw, clips)
			}
		}
	}

	perm := make([]int, cols)
	for i := range perm {
		perm[i] = i
	}
	blockOrder := !opt.ActOrder && opt.BlockActOrder && byBlock && !opt.StaticGroups
	if blockOrder {
		// act-order inside each fit block: blocks stay in order and are
		// fitted as GPTQ reaches them.
		fbs := bf.FitBlockSize()
		for b0 := 0; b0 < cols; b0 += fbs {
			blk := perm[b0 : b0+fbs]
			sort.SliceStable(blk, func(a, b int) bool { return H[blk[a]*cols+blk[a]] > H[blk[b]*cols+blk[b]] })
		}
	}
	if opt.ActOrder || blockOrder {
		if opt.ActOrder {
			sort.SliceStable(perm, func(a, b int) bool { return H[perm[a]*cols+perm[a]] > H[perm[b]*cols+perm[b]] })
		}
		Hp := make([]float64, cols*cols)
		for i := 0; i < cols; i++ {
			for j := 0; j < cols; j++ {
				Hp[i*cols+j] = H[perm[i]*cols+perm[j]]
			}
		}
		H = Hp
		wp := make([]float64, cols*rows)
		for i := 0; i < cols; i++ {
			copy(wp[i*rows:(i+1)*rows], wt[perm[i]*rows:(perm[i]+1)*rows])
		}
		wt = wp
		res.Perm = perm
	}

	var meanDiag float64
	for c := 0; c < cols; c++ {
		meanDiag += H[c*cols+c]
	}
	meanDiag /= float64(cols)
	damp := percdamp * meanDiag
	U, usedDamp, err := invCholUpper(ctx, H, cols, damp)
	if err != nil {
		return nil, err
	}
	res.Damp = usedDamp

	// Quantize in permuted order; codes/q are stored at permuted positions
	// and un-permuted at the end. Rows are independent given U, so chunks
	// of gptqRowChunk rows run concurrently, each through the whole column
	// loop; a row's arithmetic does not depend on its chunk, so the result
	// is the same for any number of goroutines.
	qt := make([]float64, cols*rows)
	codesT := make([]uint8, cols*rows)
	gidx := make([]int32, cols)
	for i := 0; i < cols; i++ {
		if opt.StaticGroups || byBlock {
			gidx[perm[i]] = int32(perm[i] / gs)
		} else {
			gidx[perm[i]] = int32(i / gs)
		}
	}
	errBlk := make([]float64, bs*rows)
	nchunks := (rows + gptqRowChunk - 1) / gptqRowChunk
	losses := make([]float64, nchunks)
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(runtime.GOMAXPROCS(0))
	for ch := 0; ch < nchunks; ch++ {
		r0, r1 := ch*gptqRowChunk, min(rows, (ch+1)*gptqRowChunk)
		eg.Go(func() error {
			loss, err := quantizeRows(ectx, r0, r1, rowsJob{
				wt: wt, qt: qt, codesT: codesT, errBlk: errBlk, U: U, scales: scales,
				rows: rows, cols: cols, gs: gs, bs: bs, ngroups: ngroups,
				grid: grid, clips: clips, static: opt.StaticGroups, perm: perm,
			})
			losses[ch] = loss
			return err
		})
	}
	if err := eg.Wait(); err != nil {
		return nil, err
	}
	for _, l := range losses {
		res.Loss += l
	}

	res.Q = make([]float32, rows*cols)
	res.Codes = make([]uint8, rows*cols)
	for i := 0; i < cols; i++ {
		c := perm[i]
		for r := 0; r < rows; r++ {
			res.Q[r*cols+c] = float32(qt[i*rows+r])
			res.Codes[r*cols+c] = codesT[i*rows+r]
		}
	}
	res.Scales = scales
	res.GIdx = gidx
	qd := make([]float64, len(res.Q))
	for i, v := range res.Q {
		qd[i] = float64(v)
	}
	res.Err, err = LayerError(w, qd, rows, cols, h)
	if err != nil {
		return nil, err
	}
	return res, nil
}

// gptqRowChunk is how many rows one goroutine of Quantize takes.
const gptqRowChunk = 64

// rowsJob is what quantizeRows shares across row chunks: the working
// matrices (column-major, cols×rows: wt, qt, codesT; errBlk bs×rows) and
// the settings of Quantize.
type rowsJob struct {
	wt, qt, errBlk, U  []float64
	codesT             []uint8
	scales             []Scale
	rows, cols, gs, bs int
	ngroups            int
	grid               Grid
	clips              []float64
	static             bool
	perm               []int
}

// quantizeRows runs GPTQ's column loop on rows [r0, r1): quantize a column,
// spread its error over the rest of its block, and after each block update
// the columns after it (the lazy batch). It returns the rows' GPTQ loss.
func quantizeRows(ctx context.Context, r0, r1 int, j rowsJob) (float64, error) {
	rows, cols, gs := j.rows, j.cols, j.gs
	n := r1 - r0
	weights := make([]float64, gs)
	vals := make([]float64, gs)
	var loss float64
	for i1 := 0; i1 < cols; i1 += j.bs {
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("gptq: %w", err)
		}
		i2 := min(i1+j.bs, cols)
		for i := i1; i < i2; i++ {
			d := j.U[i*cols+i]
			col := j.wt[i*rows+r0 : i*rows+r1]
			var g int
			if j.static {
				g = j.perm[i] / gs
			} else if bf, ok := j.grid.(BlockFitter); ok {
				g = j.perm[i] / gs
				if fbs := bf.FitBlockSize(); i%fbs == 0 {
					// Fit this block's scales on the current weights.
					if err := fitBlock(bf, j, r0, r1, i, fbs, vals, weights); err != nil {
						return 0, err
					}
				}
			} else {
				g = i / gs
				if i%gs == 0 {
					// Fit this group's scales on the current (updated) weights.
					c1 := min(i+gs, cols)
					for k := i; k < c1; k++ {
						dk := j.U[k*cols+k]
						weights[k-i] = 1 / (dk * dk)
					}
					for r := r0; r < r1; r++ {
						v := vals[:c1-i]
						for k := i; k < c1; k++ {
							v[k-i] = j.wt[k*rows+r]
						}
						j.scales[r*j.ngroups+g] = fitGroup(j.grid, v, weights[:c1-i], j.clips)
					}
				}
			}
			e := j.errBlk[(i-i1)*rows+r0 : (i-i1)*rows+r1]
			qcol := j.qt[i*rows+r0 : i*rows+r1]
			ccol := j.codesT[i*rows+r0 : i*rows+r1]
			for k, w := range col {
				code, q := j.grid.Round(w, j.scales[(r0+k)*j.ngroups+g])
				qcol[k], ccol[k] = q, code
				diff := w - q
				loss += diff * diff / (d * d) / 2
				e[k] = diff / d
			}
			// In-block update of the remaining columns of this block.
			urow := j.U[i*cols : (i+1)*cols]
			for k := i + 1; k < i2; k++ {
				u := urow[k]
				if u == 0 {
					continue
				}
				ck := j.wt[k*rows+r0 : k*rows+r1]
				for r := range ck {
					ck[r] -= e[r] * u
				}
			}
		}
		// Lazy batch update: Wt[i2:, r0:r1] -= U[i1:i2, i2:]ᵀ · Err[:, r0:r1].
		if i2 < cols {
			cnt := i2 - i1
			if err := kernels.Dgemm(true, false, cols-i2, n, cnt, -1, j.U[i1*cols+i2:], cols,
				j.errBlk[r0:], rows, 1, j.wt[i2*rows+r0:], rows); err != nil {
				return 0, fmt.Errorf("gptq: lazy batch update: %w", err)
			}
		}
	}
	return loss, nil
}

// fitBlock fits the block of fbs columns at i of rows [r0, r1) on the
// current weights, GPTQ's column weights 1/U_kk² as importance (buffers
// vals and weights are reused when large enough).
func fitBlock(bf BlockFitter, j rowsJob, r0, r1, i, fbs int, vals, weights []float64) error {
	if len(vals) < fbs {
		vals, weights = make([]float64, fbs), make([]float64, fbs)
	}
	// Columns i..i+fbs (in quantization order) are one block's columns,
	// possibly permuted inside it: gather them in the block's own order.
	v, hw := vals[:fbs], weights[:fbs]
	c0 := j.perm[i] - j.perm[i]%fbs
	for k := i; k < i+fbs; k++ {
		dk := j.U[k*j.cols+k]
		hw[j.perm[k]-c0] = 1 / (dk * dk)
	}
	ng := fbs / j.gs
	for r := r0; r < r1; r++ {
		for k := i; k < i+fbs; k++ {
			v[j.perm[k]-c0] = j.wt[k*j.rows+r]
		}
		g0 := r*j.ngroups + c0/j.gs
		if err := bf.FitBlock(r, c0, v, hw, j.scales[g0:g0+ng]); err != nil {
			return err
		}
	}
	return nil
}

// distinctClips keeps, in order, the ratios 1 and the first ratio below 1:
// the only ones that can give different scales on a ClipInvariant grid.
func distinctClips(clips []float64) []float64 {
	var out []float64
	below := false
	for _, c := range clips {
		if c == 1 || !below {
			out = append(out, c)
			below = below || c < 1
		}
	}
	return out
}

// fitGroup picks the scale among clips with the smallest weighted rounding
// error (weights nil: unweighted).
func fitGroup(grid Grid, vals, weights, clips []float64) Scale {
	if len(clips) == 1 {
		return grid.Fit(vals, clips[0])
	}
	var best Scale
	bestErr := math.Inf(1)
	for _, c := range clips {
		s := grid.Fit(vals, c)
		var e float64
		for j, v := range vals {
			_, q := grid.Round(v, s)
			d := (v - q) * (v - q)
			if weights != nil {
				d *= weights[j]
			}
			e += d
		}
		if e < bestErr {
			best, bestErr = s, e
		}
	}
	return best
}

// LayerError returns tr((W−Q) H (W−Q)ᵀ) for rows×cols weights and a
// cols×cols Hessian: with H = 2XᵀX/n this is (2/n)·‖(W−Q)Xᵀ‖²_F.
func LayerError(w, q []float64, rows, cols int, h []float64) (float64, error) {
	if len(w) != rows*cols || len(q) != rows*cols || len(h) != cols*cols {
		return 0, fmt.Errorf("gptq: layer error: sizes %d, %d, %d for %dx%d", len(w), len(q), len(h), rows, cols)
	}
	d := make([]float64, rows*cols)
	for i := range d {
		d[i] = w[i] - q[i]
	}
	m := make([]float64, rows*cols)
	if err := kernels.Dgemm(false, false, rows, cols, cols, 1, d, cols, h, cols, 0, m, cols); err != nil {
		return 0, fmt.Errorf("gptq: layer error: %w", err)
	}
	var s float64
	for i := range d {
		s += d[i] * m[i]
	}
	return s, nil
}
