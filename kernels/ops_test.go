package kernels

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

func close32(got float32, want, tol float64) bool {
	return math.Abs(float64(got)-want) <= tol
}

func TestRMSNorm(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, be := range backends() {
		for _, sz := range [][2]int{{1, 1}, {3, 7}, {5, 4096}} {
			rows, cols := sz[0], sz[1]
			x := randSlice(r, rows*cols)
			w := randSlice(r, cols)
			for _, weight := range [][]float32{w, nil} {
				dst := make([]float32, rows*cols)
				if err := be.RMSNorm(dst, x, weight, rows, cols, 1e-6); err != nil {
					t.Fatal(err)
				}
				for i := 0; i < rows; i++ {
					var ss float64
					for j := 0; j < cols; j++ {
						v := float64(x[i*cols+j])
						ss += v * v
					}
					inv := 1 / math.Sqrt(ss/float64(cols)+1e-6)
					for j := 0; j < cols; j++ {
						want := float64(x[i*cols+j]) * inv
						if weight != nil {
							want *= float64(w[j])
						}
						if !close32(dst[i*cols+j], want, 4*u32*math.Abs(want)+1e-30) {
							t.Fatalf("%s %dx%d: [%d,%d] = %v want %v", bname(be), rows, cols, i, j, dst[i*cols+j], want)
						}
					}
				}
			}
			// In place.
			y := append([]float32(nil), x...)
			if err := be.RMSNorm(y, y, w, rows, cols, 1e-6); err != nil {
				t.Fatal(err)
			}
			z := make([]float32, len(x))
			_ = be.RMSNorm(z, x, w, rows, cols, 1e-6)
			for i := range y {
				if y[i] != z[i] {
					t.Fatalf("in-place RMSNorm differs at %d", i)
				}
			}
		}
	}
	if err := NewCPU(Options{}).RMSNorm(make([]float32, 3), make([]float32, 4), nil, 2, 2, 0); !errors.Is(err, ErrShape) {
		t.Fatalf("short dst: %v", err)
	}
}

func TestSoftmax(t *testing.T) {
	inf := float32(math.Inf(1))
	for _, be := range backends() {
		rows := [][]float32{
			{0},
			{1, 2, 3},
			{1000, 1000, -1000},   // would overflow without max subtraction
			{-inf, 0, -inf, 1},    // -Inf entries give 0
			{-inf, -inf},          // all -Inf: zeros
			{-1e30, 5, 5.0000005}, // tiny differences
		}
		for _, row := range rows {
			x := append([]float32(nil), row...)
			if err := be.Softmax(x, 1, len(x)); err != nil {
				t.Fatal(err)
			}
			m := math.Inf(-1)
			for _, v := range row {
				m = math.Max(m, float64(v))
			}
			var sum float64
			want := make([]float64, len(row))
			for i, v := range row {
				if !math.IsInf(m, -1) {
					want[i] = math.Exp(float64(v) - m)
				}
				sum += want[i]
			}
			for i := range want {
				if sum > 0 {
					want[i] /= sum
				}
				if !close32(x[i], want[i], 10*u32*want[i]+1e-37) {
					t.Fatalf("%s softmax(%v)[%d] = %v want %v", bname(be), row, i, x[i], want[i])
				}
			}
		}
	}
}

func TestSiLUMulSigmoid(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, be := range backends() {
		n := 10001
		g, u := randSlice(r, n), randSlice(r, n)
		g[0], g[1], g[2] = 100, -100, 0
		dst := make([]float32, n)
		if err := be.SiLUMul(dst, g, u); err != nil {
			t.Fatal(err)
		}
		sg := make([]float32, n)
		if err := be.Sigmoid(sg, g); err != nil {
			t.Fatal(err)
		}
		for i := range g {
			s := 1 / (1 + math.Exp(-float64(g[i])))
			want := float64(g[i]) * s * float64(u[i])
			// exp is a ~3 ulp vector kernel; results below ~1e-38 flush to 0.
			if !close32(dst[i], want, 12*u32*math.Abs(want)+1e-37) {
				t.Fatalf("silu-mul[%d] (g=%v u=%v) = %v want %v", i, g[i], u[i], dst[i], want)
			}
			if !close32(sg[i], s, 10*u32*s+1e-37) {
				t.Fatalf("sigmoid(%v) = %v want %v", g[i], sg[i], s)
			}
		}
		if err := be.SiLUMul(dst, g, u[:3]); !errors.Is(err, ErrShape) {
			t.Fatalf("mismatched lengths: %v", err)
		}
	}
}

func TestRoPE(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	be := NewCPU(Options{})
	tokens, heads, headDim := 3, 2, 10
	pos := []int{0, 5, 1000}
	for _, rotDim := range []int{10, 6} {
		cos, sin, err := RoPETables(pos, rotDim, 10000)
		if err != nil {
			t.Fatal(err)
		}
		for _, style := range []RoPEStyle{RoPENeoX, RoPEInterleaved} {
			x := randSlice(r, tokens*heads*headDim)
			orig := append([]float32(nil), x...)
			if err := be.RoPE(x, tokens, heads, headDim, rotDim, cos, sin, style); err != nil {
				t.Fatal(err)
			}
			half := rotDim / 2
			for tk := 0; tk < tokens; tk++ {
				for h := 0; h < heads; h++ {
					base := (tk*heads + h) * headDim
					for i := 0; i < half; i++ {
						ang := float64(pos[tk]) / math.Pow(10000, float64(2*i)/float64(rotDim))
						i1, i2 := base+i, base+i+half
						if style == RoPEInterleaved {
							i1, i2 = base+2*i, base+2*i+1
						}
						a, b := float64(orig[i1]), float64(orig[i2])
						w1 := a*math.Cos(ang) - b*math.Sin(ang)
						w2 := b*math.Cos(ang) + a*math.Sin(ang)
						tol := 1e-5 * (math.Abs(a) + math.Abs(b))
						if !close32(x[i1], w1, tol) || !close32(x[i2], w2, tol) {
							t.Fatalf("rot %d style %d tok %d head %d pair %d: got (%v,%v) want (%v,%v)", rotDim, style, tk, h, i, x[i1], x[i2], w1, w2)
						}
					}
					for i := rotDim; i < headDim; i++ {
						if x[base+i] != orig[base+i] {
							t.Fatalf("non-rotated element %d changed", i)
						}
					}
				}
			}
		}
	}
	if _, _, err := RoPETables(pos, 5, 1e4); !errors.Is(err, ErrShape) {
		t.Fatalf("odd rotDim: %v", err)
	}
}

func TestTopK(t *testing.T) {
	nan := float32(math.NaN())
	be := NewCPU(Options{})
	cases := []struct {
		x    []float32
		k    int
		vals []float32
		idx  []int32
	}{
		{[]float32{1, 3, 2}, 2, []float32{3, 2}, []int32{1, 2}},
		{[]float32{5, 5, 5, 1}, 3, []float32{5, 5, 5}, []int32{0, 1, 2}},
		{[]float32{nan, 1, nan, 0}, 3, []float32{1, 0, nan}, []int32{1, 3, 0}},
		{[]float32{-1}, 1, []float32{-1}, []int32{0}},
		{[]float32{0, 1, 2, 3, 4, 5, 6}, 7, []float32{6, 5, 4, 3, 2, 1, 0}, []int32{6, 5, 4, 3, 2, 1, 0}},
	}
	for ci, tc := range cases {
		vals := make([]float32, tc.k)
		idx := make([]int32, tc.k)
		if err := be.TopK(tc.x, 1, len(tc.x), tc.k, vals, idx); err != nil {
			t.Fatal(err)
		}
		for i := range vals {
			same := vals[i] == tc.vals[i] || (vals[i] != vals[i] && tc.vals[i] != tc.vals[i])
			if !same || idx[i] != tc.idx[i] {
				t.Fatalf("case %d: got %v %v want %v %v", ci, vals, idx, tc.vals, tc.idx)
			}
		}
	}
	// Random rows against a sort.
	r := rand.New(rand.NewPCG(13, 14))
	rows, cols, k := 20, 64, 8
	x := randSlice(r, rows*cols)
	vals := make([]float32, rows*k)
	idx := make([]int32, rows*k)
	if err := be.TopK(x, rows, cols, k, vals, idx); err != nil {
		t.Fatal(err)
	}
	for rr := 0; rr < rows; rr++ {
		row := x[rr*cols : rr*cols+cols]
		for i := 0; i < k; i++ {
			greater := 0
			for _, v := range row {
				if v > vals[rr*k+i] {
					greater++
				}
			}
			if greater != i || row[idx[rr*k+i]] != vals[rr*k+i] {
				t.Fatalf("row %d rank %d: value %v has %d larger", rr, i, vals[rr*k+i], greater)
			}
		}
	}
	if err := be.TopK(x, 1, 4, 5, vals, idx); !errors.Is(err, ErrShape) {
		t.Fatalf("k > cols: %v", err)
	}
}

// refWHT is the O(n²) definition: y[i] = Σ_j (-1)^popcount(i&j) x[j].
func refWHT(x []float32) []float64 {
	n := len(x)
	y := make([]float64, n)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			s := 1.0
			for b := i & j; b != 0; b &= b - 1 {
				s = -s
			}
			y[i] += s * float64(x[j])
		}
	}
	return y
}

func TestFWHT(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	for _, be := range backends() {
		for _, lb := range []int{0, 1, 2, 3, 4, 5, 7, 8, 10} {
			bs := 1 << lb
			for _, rows := range []int{1, 3} {
				cols := bs * 3
				for _, norm := range []bool{false, true} {
					x := randSlice(r, rows*cols)
					orig := append([]float32(nil), x...)
					if err := be.FWHT(x, rows, cols, lb, norm); err != nil {
						t.Fatal(err)
					}
					scale := 1.0
					if norm {
						scale = 1 / math.Sqrt(float64(bs))
					}
					for b := 0; b < rows*cols; b += bs {
						want := refWHT(orig[b : b+bs])
						var mag float64
						for _, v := range orig[b : b+bs] {
							mag += math.Abs(float64(v))
						}
						for i, w := range want {
							tol := float64(lb+1) * 2 * u32 * mag * scale
							if !close32(x[b+i], w*scale, tol) {
								t.Fatalf("%s block %d norm %v: [%d] = %v want %v", bname(be), bs, norm, b+i, x[b+i], w*scale)
							}
						}
					}
				}
			}
		}
	}
}

// TestFWHTSIMDMatchesGo: the vector butterflies do the same float
// operations in the same order as the Go ones, so results are bit-identical.
func TestFWHTSIMDMatchesGo(t *testing.T) {
	if !haveSIMD {
		t.Skip("no SIMD kernels on this CPU/build")
	}
	r := rand.New(rand.NewPCG(17, 18))
	for lb := 0; lb <= 12; lb++ {
		for _, scale := range []float32{1, 0.125, float32(1 / math.Sqrt(float64(int(1)<<lb)))} {
			x := randSlice(r, 4<<lb)
			y := append([]float32(nil), x...)
			fwhtGo(x, lb, scale)
			fwhtSIMD(y, lb, scale)
			for i := range x {
				if math.Float32bits(x[i]) != math.Float32bits(y[i]) {
					t.Fatalf("log2 block %d scale %v: [%d] go %v simd %v", lb, scale, i, x[i], y[i])
				}
			}
		}
	}
}

func TestFWHTErrors(t *testing.T) {
	be := NewCPU(Options{})
	for _, tc := range []struct{ rows, cols, lb int }{{1, 12, 3}, {1, 8, -1}, {1, 8, 30}, {-1, 8, 3}, {2, 8, 3}} {
		if err := be.FWHT(make([]float32, 8), tc.rows, tc.cols, tc.lb, true); !errors.Is(err, ErrShape) {
			t.Errorf("%+v: %v", tc, err)
		}
	}
}

func TestFWHTInvolution(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 20))
	be := NewCPU(Options{})
	x := randSlice(r, 4*4096)
	orig := append([]float32(nil), x...)
	for range 2 {
		if err := be.FWHT(x, 4, 4096, 7, true); err != nil {
			t.Fatal(err)
		}
	}
	for i := range x {
		if !close32(x[i], float64(orig[i]), 1e-5*(1+math.Abs(float64(orig[i])))) {
			t.Fatalf("H·H·x != x at %d: %v vs %v", i, x[i], orig[i])
		}
	}
	_ = fmt.Sprint()
}
