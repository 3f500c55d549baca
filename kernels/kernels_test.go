package kernels

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// u32 is the unit roundoff of float32.
const u32 = 1.0 / (1 << 24)

// backends returns the CPU backend with the assembly kernels (when the CPU
// has them) and with the pure-Go kernels, each with 1 and 3 threads: the
// variants every test runs against.
func backends() []*cpu {
	out := []*cpu{newCPU(Options{Threads: 1}, false), newCPU(Options{Threads: 3}, false)}
	if haveSIMD {
		out = append(out, newCPU(Options{Threads: 1}, true), newCPU(Options{Threads: 3}, true))
	}
	return out
}

func bname(c *cpu) string { return fmt.Sprintf("simd=%v/threads=%d", c.simd, c.threads) }

func randSlice(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64())
	}
	return s
}

// refGemm is the naive float64 reference: it returns C and the bound
// alpha·Σ|a||b| + |beta·c| per element, used to scale tolerances.
func refGemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) (out, mag []float64) {
	out = make([]float64, m*n)
	mag = make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s, sa float64
			for p := 0; p < k; p++ {
				var av, bv float32
				if transA {
					av = a[p*lda+i]
				} else {
					av = a[i*lda+p]
				}
				if transB {
					bv = b[j*ldb+p]
				} else {
					bv = b[p*ldb+j]
				}
				s += float64(av) * float64(bv)
				sa += math.Abs(float64(av) * float64(bv))
			}
			cv := 0.0
			if beta != 0 {
				cv = float64(beta) * float64(c[i*ldc+j])
			}
			out[i*n+j] = float64(alpha)*s + cv
			mag[i*n+j] = math.Abs(float64(alpha))*sa + math.Abs(cv)
		}
	}
	return out, mag
}

func TestSgemm(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	type shape struct{ m, n, k int }
	shapes := []shape{
		{1, 1, 1}, {1, 17, 5}, {7, 1, 3}, {5, 7, 1}, {6, 16, 256}, {7, 17, 257},
		{13, 33, 300}, {121, 35, 19}, {2, 700, 9}, {1, 600, 513}, {1, 700, 1501},
		{130, 530, 520}, {3, 4100, 2}, {250, 20, 600},
	}
	if raceEnabled {
		shapes = shapes[:10] // the big ones add nothing the race detector needs
	}
	bes := backends()
	for _, s := range shapes {
		for _, tA := range []bool{false, true} {
			for _, tB := range []bool{false, true} {
				for _, ab := range [][2]float32{{1, 0}, {-0.5, 1}, {2, 0.25}} {
					alpha, beta := ab[0], ab[1]
					// Leading dimensions larger than the rows to catch ld bugs.
					ar, ac := s.m, s.k
					if tA {
						ar, ac = s.k, s.m
					}
					br, bc := s.k, s.n
					if tB {
						br, bc = s.n, s.k
					}
					lda, ldb, ldc := ac+3, bc+1, s.n+2
					a := randSlice(r, (ar-1)*lda+ac)
					b := randSlice(r, (br-1)*ldb+bc)
					c0 := randSlice(r, (s.m-1)*ldc+s.n)
					if beta == 0 {
						c0[0] = float32(math.NaN()) // must not propagate
					}
					want, mag := refGemm(tA, tB, s.m, s.n, s.k, alpha, a, lda, b, ldb, beta, c0, ldc)
					for _, be := range bes {
						name := fmt.Sprintf("%s/%dx%dx%d/tA=%v/tB=%v/a=%v/b=%v", bname(be), s.m, s.n, s.k, tA, tB, alpha, beta)
						c := append([]float32(nil), c0...)
						if err := be.Sgemm(tA, tB, s.m, s.n, s.k, alpha, a, lda, b, ldb, beta, c, ldc); err != nil {
							t.Fatalf("%s: %v", name, err)
						}
						for i := 0; i < s.m; i++ {
							for j := 0; j < s.n; j++ {
								got := float64(c[i*ldc+j])
								tol := 2 * float64(s.k+2) * u32 * mag[i*s.n+j]
								if math.Abs(got-want[i*s.n+j]) > tol || math.IsNaN(got) {
									t.Fatalf("%s: C[%d,%d] = %v, want %v (tol %g)", name, i, j, got, want[i*s.n+j], tol)
								}
							}
						}
					}
				}
			}
		}
	}
}

func TestSgemmPaddingUntouched(t *testing.T) {
	for _, be := range backends() {
		m, n, k, ldc := 19, 37, 41, 40
		r := rand.New(rand.NewPCG(3, 4))
		a, b := randSlice(r, m*k), randSlice(r, k*n)
		c := make([]float32, m*ldc)
		for i := range c {
			c[i] = 7
		}
		if err := be.Sgemm(false, false, m, n, k, 1, a, k, b, n, 0, c, ldc); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < m; i++ {
			for j := n; j < ldc; j++ {
				if c[i*ldc+j] != 7 {
					t.Fatalf("%s: padding C[%d,%d] overwritten", bname(be), i, j)
				}
			}
		}
	}
}

func TestSgemmStrided(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, be := range backends() {
		for _, sz := range [][4]int{{5, 9, 11, 4}, {161, 163, 167, 2}} {
			m, n, k, batch := sz[0], sz[1], sz[2], sz[3]
			sa, sb, sc := m*k+3, k*n+1, m*n+2
			a, b := randSlice(r, batch*sa), randSlice(r, batch*sb)
			c := make([]float32, batch*sc)
			if err := be.SgemmStrided(false, false, m, n, k, 1, a, k, sa, b, n, sb, 0, c, n, sc, batch); err != nil {
				t.Fatal(err)
			}
			for bi := 0; bi < batch; bi++ {
				want, mag := refGemm(false, false, m, n, k, 1, a[bi*sa:], k, b[bi*sb:], n, 0, nil, n)
				for i := range want {
					if d := math.Abs(float64(c[bi*sc+i]) - want[i]); d > 2*float64(k+2)*u32*mag[i] {
						t.Fatalf("%s: batch %d elem %d: got %v want %v", bname(be), bi, i, c[bi*sc+i], want[i])
					}
				}
			}
		}
	}
}

func TestSgemmBadShapes(t *testing.T) {
	be := NewCPU(Options{})
	a := make([]float32, 10)
	cases := []struct {
		name          string
		m, n, k       int
		lda, ldb, ldc int
	}{
		{"negative", -1, 2, 2, 2, 2, 2},
		{"short A", 4, 2, 3, 3, 2, 2},
		{"lda too small", 2, 2, 3, 2, 2, 2},
		{"short C", 2, 6, 1, 1, 6, 6},
	}
	for _, tc := range cases {
		err := be.Sgemm(false, false, tc.m, tc.n, tc.k, 1, a, tc.lda, a, tc.ldb, 0, a, tc.ldc)
		if !errors.Is(err, ErrShape) {
			t.Errorf("%s: err = %v, want ErrShape", tc.name, err)
		}
	}
}

func TestOpen(t *testing.T) {
	for _, name := range []string{"cpu", "auto", ""} {
		b, err := Open(name, Options{})
		if err != nil {
			t.Fatalf("Open(%q): %v", name, err)
		}
		if b.Name() != "cpu" {
			t.Fatalf("Open(%q) = %s, want cpu (no other backend on this platform)", name, b.Name())
		}
	}
	if _, err := Open("nope", Options{}); !errors.Is(err, ErrUnknownBackend) {
		t.Fatalf("Open(nope) err = %v", err)
	}
	if _, err := Open("cpu", Options{Threads: -1}); err == nil {
		t.Fatal("negative threads accepted")
	}
}
