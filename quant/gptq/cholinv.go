package gptq

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"

	"github.com/marlin-llm/marlin/kernels"
)

// invCholUpper damps H and returns the upper Cholesky factor U of H⁻¹
// (H⁻¹ = UᵀU, row-major, zeros below the diagonal) and the damping used.
// H is h (n×n, row-major) with the rows and columns in the order perm
// gives (nil: as stored) and the diagonal of dead columns read as 1; it is
// never built, and the factor is inverted in place, so that the working
// set is h, one n×n matrix and the inverse's (n/2)² temporary.
// When H is not positive definite after damping, damping grows tenfold (at
// most four times) before giving up.
//
// It takes one Cholesky factorization and one triangular inverse instead
// of the textbook cholesky(inverse(H)) (two factorizations and a full
// inverse): with J the reversal permutation, factor JHJ = LLᵀ; then
// H = (JLJ)(JLJ)ᵀ with JLJ upper triangular, so H⁻¹ = UᵀU with
// U = (JLJ)⁻¹ = J L⁻¹ J, upper triangular with a positive diagonal, which
// is the unique upper Cholesky factor of H⁻¹. Both steps are blocked so
// that almost all their work is kernels.Dgemm, and both check ctx between
// blocks.
func invCholUpper(ctx context.Context, h []float64, n int, perm []int, dead []bool, damp float64) ([]float64, float64, error) {
	if damp <= 0 {
		damp = 1e-8
	}
	at := func(i int) int { // the row or column of h at position i of H
		if perm == nil {
			return i
		}
		return perm[i]
	}
	a := make([]float64, n*n)
	for try := 0; try < 5; try++ {
		// a = J(H + damp·I)J; only the lower triangle is read.
		for i := 0; i < n; i++ {
			r := at(n - 1 - i)
			src := h[r*n:]
			row := a[i*n : i*n+i+1]
			for j := range row {
				row[j] = src[at(n-1-j)]
			}
			if dead != nil && dead[r] {
				row[i] = 1
			}
			row[i] += damp
		}
		ok, err := cholLower(ctx, a, n)
		if err != nil {
			return nil, damp, err
		}
		if ok {
			// The factor's blocked updates leave values above the
			// diagonal; L⁻¹ is computed in place over a zero upper triangle.
			for i := 0; i < n; i++ {
				clear(a[i*n+i+1 : (i+1)*n])
			}
			if err := invLower(ctx, a, n, n); err != nil {
				return nil, damp, err
			}
			// U[i][j] = L⁻¹[n-1-i][n-1-j]: the whole matrix reversed
			// (L⁻¹'s zero upper triangle becomes U's lower one).
			slices.Reverse(a)
			return a, damp, nil
		}
		damp *= 10
	}
	return nil, damp, fmt.Errorf("gptq: hessian not positive definite even with damping %g", damp)
}

// cholBlock is the panel width of cholLower and the base size of invLower.
const cholBlock = 96

// cholLower overwrites the lower triangle of the n×n symmetric a
// (row-major) with its Cholesky factor L (a = LLᵀ); it reports false when
// a is not positive definite. Left-looking by panels of cholBlock columns:
// the updates of a panel from the columns before it are two GEMMs.
func cholLower(ctx context.Context, a []float64, n int) (bool, error) {
	for j0 := 0; j0 < n; j0 += cholBlock {
		if err := ctx.Err(); err != nil {
			return false, fmt.Errorf("gptq: %w", err)
		}
		jb := min(cholBlock, n-j0)
		if j0 > 0 {
			// A[j0:n, j0:j0+jb] -= L[j0:n, 0:j0] · L[j0:j0+jb, 0:j0]ᵀ
			if err := kernels.Dgemm(false, true, n-j0, jb, j0, -1, a[j0*n:], n, a[j0*n:], n, 1, a[j0*n+j0:], n); err != nil {
				return false, fmt.Errorf("gptq: cholesky: %w", err)
			}
		}
		// Unblocked factor of the diagonal block.
		for j := j0; j < j0+jb; j++ {
			d := a[j*n+j]
			for k := j0; k < j; k++ {
				d -= a[j*n+k] * a[j*n+k]
			}
			if !(d > 0) || math.IsInf(d, 0) {
				return false, nil
			}
			d = math.Sqrt(d)
			a[j*n+j] = d
			for i := j + 1; i < j0+jb; i++ {
				s := a[i*n+j]
				for k := j0; k < j; k++ {
					s -= a[i*n+k] * a[j*n+k]
				}
				a[i*n+j] = s / d
			}
		}
		// Rows below: solve X·L11ᵀ = A21 row by row (rows are independent).
		rows := n - j0 - jb
		parallelRows(rows, func(r0, r1 int) {
			for i := j0 + jb + r0; i < j0+jb+r1; i++ {
				row := a[i*n:]
				for j := j0; j < j0+jb; j++ {
					s := row[j]
					lj := a[j*n:]
					for k := j0; k < j; k++ {
						s -= row[k] * lj[k]
					}
					row[j] = s / lj[j]
				}
			}
		})
	}
	return true, nil
}

// invLower overwrites the n×n lower triangular L in the lower triangle of
// l (leading dimension ld; its strict upper triangle must be zero, and
// stays so) with L⁻¹. With L = [A 0; B C], L⁻¹ = [A⁻¹ 0; −C⁻¹BA⁻¹ C⁻¹]:
// two recursive inverses in place and two GEMMs through one (n/2)²
// temporary. The base case inverts column by column, each entry reading
// only L's entries not yet overwritten and L⁻¹'s already written, so the
// arithmetic is that of an inverse into a separate matrix.
func invLower(ctx context.Context, l []float64, ld, n int) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("gptq: %w", err)
	}
	if n <= cholBlock {
		for j := 0; j < n; j++ {
			l[j*ld+j] = 1 / l[j*ld+j]
			for i := j + 1; i < n; i++ {
				// L⁻¹[i][j] = −(Σ_{j≤k<i} L[i][k]·L⁻¹[k][j]) / L[i][i]: row
				// i's L entries from column j on are still L's, column j's
				// entries above row i already L⁻¹'s.
				var s float64
				for k := j; k < i; k++ {
					s += l[i*ld+k] * l[k*ld+j]
				}
				l[i*ld+j] = -s / l[i*ld+i]
			}
		}
		return nil
	}
	n1 := (n/2 + cholBlock - 1) / cholBlock * cholBlock
	n2 := n - n1
	if err := invLower(ctx, l, ld, n1); err != nil {
		return err
	}
	if err := invLower(ctx, l[n1*ld+n1:], ld, n2); err != nil {
		return err
	}
	// T = B·A⁻¹ (n2×n1), then B's place gets −C⁻¹·T.
	t := make([]float64, n2*n1)
	if err := kernels.Dgemm(false, false, n2, n1, n1, 1, l[n1*ld:], ld, l, ld, 0, t, n1); err != nil {
		return fmt.Errorf("gptq: triangular inverse: %w", err)
	}
	if err := kernels.Dgemm(false, false, n2, n1, n2, -1, l[n1*ld+n1:], ld, t, n1, 0, l[n1*ld:], ld); err != nil {
		return fmt.Errorf("gptq: triangular inverse: %w", err)
	}
	return nil
}

// parallelRows splits [0, rows) into contiguous ranges over GOMAXPROCS
// goroutines.
func parallelRows(rows int, body func(r0, r1 int)) {
	w := min(runtime.GOMAXPROCS(0), (rows+63)/64)
	if w <= 1 {
		body(0, rows)
		return
	}
	done := make(chan struct{}, w)
	step := (rows + w - 1) / w
	for r0 := 0; r0 < rows; r0 += step {
		go func(r0, r1 int) {
			body(r0, r1)
			done <- struct{}{}
		}(r0, min(rows, r0+step))
	}
	for r0 := 0; r0 < rows; r0 += step {
		<-done
	}
}
