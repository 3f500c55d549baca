package gptq

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/marlin-llm/marlin/tensor"
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/blas/blas64"
)

// Precision selects the accumulation type of a Hessian.
type Precision uint8

// Accumulation precisions.
const (
	F32 Precision = iota // float32 storage and SYRK
	F64                  // float64 storage and SYRK
)

// String names p ("f32" or "f64").
func (p Precision) String() string {
	if p == F64 {
		return "f64"
	}
	return "f32"
}

// MaxCols bounds the input width of a Hessian (a 65536² F64 matrix is 32 GiB).
const MaxCols = 1 << 16

// Hessian accumulates H = 2XᵀX/n over a stream of token activations X (one
// row per token) for one Linear layer. Like the reference implementation it
// keeps H as a running mean, so values stay O(x²) whatever n is. Only the
// upper triangle is stored up to date; Matrix returns the full matrix.
// A Hessian is not safe for concurrent use; accumulate per worker and Merge.
type Hessian struct {
	cols int
	n    int64
	prec Precision
	h32  []float32
	h64  []float64
	gemm GemmFunc
}

// GemmFunc computes C = alpha·op(A)·op(B) + beta·C (kernels.Backend.Sgemm's
// signature), used to form each batch's XᵀX with a fast backend.
type GemmFunc func(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int,
	b []float32, ldb int, beta float32, c []float32, ldc int) error

// UseGemm makes Add form each batch's XᵀX with g in float32, in tiles on
// several goroutines at once, then fold it into the running mean in the
// Hessian's precision. g should run each call on its caller's goroutine
// (the Sgemm of kernels.Serial(backend)): Add does the parallelism. Without it Add uses
// gonum's SYRK in the Hessian's precision.
func (h *Hessian) UseGemm(g GemmFunc) { h.gemm = g }

// NewHessian returns an empty Hessian for inputs of width cols.
func NewHessian(cols int, prec Precision) (*Hessian, error) {
	if cols <= 0 || cols > MaxCols {
		return nil, fmt.Errorf("gptq: hessian width %d out of range (1..%d)", cols, MaxCols)
	}
	h := &Hessian{cols: cols, prec: prec}
	if prec == F64 {
		h.h64 = make([]float64, cols*cols)
	} else {
		h.h32 = make([]float32, cols*cols)
	}
	return h, nil
}

// Cols is the input width.
func (h *Hessian) Cols() int { return h.cols }

// Samples is the number of token rows accumulated so far.
func (h *Hessian) Samples() int64 { return h.n }

// Precision is the accumulation precision.
func (h *Hessian) Precision() Precision { return h.prec }

// Add accumulates rows token activations x (row-major, rows×Cols). Non-finite
// inputs are rejected (they would poison every later column).
func (h *Hessian) Add(x []float32, rows int) error {
	if rows == 0 {
		return nil
	}
	if rows < 0 || len(x) != rows*h.cols {
		return fmt.Errorf("gptq: hessian add: %d values for %d rows of width %d", len(x), rows, h.cols)
	}
	for i, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("gptq: hessian add: non-finite activation at row %d col %d", i/h.cols, i%h.cols)
		}
	}
	total := h.n + int64(rows)
	keep := float64(h.n) / float64(total)
	alpha := 2 / float64(total)
	if h.gemm != nil {
		if err := h.addGemm(x, rows, keep, alpha); err != nil {
			return err
		}
		h.n = total
		return nil
	}
	if h.prec == F64 {
		a := make([]float64, len(x))
		for i, v := range x {
			a[i] = float64(v)
		}
		blas64.Syrk(blas.Trans, alpha,
			blas64.General{Rows: rows, Cols: h.cols, Stride: h.cols, Data: a}, keep,
			blas64.Symmetric{Uplo: blas.Upper, N: h.cols, Stride: h.cols, Data: h.h64})
	} else {
		blas32.Syrk(blas.Trans, float32(alpha),
			blas32.General{Rows: rows, Cols: h.cols, Stride: h.cols, Data: x}, float32(keep),
			blas32.Symmetric{Uplo: blas.Upper, N: h.cols, Stride: h.cols, Data: h.h32})
	}
	h.n = total
	return nil
}

// The upper triangle of each batch's XᵀX is formed in tiles of
// hessTileRows×hessTileCols, one gemm call each, on several goroutines:
// a batch costs about half a full product, every core gets tiles even for
// a few hundred columns, and each goroutine folds its own tiles (disjoint
// parts of H) into the running mean.
const (
	hessTileRows = 128
	hessTileCols = 512
)

// addGemm folds 2XᵀX (rows×Cols x) into the running mean with weights keep
// (old mean) and alpha (new sum).
func (h *Hessian) addGemm(x []float32, rows int, keep, alpha float64) error {
	c := h.cols
	type tile struct{ i0, j0 int }
	var tiles []tile
	for i0 := 0; i0 < c; i0 += hessTileRows {
		for j0 := i0; j0 < c; j0 += hessTileCols {
			tiles = append(tiles, tile{i0, j0})
		}
	}
	workers := min(runtime.GOMAXPROCS(0), len(tiles))
	if int64(rows)*int64(c)*int64(c) < 1<<22 {
		workers = 1
	}
	var next atomic.Int64
	errs := make([]error, workers)
	work := func(wk int) {
		buf := make([]float32, hessTileRows*hessTileCols)
		for {
			t := int(next.Add(1) - 1)
			if t >= len(tiles) {
				return
			}
			i0, j0 := tiles[t].i0, tiles[t].j0
			bi, bj := min(hessTileRows, c-i0), min(hessTileCols, c-j0)
			// buf[r*bj+s] = Σ_t x[t, i0+r]·x[t, j0+s].
			if err := h.gemm(true, false, bi, bj, rows, 1, x[i0:], c, x[j0:], c, 0, buf, bj); err != nil {
				errs[wk] = fmt.Errorf("gptq: hessian add: %w", err)
				return
			}
			for r := 0; r < bi; r++ {
				i := i0 + r
				s0 := max(0, i-j0) // the upper triangle only: columns j >= i
				src := buf[r*bj+s0 : r*bj+bj]
				if h.prec == F64 {
					dst := h.h64[i*c+j0+s0 : i*c+j0+bj]
					for j, v := range src {
						dst[j] = keep*dst[j] + alpha*float64(v)
					}
				} else {
					dst := h.h32[i*c+j0+s0 : i*c+j0+bj]
					for j, v := range src {
						dst[j] = float32(keep*float64(dst[j]) + alpha*float64(v))
					}
				}
			}
		}
	}
	if workers <= 1 {
		work(0)
		return errs[0]
	}
	var wg sync.WaitGroup
	for wk := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			work(wk)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Merge folds o (same width) into h, weighting each by its sample count, so
// that per-worker partial Hessians combine to the Hessian of all tokens.
func (h *Hessian) Merge(o *Hessian) error {
	if o.cols != h.cols {
		return fmt.Errorf("gptq: hessian merge: width %d into %d", o.cols, h.cols)
	}
	if o.n == 0 {
		return nil
	}
	total := h.n + o.n
	a, b := float64(h.n)/float64(total), float64(o.n)/float64(total)
	for i := 0; i < h.cols; i++ {
		for j := i; j < h.cols; j++ {
			k := i*h.cols + j
			v := a*h.at(k) + b*o.at(k)
			if h.prec == F64 {
				h.h64[k] = v
			} else {
				h.h32[k] = float32(v)
			}
		}
	}
	h.n = total
	return nil
}

func (h *Hessian) at(k int) float64 {
	if h.prec == F64 {
		return h.h64[k]
	}
	return float64(h.h32[k])
}

// Diag returns the diagonal of H = 2XᵀX/n (Cols values): 2·mean(x_c²),
// twice what llama.cpp's imatrix holds per input column.
func (h *Hessian) Diag() []float64 {
	d := make([]float64, h.cols)
	for i := range d {
		d[i] = h.at(i*h.cols + i)
	}
	return d
}

// Matrix returns H = 2XᵀX/n as a full symmetric Cols×Cols row-major matrix
// (all zeros when no sample was added).
func (h *Hessian) Matrix() []float64 {
	c := h.cols
	m := make([]float64, c*c)
	for i := 0; i < c; i++ {
		for j := i; j < c; j++ {
			v := h.at(i*c + j)
			m[i*c+j] = v
			m[j*c+i] = v
		}
	}
	return m
}

// Tensor encodes h (upper triangle mirrored, F32 or F64) as a checkpointable
// tensor; Meta carries the sample count and precision.
func (h *Hessian) Tensor(name string) *tensor.Tensor {
	m := h.Matrix()
	t := &tensor.Tensor{Name: name, Shape: []int{h.cols, h.cols},
		Meta: map[string]string{MetaSamples: strconv.FormatInt(h.n, 10), MetaKind: "hessian"}}
	if h.prec == F64 {
		t.DType = tensor.F64
		t.Data = make([]byte, 8*len(m))
		for i, v := range m {
			binary.LittleEndian.PutUint64(t.Data[8*i:], math.Float64bits(v))
		}
	} else {
		t.DType = tensor.F32
		t.Data = make([]byte, 4*len(m))
		for i, v := range m {
			binary.LittleEndian.PutUint32(t.Data[4*i:], math.Float32bits(float32(v)))
		}
	}
	return t
}

// HessianFromTensor decodes a tensor written by [Hessian.Tensor].
func HessianFromTensor(t *tensor.Tensor) (*Hessian, error) {
	if t == nil {
		return nil, errors.New("gptq: nil hessian tensor")
	}
	if len(t.Shape) != 2 || t.Shape[0] != t.Shape[1] || t.Shape[0] <= 0 || t.Shape[0] > MaxCols {
		return nil, fmt.Errorf("gptq: hessian tensor %q: bad shape %v", t.Name, t.Shape)
	}
	n, err := strconv.ParseInt(t.Meta[MetaSamples], 10, 64)
	if err != nil || n < 0 {
		return nil, fmt.Errorf("gptq: hessian tensor %q: bad gptq.samples %q", t.Name, t.Meta[MetaSamples])
	}
	c := int(t.Shape[0])
	var prec Precision
	switch t.DType {
	case tensor.F32:
		prec = F32
	case tensor.F64:
		prec = F64
	default:
		return nil, fmt.Errorf("gptq: hessian tensor %q: dtype %v (want F32 or F64)", t.Name, t.DType)
	}
	if len(t.Data) != c*c*t.DType.Size() {
		return nil, fmt.Errorf("gptq: hessian tensor %q: %d bytes for %dx%d %v", t.Name, len(t.Data), c, c, t.DType)
	}
	h, err := NewHessian(c, prec)
	if err != nil {
		return nil, err
	}
	h.n = n
	for k := 0; k < c*c; k++ {
		var v float64
		if prec == F64 {
			v = math.Float64frombits(binary.LittleEndian.Uint64(t.Data[8*k:]))
			h.h64[k] = v
		} else {
			f := math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*k:]))
			v = float64(f)
			h.h32[k] = f
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("gptq: hessian tensor %q: non-finite value at %d", t.Name, k)
		}
	}
	return h, nil
}

// MergeWeighted folds o into h as if o's mean had been accumulated over
// samples tokens (instead of o's own count), for shrinking a sparse
// Hessian towards a pooled one.
func (h *Hessian) MergeWeighted(o *Hessian, samples int64) error {
	if samples <= 0 {
		return nil
	}
	c := *o
	c.n = samples
	return h.Merge(&c)
}
