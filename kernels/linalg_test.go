package kernels

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// randSPD returns a random well-conditioned SPD n×n matrix (row-major,
// leading dimension ld) as float32 and as a gonum float64 matrix of the same
// (rounded) values: A = GGᵀ/n + I.
func randSPD(r *rand.Rand, n, ld int) ([]float32, *mat.SymDense) {
	g := mat.NewDense(n, n, nil)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			g.Set(i, j, r.NormFloat64())
		}
	}
	var s mat.SymDense
	s.SymOuterK(1/float64(n), g)
	a := make([]float32, (n-1)*ld+n+ld)
	ref := mat.NewSymDense(n, nil)
	for i := 0; i < n; i++ {
		for j := 0; j <= i; j++ {
			v := float32(s.At(i, j))
			if i == j {
				v += 1
			}
			a[i*ld+j] = v
			a[j*ld+i] = v
			ref.SetSym(i, j, float64(v))
		}
	}
	return a, ref
}

var linalgSizes = func() []int {
	if raceEnabled {
		return []int{1, 5, 49, 131}
	}
	return []int{1, 2, 5, 47, 48, 49, 100, 131, 300}
}()

func TestCholesky(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	for _, be := range backends() {
		for _, n := range linalgSizes {
			for _, uplo := range []Uplo{Lower, Upper} {
				ld := n + 3
				a, ref := randSPD(r, n, ld)
				// Poison the triangle that must not be read.
				for i := 0; i < n; i++ {
					for j := 0; j < n; j++ {
						if (uplo == Lower && j > i) || (uplo == Upper && j < i) {
							a[i*ld+j] = float32(math.NaN())
						}
					}
				}
				if err := be.Cholesky(uplo, a, n, ld); err != nil {
					t.Fatalf("%s n=%d %v: %v", bname(be), n, uplo, err)
				}
				var ch mat.Cholesky
				if !ch.Factorize(ref) {
					t.Fatal("gonum: not SPD")
				}
				var u mat.TriDense
				ch.UTo(&u) // A = UᵀU
				for i := 0; i < n; i++ {
					for j := 0; j < n; j++ {
						want := u.At(j, i) // L = Uᵀ
						if uplo == Upper {
							want = u.At(i, j)
						}
						got := a[i*ld+j]
						// The factor of a well-conditioned A is accurate to a
						// few ulps times n.
						if !close32(got, want, 4*float64(n)*u32*(1+math.Abs(want))) {
							t.Fatalf("%s n=%d %v: [%d,%d] = %v want %v", bname(be), n, uplo, i, j, got, want)
						}
					}
				}
			}
		}
	}
}

func TestCholeskyNotSPD(t *testing.T) {
	be := NewCPU(Options{})
	for _, n := range []int{3, 130} {
		a := make([]float32, n*n)
		for i := 0; i < n; i++ {
			a[i*n+i] = 1
		}
		a[(n-1)*n+n-1] = -1
		if err := be.Cholesky(Lower, a, n, n); !errors.Is(err, ErrNotSPD) {
			t.Fatalf("n=%d: %v", n, err)
		}
		a[(n-1)*n+n-1] = float32(math.NaN())
		if err := be.Cholesky(Lower, a, n, n); !errors.Is(err, ErrNotSPD) {
			t.Fatalf("NaN n=%d: %v", n, err)
		}
	}
	if err := be.Cholesky(Lower, make([]float32, 3), 2, 2); !errors.Is(err, ErrShape) {
		t.Fatal(err)
	}
}

// randTri returns a random well-conditioned triangular matrix.
func randTri(r *rand.Rand, n, ld int, uplo Uplo) []float32 {
	a := make([]float32, (n-1)*ld+n)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			switch {
			case i == j:
				a[i*ld+j] = float32(1 + r.Float64())
			case (uplo == Lower) == (j < i):
				a[i*ld+j] = float32(r.NormFloat64() / math.Sqrt(float64(n)))
			default:
				a[i*ld+j] = float32(math.NaN()) // must not be read
			}
		}
	}
	return a
}

func triDense(a []float32, n, ld int, uplo Uplo) *mat.Dense {
	d := mat.NewDense(n, n, nil)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			if i == j || (uplo == Lower) == (j < i) {
				d.Set(i, j, float64(a[i*ld+j]))
			}
		}
	}
	return d
}

func TestTriSolve(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 24))
	for _, be := range backends() {
		for _, n := range linalgSizes {
			for _, nrhs := range []int{1, 7, 300} {
				for _, uplo := range []Uplo{Lower, Upper} {
					for _, trans := range []bool{false, true} {
						name := fmt.Sprintf("%s n=%d nrhs=%d %v trans=%v", bname(be), n, nrhs, uplo, trans)
						ldt, ldb := n+1, nrhs+2
						tm := randTri(r, n, ldt, uplo)
						b := randSlice(r, (n-1)*ldb+nrhs)
						bd := mat.NewDense(n, nrhs, nil)
						for i := 0; i < n; i++ {
							for j := 0; j < nrhs; j++ {
								bd.Set(i, j, float64(b[i*ldb+j]))
							}
						}
						if err := be.TriSolve(uplo, trans, n, nrhs, tm, ldt, b, ldb); err != nil {
							t.Fatalf("%s: %v", name, err)
						}
						td := triDense(tm, n, ldt, uplo)
						var op mat.Matrix = td
						if trans {
							op = td.T()
						}
						// Residual check: op(T)·X − B, relative to |op(T)|·|X| + |B|.
						xd := mat.NewDense(n, nrhs, nil)
						for i := 0; i < n; i++ {
							for j := 0; j < nrhs; j++ {
								xd.Set(i, j, float64(b[i*ldb+j]))
							}
						}
						var res mat.Dense
						res.Mul(op, xd)
						res.Sub(&res, bd)
						var absT, absX mat.Dense
						absT.Apply(func(_, _ int, v float64) float64 { return math.Abs(v) }, op)
						absX.Apply(func(_, _ int, v float64) float64 { return math.Abs(v) }, xd)
						var bound mat.Dense
						bound.Mul(&absT, &absX)
						for i := 0; i < n; i++ {
							for j := 0; j < nrhs; j++ {
								tol := 4 * float64(n+2) * u32 * (bound.At(i, j) + math.Abs(bd.At(i, j)))
								if math.Abs(res.At(i, j)) > tol {
									t.Fatalf("%s: residual [%d,%d] = %g > %g", name, i, j, res.At(i, j), tol)
								}
							}
						}
					}
				}
			}
		}
	}
	be := NewCPU(Options{})
	sing := []float32{1, 0, 5, 0}
	if err := be.TriSolve(Lower, false, 2, 1, sing, 2, []float32{1, 1}, 1); !errors.Is(err, ErrNotSPD) {
		t.Fatalf("singular: %v", err)
	}
}

func TestTriInverse(t *testing.T) {
	r := rand.New(rand.NewPCG(25, 26))
	for _, be := range backends() {
		for _, n := range linalgSizes {
			for _, uplo := range []Uplo{Lower, Upper} {
				ld := n + 2
				tm := randTri(r, n, ld, uplo)
				td := triDense(tm, n, ld, uplo)
				if err := be.TriInverse(uplo, tm, n, ld); err != nil {
					t.Fatal(err)
				}
				var want mat.Dense
				if err := want.Inverse(td); err != nil {
					t.Fatal(err)
				}
				for i := 0; i < n; i++ {
					for j := 0; j < n; j++ {
						w := want.At(i, j)
						if (uplo == Lower && j > i) || (uplo == Upper && j < i) {
							w = 0
						}
						if !close32(tm[i*ld+j], w, 8*float64(n)*u32*(1+math.Abs(w))) {
							t.Fatalf("%s n=%d %v: inv[%d,%d] = %v want %v", bname(be), n, uplo, i, j, tm[i*ld+j], w)
						}
					}
				}
			}
		}
	}
}

func TestSPDInverse(t *testing.T) {
	r := rand.New(rand.NewPCG(27, 28))
	for _, be := range backends() {
		for _, n := range linalgSizes {
			ld := n + 1
			a, ref := randSPD(r, n, ld)
			for i := 0; i < n; i++ {
				for j := i + 1; j < n; j++ {
					a[i*ld+j] = float32(math.NaN()) // upper not read
				}
			}
			if err := be.SPDInverse(a, n, ld); err != nil {
				t.Fatal(err)
			}
			var want mat.Dense
			if err := want.Inverse(ref); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < n; i++ {
				for j := 0; j < n; j++ {
					w := want.At(i, j)
					if !close32(a[i*ld+j], w, 16*float64(n)*u32*(1+math.Abs(w))) {
						t.Fatalf("%s n=%d: inv[%d,%d] = %v want %v", bname(be), n, i, j, a[i*ld+j], w)
					}
				}
			}
		}
	}
}
