package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// naiveDgemm is the textbook triple loop the blocked Dgemm is checked against.
func naiveDgemm(transA, transB bool, m, n, k int, alpha float64, a []float64, lda int,
	b []float64, ldb int, beta float64, c []float64, ldc int) {
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for p := 0; p < k; p++ {
				av := a[i*lda+p]
				if transA {
					av = a[p*lda+i]
				}
				bv := b[p*ldb+j]
				if transB {
					bv = b[j*ldb+p]
				}
				s += av * bv
			}
			c[i*ldc+j] = alpha*s + beta*c[i*ldc+j]
		}
	}
}

func TestDgemmMatchesNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	kernels := map[string]dgemmKernel{"go": dgemmKernelGo}
	if haveSIMD {
		kernels["simd"] = dgemmKernelSIMD
	}
	for name, kern := range kernels {
		for _, sz := range [][3]int{{1, 1, 1}, {6, 8, 4}, {7, 9, 300}, {97, 130, 513}, {200, 2100, 40}, {13, 5, 0}} {
			for _, tr := range [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
				for _, beta := range []float64{0, 1, -0.5} {
					m, n, k := sz[0], sz[1], sz[2]
					t.Run(fmt.Sprintf("%s/%dx%dx%d/tA=%v/tB=%v/beta=%v", name, m, n, k, tr[0], tr[1], beta), func(t *testing.T) {
						lda, ldb, ldc := k+3, n+1, n+2
						if tr[0] {
							lda = m + 3
						}
						if tr[1] {
							ldb = k + 1
						}
						a := randF64(r, max(m, k)*lda)
						b := randF64(r, max(n, k)*ldb)
						c := randF64(r, m*ldc)
						want := append([]float64(nil), c...)
						naiveDgemm(tr[0], tr[1], m, n, k, 1.5, a, lda, b, ldb, beta, want, ldc)
						if err := dgemm(kern, 3, tr[0], tr[1], m, n, k, 1.5, a, lda, b, ldb, beta, c, ldc); err != nil {
							t.Fatal(err)
						}
						for i := range c {
							if d := math.Abs(c[i] - want[i]); d > 1e-12*float64(k+1)*3 {
								t.Fatalf("C[%d] = %v, want %v", i, c[i], want[i])
							}
						}
					})
				}
			}
		}
	}
}

func TestDgemmRejectsShortOperands(t *testing.T) {
	for _, tc := range []struct {
		name    string
		a, b, c int
	}{
		{"A", 4, 6, 6}, {"B", 5, 5, 6}, {"C", 5, 6, 5},
	} {
		err := Dgemm(false, false, 2, 3, 2, 1, make([]float64, tc.a), 3, make([]float64, tc.b), 3, 0, make([]float64, tc.c), 3)
		if err == nil {
			t.Errorf("%s short: no error", tc.name)
		}
	}
}

func randF64(r *rand.Rand, n int) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = r.NormFloat64()
	}
	return x
}

// BenchmarkDgemm times a 1024³ float64 GEMM and reports GFLOP/s.
func BenchmarkDgemm(b *testing.B) {
	const n = 1024
	r := rand.New(rand.NewPCG(1, 2))
	x, y, z := randF64(r, n*n), randF64(r, n*n), make([]float64, n*n)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := Dgemm(false, true, n, n, n, 1, x, n, y, n, 0, z, n); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(2*n*n*n*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}
