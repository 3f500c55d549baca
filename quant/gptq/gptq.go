package gptq

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sort"
	"unsafe"

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

	// slabWeights overrides how many weights' rows quantize works on at
	// once (tests; 0: defaultSlabWeights and at least 4 row chunks a core).
	slabWeights int
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
	return quantize(ctx, w, rows, cols, h, grid, opt)
}

// quantize is Quantize on float32 or float64 weights. GPTQ's float64
// working matrices (the weight transposed, its quantized values and codes,
// the lazy batch's errors) cover one slab of rows at a time (slabRows):
// rows are independent given the inverse Hessian's Cholesky factor, which
// all slabs share, so a tensor of any height (a 154880-row lm_head) needs
// a bounded working set beside its result, and the result is the same
// for any slab height and core count.
func quantize[T float32 | float64](ctx context.Context, w []T, rows, cols int, h []float64, grid Grid, opt Options) (*Result, error) {
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
		if f := float64(v); math.IsNaN(f) || math.IsInf(f, 0) {
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

	// Dead columns (diag(H) = 0) get H_cc = 1 and zero weights. The
	// Hessian GPTQ factors (damped, in quantization order) is never copied
	// out of h: invCholUpper reads it through perm and dead.
	res := &Result{Rows: rows, Cols: cols, Groups: ngroups}
	dead := make([]bool, cols)
	hdiag := make([]float64, cols)
	for c := 0; c < cols; c++ {
		hdiag[c] = h[c*cols+c]
		if hdiag[c] == 0 {
			hdiag[c] = 1
			dead[c] = true
			res.Dead++
		}
	}

	sf, whole := grid.(StaticFitter)
	bf, byBlock := grid.(BlockFitter)
	if whole && !opt.StaticGroups && !byBlock {
		return nil, errors.New("gptq: this grid fits its scales for the whole tensor and needs static groups")
	}
	if byBlock && !opt.StaticGroups {
		if bf.FitBlockSize()%gs != 0 || cols%bf.FitBlockSize() != 0 || bs%bf.FitBlockSize() != 0 && bf.FitBlockSize()%bs != 0 {
			return nil, fmt.Errorf("gptq: blocks of %d columns do not fit groups of %d, rows of %d and lazy batches of %d", bf.FitBlockSize(), gs, cols, bs)
		}
	}
	if whole {
		sf.StartRows(rows)
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
			sort.SliceStable(blk, func(a, b int) bool { return hdiag[blk[a]] > hdiag[blk[b]] })
		}
	}
	if opt.ActOrder || blockOrder {
		if opt.ActOrder {
			sort.SliceStable(perm, func(a, b int) bool { return hdiag[perm[a]] > hdiag[perm[b]] })
		}
		res.Perm = perm
	}

	var meanDiag float64
	for _, c := range perm {
		meanDiag += hdiag[c]
	}
	meanDiag /= float64(cols)
	damp := percdamp * meanDiag
	U, usedDamp, err := invCholUpper(ctx, h, cols, perm, dead, damp)
	if err != nil {
		return nil, err
	}
	res.Damp = usedDamp

	gidx := make([]int32, cols)
	for i := 0; i < cols; i++ {
		if opt.StaticGroups || byBlock {
			gidx[perm[i]] = int32(perm[i] / gs)
		} else {
			gidx[perm[i]] = int32(i / gs)
		}
	}
	res.Scales = make([]Scale, rows*ngroups)
	res.Q = make([]float32, rows*cols)
	res.Codes = make([]uint8, rows*cols)
	res.GIdx = gidx

	// Slabs of rows, each in chunks of gptqRowChunk rows that run
	// concurrently through the whole column loop. A row's arithmetic does
	// not depend on its slab or chunk, and the losses and errors of the
	// chunks are summed in row order, so the result is the same for any
	// slab height and number of goroutines.
	slab := opt.slabRows(rows, cols)
	wt := make([]float64, cols*slab)
	qt := make([]float64, cols*slab)
	codesT := make([]uint8, cols*slab)
	errBlk := make([]float64, bs*slab)
	nchunks := (rows + gptqRowChunk - 1) / gptqRowChunk
	losses := make([]float64, nchunks)
	errs := make([]float64, nchunks)
	for s0 := 0; s0 < rows; s0 += slab {
		n := min(slab, rows-s0)
		j := rowsJob{
			wt: wt[:cols*n], qt: qt[:cols*n], codesT: codesT[:cols*n], errBlk: errBlk[:bs*n], U: U,
			scales: res.Scales[s0*ngroups : (s0+n)*ngroups],
			rows:   n, cols: cols, gs: gs, bs: bs, ngroups: ngroups, base: s0,
			grid: grid, clips: clips, static: opt.StaticGroups, perm: perm,
		}
		eg, ectx := errgroup.WithContext(ctx)
		eg.SetLimit(runtime.GOMAXPROCS(0))
		for r0 := 0; r0 < n; r0 += gptqRowChunk {
			r1 := min(n, r0+gptqRowChunk)
			ch := (s0 + r0) / gptqRowChunk
			eg.Go(func() error {
				loadRows(j, w[(s0+r0)*cols:(s0+r1)*cols], r0, r1, dead)
				if err := fitStaticRows(j, w[(s0+r0)*cols:(s0+r1)*cols], r0, r1, dead, hdiag, whole, opt.HessianWeightedSearch); err != nil {
					return err
				}
				loss, err := quantizeRows(ectx, r0, r1, j)
				if err != nil {
					return err
				}
				losses[ch] = loss
				// Back to the original column order.
				for i, c := range perm {
					for r := r0; r < r1; r++ {
						res.Q[(s0+r)*cols+c] = float32(qt[i*n+r])
						res.Codes[(s0+r)*cols+c] = codesT[i*n+r]
					}
				}
				errs[ch], err = rowsError(w[(s0+r0)*cols:(s0+r1)*cols], res.Q[(s0+r0)*cols:(s0+r1)*cols], r1-r0, cols, h)
				return err
			})
		}
		if err := eg.Wait(); err != nil {
			return nil, err
		}
	}
	for ch := range losses {
		res.Loss += losses[ch]
		res.Err += errs[ch]
	}
	return res, nil
}

// slabRows is how many rows quantize works on at once: a multiple of
// gptqRowChunk whose float64 working matrices (about 17 bytes a weight)
// stay near slabWeights weights, but at least 4 chunks a core.
func (o Options) slabRows(rows, cols int) int {
	n := max(defaultSlabWeights/cols, 4*gptqRowChunk*runtime.GOMAXPROCS(0))
	if o.slabWeights > 0 {
		n = max(o.slabWeights/cols, 1)
	}
	n = (n + gptqRowChunk - 1) / gptqRowChunk * gptqRowChunk
	return min(n, rows)
}

// defaultSlabWeights bounds quantize's working matrices to about 17 bytes
// × 16M weights = 272 MiB (more on many cores: at least 4 row chunks a
// core).
const defaultSlabWeights = 16 << 20

// WorkingBytes is what QuantizeFormat allocates for a rows×cols weight
// beside its float32 input: the result (float32 Q, codes, scales of groups
// of groupSize columns), the packed tensor, the float64 Hessian the caller
// passes and its Cholesky factor, inverted in place (two cols×cols float64
// matrices, and the triangular inverse's quarter-size temporary), one
// slab's working matrices and each goroutine's row-chunk buffers and
// product panels (kernels.DgemmScratchBytes). Callers add it to their memory estimates;
// TestWorkingBytesBoundsHeap checks it against the heap's peak.
func WorkingBytes(rows, cols, groupSize int) int64 {
	if groupSize <= 0 || groupSize > cols {
		groupSize = cols
	}
	numel := int64(rows) * int64(cols)
	slab := int64(Options{}.slabRows(rows, cols))
	scales := int64(rows) * int64((cols+groupSize-1)/groupSize) * int64(unsafe.Sizeof(Scale{}))
	c := int64(cols)
	result := 5*numel + scales       // float32 Q and codes
	packed := numel + scales         // at most 8 bits a weight
	hessian := 2*8*c*c + 2*c*c       // h, invCholUpper's factor (inverted in place), invLower's temporary
	work := 17*slab*c + 8*bsMax*slab // wt, qt, codes and the lazy batch's errors
	procs := runtime.GOMAXPROCS(0)
	perChunk := int64(procs) * ((2*gptqRowChunk+1)*8*c + kernels.DgemmScratchBytes(procs)) // row buffers, each chunk's products
	return result + packed + hessian + work + perChunk
}

// bsMax bounds the lazy-batch width that WorkingBytes counts.
const bsMax = 256

// loadRows fills rows [r0, r1) of the slab's transposed working weight
// (quantization order) from w, the same rows of the original weight
// (row-major, starting at row r0 of the slab), with dead columns zeroed.
func loadRows[T float32 | float64](j rowsJob, w []T, r0, r1 int, dead []bool) {
	n := j.rows
	for i, c := range j.perm {
		col := j.wt[i*n : (i+1)*n]
		if dead[c] {
			clear(col[r0:r1])
			continue
		}
		for r := r0; r < r1; r++ {
			col[r] = float64(w[(r-r0)*j.cols+c])
		}
	}
}

// fitStaticRows fits the scales of rows [r0, r1) of the slab before any
// GPTQ update, on the original weights w (row-major, from row r0; dead
// columns read as zero) in the original column order: the whole-tensor
// fit of a StaticFitter, or with static groups each group's scale search
// (weighted by hdiag when hessianWeighted). Other grids fit as GPTQ goes.
func fitStaticRows[T float32 | float64](j rowsJob, w []T, r0, r1 int, dead []bool, hdiag []float64, whole, hessianWeighted bool) error {
	if !whole && !j.static {
		return nil
	}
	cols, gs := j.cols, j.gs
	if _, ok := j.grid.(BlockFitter); ok && !j.static {
		return nil // fitted block by block as GPTQ reaches them
	}
	row := make([]float64, cols)
	for r := r0; r < r1; r++ {
		for c := range row {
			if dead[c] {
				row[c] = 0
			} else {
				row[c] = float64(w[(r-r0)*cols+c])
			}
		}
		out := j.scales[r*j.ngroups : (r+1)*j.ngroups]
		if whole {
			if err := j.grid.(StaticFitter).FitStatic(row, j.base+r, hdiag, out); err != nil {
				return err
			}
			continue
		}
		for g := 0; g < j.ngroups; g++ {
			c0, c1 := g*gs, min((g+1)*gs, cols)
			var hw []float64
			if hessianWeighted {
				hw = hdiag[c0:c1]
			}
			out[g] = fitGroup(j.grid, row[c0:c1], hw, j.clips)
		}
	}
	return nil
}

// rowsError is LayerError for a few rows of float32 or float64 weights w
// and their quantized values q.
func rowsError[T, U float32 | float64](w []T, q []U, rows, cols int, h []float64) (float64, error) {
	d := make([]float64, rows*cols)
	for i := range d {
		d[i] = float64(w[i]) - float64(q[i])
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

// gptqRowChunk is how many rows one goroutine of Quantize takes.
const gptqRowChunk = 64

// rowsJob is what quantizeRows shares across the row chunks of one slab:
// the slab's working matrices (column-major, cols×rows: wt, qt, codesT;
// errBlk bs×rows), its rows' scales (rows×ngroups) and the settings of
// Quantize; base is the slab's first row in the tensor.
type rowsJob struct {
	wt, qt, errBlk, U  []float64
	codesT             []uint8
	scales             []Scale
	rows, cols, gs, bs int
	ngroups, base      int
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
		if err := bf.FitBlock(j.base+r, c0, v, hw, j.scales[g0:g0+ng]); err != nil {
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
// cols×cols Hessian: with H = 2XᵀX/n this is (2/n)·‖(W−Q)Xᵀ‖²_F. It is
// summed over chunks of gptqRowChunk rows in order, as Quantize sums
// Result.Err, so that both give the same bits.
func LayerError(w, q []float64, rows, cols int, h []float64) (float64, error) {
	return layerError(w, q, rows, cols, h)
}

func layerError[T, U float32 | float64](w []T, q []U, rows, cols int, h []float64) (float64, error) {
	if len(w) != rows*cols || len(q) != rows*cols || len(h) != cols*cols {
		return 0, fmt.Errorf("gptq: layer error: sizes %d, %d, %d for %dx%d", len(w), len(q), len(h), rows, cols)
	}
	var s float64
	for r0 := 0; r0 < rows; r0 += gptqRowChunk {
		r1 := min(rows, r0+gptqRowChunk)
		e, err := rowsError(w[r0*cols:r1*cols], q[r0*cols:r1*cols], r1-r0, cols, h)
		if err != nil {
			return 0, err
		}
		s += e
	}
	return s, nil
}
