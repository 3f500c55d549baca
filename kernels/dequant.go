package kernels

import (
	"fmt"
)

// QuantMatrix is a packed quantized weight matrix as the dequant kernels see
// it: rows output features by cols input features. The quant package's
// packed tensor type satisfies it (see quant.Packed); backends may
// type-switch on known concrete types for fused fast paths and fall back to
// DequantizeTile for any other format.
type QuantMatrix interface {
	// Dims returns the logical shape: rows (out features) and cols (in
	// features).
	Dims() (rows, cols int)
	// DequantizeTile writes the dequantized block W[r0:r0+nr, c0:c0+nc] to
	// dst (row i at dst[i*ldd:]); the values are exactly those of the
	// format's dequantization of the whole tensor.
	DequantizeTile(dst []float32, ldd, r0, nr, c0, nc int) error
}

// Tile sizes of the generic dequant-GEMM: small m uses L1-sized tiles and
// dot products, large m dequantizes L2-sized panels and runs the GEMM
// micro-kernels on them.
const (
	dqSmallRows = 16
	dqSmallCols = 512
	dqBigRows   = 64
	dqBigCols   = 1024
	// dqBigM is the batch size from which the GEMM path is used.
	dqBigM = 8
)

// DequantGEMM implements Backend.
func (c *cpu) DequantGEMM(m int, x []float32, ldx int, w QuantMatrix, beta float32, cm []float32, ldc int) error {
	if w == nil {
		return fmt.Errorf("kernels: dequant-gemm: nil weight: %w", ErrShape)
	}
	rows, cols := w.Dims()
	if m < 0 || rows < 0 || cols < 0 {
		return fmt.Errorf("kernels: dequant-gemm: m %d weight %dx%d: %w", m, rows, cols, ErrShape)
	}
	if err := checkMat("kernels: dequant-gemm: X", x, m, cols, ldx); err != nil {
		return err
	}
	if err := checkMat("kernels: dequant-gemm: C", cm, m, rows, ldc); err != nil {
		return err
	}
	if m == 0 || rows == 0 {
		return nil
	}
	scaleC(m, rows, beta, cm, ldc)
	if cols == 0 {
		return nil
	}
	if fast, ok := c.dequantFast(m, x, ldx, w, cm, ldc); ok {
		return fast
	}
	return c.dequantGeneric(m, x, ldx, w, cm, ldc)
}

// dequantGeneric computes C += X·Wᵀ through DequantizeTile.
func (c *cpu) dequantGeneric(m int, x []float32, ldx int, w QuantMatrix, cm []float32, ldc int) error {
	rows, cols := w.Dims()
	tr, tc := dqSmallRows, dqSmallCols
	if m >= dqBigM {
		tr, tc = dqBigRows, dqBigCols
	}
	panels := (rows + tr - 1) / tr
	threads := c.threadsFor(m * rows * cols / 4)
	bufs := make([][]float32, min(threads, panels))
	errs := make([]error, panels)
	parallelFor(threads, panels, func(wk, p int) {
		if bufs[wk] == nil {
			bufs[wk] = make([]float32, tr*tc)
		}
		tile := bufs[wk]
		r0 := p * tr
		nr := min(tr, rows-r0)
		for c0 := 0; c0 < cols; c0 += tc {
			nc := min(tc, cols-c0)
			if err := w.DequantizeTile(tile, nc, r0, nr, c0, nc); err != nil {
				errs[p] = fmt.Errorf("kernels: dequant-gemm: tile (%d,%d): %w", r0, c0, err)
				return
			}
			if m >= dqBigM {
				c.gemmSingle(false, true, m, nr, nc, 1, x[c0:], ldx, tile, nc, cm[r0:], ldc)
				continue
			}
			for i := 0; i < m; i++ {
				xi := x[i*ldx+c0 : i*ldx+c0+nc]
				ci := cm[i*ldc+r0 : i*ldc+r0+nr]
				for r := range ci {
					ci[r] += dotF32(xi, tile[r*nc:r*nc+nc])
				}
			}
		}
	})
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// gemmSingle is C += alpha*op(A)·op(B) on the calling goroutine only.
func (c *cpu) gemmSingle(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int,
	b []float32, ldb int, cm []float32, ldc int) {
	if m == 1 {
		gemv1(transB, n, k, alpha, a, lda, transA, b, ldb, cm, 1)
		return
	}
	c.gemmBlocked(transA, transB, m, n, k, alpha, a, lda, b, ldb, cm, ldc, 1)
}
