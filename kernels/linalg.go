package kernels

import (
	"fmt"
	"math"
)

// Dense linear algebra for GPTQ: recursive (cache-oblivious) Cholesky,
// triangular solve and inverse. The recursion pushes almost all flops into
// Sgemm; the small base cases accumulate in float64.

const (
	// linalgBase is the size at or below which the unblocked algorithms run.
	linalgBase = 48
)

// Cholesky implements Backend.
func (c *cpu) Cholesky(uplo Uplo, a []float32, n, lda int) error {
	if err := checkMat("kernels: cholesky", a, n, n, lda); err != nil {
		return err
	}
	if uplo == Upper {
		// A = UᵀU with U = Lᵀ: mirror the upper triangle into the lower,
		// factor, and transpose back.
		mirror(a, n, lda, Upper)
	}
	if err := c.cholLower(a, n, lda, 0); err != nil {
		return err
	}
	if uplo == Upper {
		transposeLowerToUpper(a, n, lda)
		return nil
	}
	zeroTriangle(a, n, lda, Upper)
	return nil
}

// cholLower factors the lower triangle of the n×n matrix a in place; off is
// the offset of this block in the whole matrix (for error messages). The
// strict upper triangle is used as scratch.
func (c *cpu) cholLower(a []float32, n, lda, off int) error {
	if n <= linalgBase {
		return cholBase(a, n, lda, off)
	}
	n1 := splitSize(n)
	n2 := n - n1
	if err := c.cholLower(a, n1, lda, off); err != nil {
		return err
	}
	a21 := a[n1*lda:]
	// A21 ← A21·L11⁻ᵀ
	c.trsmRightLowerT(a, n1, lda, a21, n2, lda)
	// A22 ← A22 − A21·A21ᵀ (lower triangle; the upper is scratch)
	c.syrkLower(a21[n1:], n2, lda, a21, n1, lda)
	return c.cholLower(a21[n1:], n2, lda, off+n1)
}

// splitSize returns the first block size of a recursive split of n: about
// half, rounded to a multiple of 16 so the halves align with the kernels.
func splitSize(n int) int {
	n1 := (n / 2) &^ 15
	if n1 == 0 {
		n1 = n / 2
	}
	return n1
}

// cholBase is the unblocked, float64-accumulating Cholesky of a small block.
func cholBase(a []float32, n, lda, off int) error {
	for j := 0; j < n; j++ {
		rj := a[j*lda : j*lda+j+1]
		d := float64(rj[j])
		for _, v := range rj[:j] {
			d -= float64(v) * float64(v)
		}
		if !(d > 0) || math.IsInf(d, 0) {
			return fmt.Errorf("kernels: cholesky: pivot %d is %g: %w", off+j, d, ErrNotSPD)
		}
		ljj := math.Sqrt(d)
		rj[j] = float32(ljj)
		inv := 1 / ljj
		for i := j + 1; i < n; i++ {
			ri := a[i*lda : i*lda+j+1]
			s := float64(ri[j])
			for p, v := range rj[:j] {
				s -= float64(ri[p]) * float64(v)
			}
			ri[j] = float32(s * inv)
		}
	}
	return nil
}

// trsmRightLowerT solves X·Lᵀ = B in place of B, where L is the n×n lower
// triangle of l and B is m×n.
func (c *cpu) trsmRightLowerT(l []float32, n, ldl int, b []float32, m, ldb int) {
	if m == 0 || n == 0 {
		return
	}
	if n <= linalgBase {
		threads := c.threadsFor(m * n * n)
		const chunk = 32
		parallelFor(threads, (m+chunk-1)/chunk, func(_, t int) {
			for r := t * chunk; r < min(m, (t+1)*chunk); r++ {
				x := b[r*ldb : r*ldb+n]
				for j := 0; j < n; j++ {
					lj := l[j*ldl : j*ldl+j+1]
					s := float64(x[j])
					for p, v := range lj[:j] {
						s -= float64(x[p]) * float64(v)
					}
					x[j] = float32(s / float64(lj[j]))
				}
			}
		})
		return
	}
	n1 := splitSize(n)
	n2 := n - n1
	c.trsmRightLowerT(l, n1, ldl, b, m, ldb)
	// B2 ← B2 − X1·L21ᵀ
	c.sgemm(false, true, m, n2, n1, -1, b, ldb, l[n1*ldl:], ldl, 1, b[n1:], ldb)
	c.trsmRightLowerT(l[n1*ldl+n1:], n2, ldl, b[n1:], m, ldb)
}

// syrkLower computes C ← C − A·Aᵀ on the lower triangle of the n×n matrix c
// (A is n×k). Entries above the diagonal may be overwritten (scratch).
func (c *cpu) syrkLower(cm []float32, n, ldc int, a []float32, k, lda int) {
	if n == 0 || k == 0 {
		return
	}
	if n <= 256 {
		c.sgemm(false, true, n, n, k, -1, a, lda, a, lda, 1, cm, ldc)
		return
	}
	n1 := splitSize(n)
	n2 := n - n1
	c.syrkLower(cm, n1, ldc, a, k, lda)
	c.sgemm(false, true, n2, n1, k, -1, a[n1*lda:], lda, a, lda, 1, cm[n1*ldc:], ldc)
	c.syrkLower(cm[n1*ldc+n1:], n2, ldc, a[n1*lda:], k, lda)
}

// mirror copies the triangle from of the n×n matrix a onto the other one.
func mirror(a []float32, n, lda int, from Uplo) {
	for i := 0; i < n; i++ {
		for j := 0; j < i; j++ {
			if from == Upper {
				a[i*lda+j] = a[j*lda+i]
			} else {
				a[j*lda+i] = a[i*lda+j]
			}
		}
	}
}

// zeroTriangle zeroes the strict triangle which of the n×n matrix a.
func zeroTriangle(a []float32, n, lda int, which Uplo) {
	for i := 0; i < n; i++ {
		if which == Upper {
			clear(a[i*lda+i+1 : i*lda+n])
		} else {
			clear(a[i*lda : i*lda+i])
		}
	}
}

// transposeLowerToUpper moves the lower triangle (with diagonal) of the n×n
// matrix a to the upper triangle, transposed, and zeroes the strict lower.
func transposeLowerToUpper(a []float32, n, lda int) {
	for i := 0; i < n; i++ {
		for j := 0; j < i; j++ {
			a[j*lda+i] = a[i*lda+j]
			a[i*lda+j] = 0
		}
	}
}

// transposeUpperToLower moves the upper triangle (with diagonal) to the
// lower triangle, transposed, and zeroes the strict upper.
func transposeUpperToLower(a []float32, n, lda int) {
	for i := 0; i < n; i++ {
		for j := 0; j < i; j++ {
			a[i*lda+j] = a[j*lda+i]
			a[j*lda+i] = 0
		}
	}
}

// checkTri verifies the diagonal of a triangular matrix is nonzero and finite.
func checkTri(what string, t []float32, n, ldt int) error {
	for i := 0; i < n; i++ {
		d := t[i*ldt+i]
		if d == 0 || d != d || math.IsInf(float64(d), 0) {
			return fmt.Errorf("%s: diagonal element %d is %g: %w", what, i, d, ErrNotSPD)
		}
	}
	return nil
}

// TriSolve implements Backend.
func (c *cpu) TriSolve(uplo Uplo, trans bool, n, nrhs int, t []float32, ldt int, b []float32, ldb int) error {
	if err := checkMat("kernels: trisolve: T", t, n, n, ldt); err != nil {
		return err
	}
	if err := checkMat("kernels: trisolve: B", b, n, nrhs, ldb); err != nil {
		return err
	}
	if err := checkTri("kernels: trisolve", t, n, ldt); err != nil {
		return err
	}
	if nrhs == 0 {
		return nil
	}
	// Four cases reduce to forward (lower-like) or backward substitution.
	lowerLike := (uplo == Lower) != trans
	c.trsmLeft(uplo, trans, lowerLike, n, nrhs, t, ldt, b, ldb)
	return nil
}

// tri returns op(T)[i][p].
func tri(t []float32, ldt int, trans bool, i, p int) float32 {
	if trans {
		return t[p*ldt+i]
	}
	return t[i*ldt+p]
}

// trsmLeft solves op(T)·X = B recursively; lowerLike says op(T) is lower
// triangular.
func (c *cpu) trsmLeft(uplo Uplo, trans, lowerLike bool, n, nrhs int, t []float32, ldt int, b []float32, ldb int) {
	if n <= linalgBase {
		// Columns of B are independent: split them among workers.
		const chunk = 256
		parallelFor(c.threadsFor(n*n*nrhs), (nrhs+chunk-1)/chunk, func(_, ch int) {
			j0 := ch * chunk
			j1 := min(nrhs, j0+chunk)
			if lowerLike {
				for i := 0; i < n; i++ {
					bi := b[i*ldb+j0 : i*ldb+j1]
					for p := 0; p < i; p++ {
						if v := tri(t, ldt, trans, i, p); v != 0 {
							axpyF32(-v, b[p*ldb+j0:p*ldb+j1], bi)
						}
					}
					inv := 1 / tri(t, ldt, trans, i, i)
					for j := range bi {
						bi[j] *= inv
					}
				}
				return
			}
			for i := n - 1; i >= 0; i-- {
				bi := b[i*ldb+j0 : i*ldb+j1]
				for p := i + 1; p < n; p++ {
					if v := tri(t, ldt, trans, i, p); v != 0 {
						axpyF32(-v, b[p*ldb+j0:p*ldb+j1], bi)
					}
				}
				inv := 1 / tri(t, ldt, trans, i, i)
				for j := range bi {
					bi[j] *= inv
				}
			}
		})
		return
	}
	n1 := splitSize(n)
	n2 := n - n1
	b2 := b[n1*ldb:]
	t22 := t[n1*ldt+n1:]
	// op(T) = [[T11', 0], [T21', T22']] (lower-like) or [[T11', T12'], [0, T22']].
	if lowerLike {
		c.trsmLeft(uplo, trans, lowerLike, n1, nrhs, t, ldt, b, ldb)
		// B2 ← B2 − op(T)21·X1; op(T)21 is T[n1:, :n1] or (T[:n1, n1:])ᵀ.
		if trans {
			c.sgemm(true, false, n2, nrhs, n1, -1, t[n1:], ldt, b, ldb, 1, b2, ldb)
		} else {
			c.sgemm(false, false, n2, nrhs, n1, -1, t[n1*ldt:], ldt, b, ldb, 1, b2, ldb)
		}
		c.trsmLeft(uplo, trans, lowerLike, n2, nrhs, t22, ldt, b2, ldb)
		return
	}
	c.trsmLeft(uplo, trans, lowerLike, n2, nrhs, t22, ldt, b2, ldb)
	// B1 ← B1 − op(T)12·X2; op(T)12 is T[:n1, n1:] or (T[n1:, :n1])ᵀ.
	if trans {
		c.sgemm(true, false, n1, nrhs, n2, -1, t[n1*ldt:], ldt, b2, ldb, 1, b, ldb)
	} else {
		c.sgemm(false, false, n1, nrhs, n2, -1, t[n1:], ldt, b2, ldb, 1, b, ldb)
	}
	c.trsmLeft(uplo, trans, lowerLike, n1, nrhs, t, ldt, b, ldb)
}

// TriInverse implements Backend.
func (c *cpu) TriInverse(uplo Uplo, t []float32, n, ldt int) error {
	if err := checkMat("kernels: triinverse", t, n, n, ldt); err != nil {
		return err
	}
	if err := checkTri("kernels: triinverse", t, n, ldt); err != nil {
		return err
	}
	if uplo == Upper {
		transposeUpperToLower(t, n, ldt)
	} else {
		zeroTriangle(t, n, ldt, Upper)
	}
	c.triInvLower(t, n, ldt)
	if uplo == Upper {
		transposeLowerToUpper(t, n, ldt)
	}
	return nil
}

// triInvLower inverts the lower triangular n×n matrix l in place (its strict
// upper triangle must be zero): inv([[A,0],[B,C]]) = [[A⁻¹,0],[−C⁻¹BA⁻¹,C⁻¹]].
func (c *cpu) triInvLower(l []float32, n, ldl int) {
	if n <= linalgBase {
		// Column j of the inverse solves L·x = e_j; work in float64.
		x := make([]float64, n)
		inv := make([]float64, n*n)
		for j := 0; j < n; j++ {
			clear(x)
			for i := j; i < n; i++ {
				s := 0.0
				if i == j {
					s = 1
				}
				for p := j; p < i; p++ {
					s -= float64(l[i*ldl+p]) * x[p]
				}
				x[i] = s / float64(l[i*ldl+i])
			}
			for i := j; i < n; i++ {
				inv[i*n+j] = x[i]
			}
		}
		for i := 0; i < n; i++ {
			for j := 0; j <= i; j++ {
				l[i*ldl+j] = float32(inv[i*n+j])
			}
		}
		return
	}
	n1 := splitSize(n)
	n2 := n - n1
	b := l[n1*ldl:]
	cc := l[n1*ldl+n1:]
	c.triInvLower(l, n1, ldl)
	c.triInvLower(cc, n2, ldl)
	tmp := make([]float32, n2*n1)
	// tmp = B·A⁻¹ (A⁻¹ is lower with zero upper, so a plain GEMM is exact).
	c.sgemm(false, false, n2, n1, n1, 1, b, ldl, l, ldl, 0, tmp, n1)
	// B = −C⁻¹·tmp (C⁻¹'s upper triangle is zero).
	c.sgemm(false, false, n2, n1, n2, -1, cc, ldl, tmp, n1, 0, b, ldl)
}

// SPDInverse implements Backend.
func (c *cpu) SPDInverse(a []float32, n, lda int) error {
	if err := checkMat("kernels: spdinverse", a, n, n, lda); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	l := make([]float32, n*n)
	for i := 0; i < n; i++ {
		copy(l[i*n:i*n+i+1], a[i*lda:i*lda+i+1])
	}
	if err := c.cholLower(l, n, n, 0); err != nil {
		return fmt.Errorf("kernels: spdinverse: %w", err)
	}
	zeroTriangle(l, n, n, Upper)
	c.triInvLower(l, n, n)
	// A⁻¹ = L⁻ᵀ·L⁻¹
	c.sgemm(true, false, n, n, n, 1, l, n, l, n, 0, a, lda)
	return nil
}
