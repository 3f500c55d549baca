package gptq

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"

	"golang.org/x/sync/errgroup"
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/lapack/lapack64"
)

// invCholUpper damps H and returns the upper Cholesky factor U of H⁻¹
// (H⁻¹ = UᵀU, row-major, zeros below the diagonal) and the damping used.
// When H is not positive definite after damping, damping grows tenfold (at
// most four times) before giving up.
//
// It takes one Cholesky factorization and one triangular inverse instead
// of the textbook cholesky(inverse(H)) (two factorizations and a full
// inverse): with J the reversal permutation, factor JHJ = LLᵀ; then
// H = (JLJ)(JLJ)ᵀ with JLJ upper triangular, so H⁻¹ = UᵀU with
// U = (JLJ)⁻¹ = J L⁻¹ J, upper triangular with a positive diagonal, which
// is the unique upper Cholesky factor of H⁻¹. The triangular inverse runs
// in parallel over column blocks and checks ctx between blocks.
func invCholUpper(ctx context.Context, H []float64, n int, damp float64) ([]float64, float64, error) {
	if damp <= 0 {
		damp = 1e-8
	}
	a := make([]float64, n*n)
	for try := 0; try < 5; try++ {
		if err := ctx.Err(); err != nil {
			return nil, damp, fmt.Errorf("gptq: %w", err)
		}
		// a = J(H + damp·I)J, lower triangle only is read.
		for i := 0; i < n; i++ {
			src := H[(n-1-i)*n:]
			row := a[i*n : i*n+i+1]
			for j := range row {
				row[j] = src[n-1-j]
			}
			row[i] += damp
		}
		if _, ok := lapack64.Potrf(blas64.Symmetric{Uplo: blas.Lower, N: n, Stride: n, Data: a}); ok {
			linv, err := invLower(ctx, a, n)
			if err != nil {
				return nil, damp, err
			}
			// U[i][j] = L⁻¹[n-1-i][n-1-j]; L⁻¹ is lower, so U is upper.
			out := make([]float64, n*n)
			for i := 0; i < n; i++ {
				src := linv[(n-1-i)*n:]
				for j := i; j < n; j++ {
					out[i*n+j] = src[n-1-j]
				}
			}
			return out, damp, nil
		}
		damp *= 10
	}
	return nil, damp, fmt.Errorf("gptq: hessian not positive definite even with damping %g", damp)
}

// invLowerBlock is the column-block width of invLower's parallel solves.
const invLowerBlock = 64

// invLower returns L⁻¹ for the n×n lower-triangular L held in the lower
// triangle of l (row-major; the upper triangle is ignored). Column block
// [c0,c1) of L⁻¹ is zero above row c0 and solves L[c0:,c0:]·X = I[c0:,c0:c1],
// so blocks are independent and run in parallel.
func invLower(ctx context.Context, l []float64, n int) ([]float64, error) {
	inv := make([]float64, n*n)
	for i := 0; i < n; i++ {
		inv[i*n+i] = 1
	}
	nb := (n + invLowerBlock - 1) / invLowerBlock
	var next atomic.Int64
	g, ctx := errgroup.WithContext(ctx)
	for w := 0; w < min(runtime.GOMAXPROCS(0), nb); w++ {
		g.Go(func() error {
			for {
				// Largest blocks (leftmost) first for balance.
				b := int(next.Add(1)) - 1
				if b >= nb {
					return nil
				}
				if err := ctx.Err(); err != nil {
					return fmt.Errorf("gptq: %w", err)
				}
				c0 := b * invLowerBlock
				c1 := min(c0+invLowerBlock, n)
				m := n - c0
				blas64.Trsm(blas.Left, blas.NoTrans, 1,
					blas64.Triangular{Uplo: blas.Lower, Diag: blas.NonUnit, N: m, Stride: n, Data: l[c0*n+c0:]},
					blas64.General{Rows: m, Cols: c1 - c0, Stride: n, Data: inv[c0*n+c0:]})
			}
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return inv, nil
}
