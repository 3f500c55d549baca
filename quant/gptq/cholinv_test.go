package gptq

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// invCholUpperRef is the textbook cholesky(inverse(H)) that invCholUpper
// replaced, kept as the test reference. It damps H in place and returns the upper Cholesky factor of
// H⁻¹ (row-major, zeros below the diagonal) and the damping used. When H
// is not positive definite after damping, damping grows tenfold (at most
// four times) before giving up.
func invCholUpperRef(H []float64, n int, damp float64) ([]float64, float64, error) {
	if damp <= 0 {
		damp = 1e-8
	}
	base := append([]float64(nil), H...)
	for try := 0; try < 5; try++ {
		a := append([]float64(nil), base...)
		for i := 0; i < n; i++ {
			a[i*n+i] += damp
		}
		var ch mat.Cholesky
		if ch.Factorize(mat.NewSymDense(n, a)) {
			var inv mat.SymDense
			err := ch.InverseTo(&inv)
			var cond mat.Condition
			if err == nil || errors.As(err, &cond) && !math.IsInf(float64(cond), 0) {
				var ch2 mat.Cholesky
				if ch2.Factorize(&inv) {
					var u mat.TriDense
					ch2.UTo(&u)
					out := make([]float64, n*n)
					for i := 0; i < n; i++ {
						for j := i; j < n; j++ {
							out[i*n+j] = u.At(i, j)
						}
					}
					return out, damp, nil
				}
			}
		}
		damp *= 10
	}
	return nil, damp, fmt.Errorf("gptq: hessian not positive definite even with damping %g", damp)
}

// TestInvCholUpperMatchesTextbook checks the reversed-Cholesky factor
// against cholesky(inverse(H)) on Hessians of real activations and on a
// rank-deficient one that needs extra damping.
func TestInvCholUpperMatchesTextbook(t *testing.T) {
	for _, tc := range []struct {
		name       string
		cols, toks int
	}{
		{"wide", 96, 400},
		{"rank-deficient", 80, 20},
		{"odd", 130, 300},
	} {
		t.Run(tc.name, func(t *testing.T) {
			L := genLayer(t, 7, 4, tc.cols, tc.toks, -1)
			n := tc.cols
			var mean float64
			for i := 0; i < n; i++ {
				mean += L.h[i*n+i]
			}
			damp := 0.01 * mean / float64(n)
			want, wd, err := invCholUpperRef(append([]float64(nil), L.h...), n, damp)
			if err != nil {
				t.Fatal(err)
			}
			got, gd, err := invCholUpper(context.Background(), L.h, n, nil, nil, damp)
			if err != nil {
				t.Fatal(err)
			}
			if gd != wd {
				t.Fatalf("damping %g, textbook %g", gd, wd)
			}
			var maxAbs, maxDiff float64
			for i := range want {
				maxAbs = math.Max(maxAbs, math.Abs(want[i]))
				maxDiff = math.Max(maxDiff, math.Abs(got[i]-want[i]))
				if i%n < i/n && got[i] != 0 {
					t.Fatalf("entry below the diagonal (%d,%d) = %g", i/n, i%n, got[i])
				}
			}
			if maxDiff > 1e-9*maxAbs {
				t.Fatalf("max|diff| %g, max|U| %g", maxDiff, maxAbs)
			}
		})
	}
}

func TestInvCholUpperCancels(t *testing.T) {
	L := genLayer(t, 7, 4, 300, 600, -1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := invCholUpper(ctx, L.h, 300, nil, nil, 1e-3); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	_ = fmt.Sprint
}

// BenchmarkInvCholUpper times the factor for a 2048-column Hessian (a
// GLM-4.7-Flash q/k/v or expert input) and reports GFLOP/s counting the
// factorization and the triangular inverse as n³/3 each.
func BenchmarkInvCholUpper(b *testing.B) {
	for _, n := range []int{1024, 2048} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			L := genLayer(b, 1, 2, n, 2*n, -1)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, _, err := invCholUpper(context.Background(), L.h, n, nil, nil, 1e-2); err != nil {
					b.Fatal(err)
				}
			}
			fl := 2 * float64(n) * float64(n) * float64(n) / 3
			b.ReportMetric(fl*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
		b.Run(fmt.Sprint(n)+"-textbook", func(b *testing.B) {
			L := genLayer(b, 1, 2, n, 2*n, -1)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, _, err := invCholUpperRef(append([]float64(nil), L.h...), n, 1e-2); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
