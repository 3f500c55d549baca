package hadamard

import (
	"math"
	"math/rand/v2"
	"testing"
)

func randVec(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

func TestOrthogonalAndBlockDiagonal(t *testing.T) {
	for _, dim := range []int{1, 7, 16, 32, 48, 100, 256, 300} {
		for _, block := range []int{1, 16, 32, 128} {
			for _, seed := range []uint64{0, 5} {
				r, err := New(dim, block, seed)
				if err != nil {
					t.Fatal(err)
				}
				m := r.Matrix()
				// R·Rᵀ = I.
				for i := 0; i < dim; i++ {
					for j := 0; j < dim; j++ {
						var s float64
						for k := 0; k < dim; k++ {
							s += m[i*dim+k] * m[j*dim+k]
						}
						want := 0.0
						if i == j {
							want = 1
						}
						if math.Abs(s-want) > 1e-6 {
							t.Fatalf("dim %d block %d seed %d: (R·Rᵀ)[%d,%d] = %v", dim, block, seed, i, j, s)
						}
					}
				}
				// Block structure: nonzero only inside a span, magnitude 1/√size.
				blockOf := make([]int, dim)
				size := make([]int, dim)
				for k, sp := range r.spans {
					for i := sp[0]; i < sp[0]+sp[1]; i++ {
						blockOf[i], size[i] = k, sp[1]
					}
				}
				for i := 0; i < dim; i++ {
					if size[i] > block {
						t.Fatalf("span larger than block")
					}
					for j := 0; j < dim; j++ {
						v := math.Abs(m[i*dim+j])
						if blockOf[i] != blockOf[j] {
							if v != 0 {
								t.Fatalf("dim %d block %d: entry (%d,%d) outside blocks = %v", dim, block, i, j, v)
							}
						} else if math.Abs(v-1/math.Sqrt(float64(size[i]))) > 1e-7 {
							t.Fatalf("dim %d block %d: |R[%d,%d]| = %v, want 1/√%d", dim, block, i, j, v, size[i])
						}
					}
				}
			}
		}
	}
}

// TestSylvester: the 4×4 block is the textbook normalised Hadamard matrix.
func TestSylvester(t *testing.T) {
	r, _ := New(4, 4, 0)
	want := []float64{1, 1, 1, 1, 1, -1, 1, -1, 1, 1, -1, -1, 1, -1, -1, 1}
	for i, v := range r.Matrix() {
		if math.Abs(v-want[i]/2) > 1e-7 {
			t.Fatalf("R[%d] = %v, want %v", i, v, want[i]/2)
		}
	}
	// Tail decomposition: 48 with block 32 = 32 + 16; 100 with 32 = 3×32 + 4.
	for _, c := range []struct{ dim, block, spans, last int }{{48, 32, 2, 16}, {100, 32, 4, 4}, {7, 16, 3, 1}} {
		r, _ := New(c.dim, c.block, 0)
		if len(r.spans) != c.spans || r.spans[len(r.spans)-1][1] != c.last {
			t.Errorf("dim %d block %d: spans %v", c.dim, c.block, r.spans)
		}
	}
}

// TestLinearInvariance: (W·Rᵀ)(R·x) = W·x, with Apply on both sides, and
// ApplyT undoes Apply; ApplyColumns equals R·W.
func TestLinearInvariance(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct {
		in, out, block int
		seed           uint64
	}{{64, 24, 32, 0}, {96, 10, 64, 9}, {100, 8, 16, 3}, {256, 5, 128, 0}} {
		r, err := New(c.in, c.block, c.seed)
		if err != nil {
			t.Fatal(err)
		}
		w := randVec(rng, c.out*c.in)
		x := randVec(rng, 3*c.in)
		y := matmulT(x, w, 3, c.in, c.out)
		w2 := append([]float32(nil), w...)
		x2 := append([]float32(nil), x...)
		if err := r.Apply(w2, c.out); err != nil {
			t.Fatal(err)
		}
		if err := r.Apply(x2, 3); err != nil {
			t.Fatal(err)
		}
		y2 := matmulT(x2, w2, 3, c.in, c.out)
		for i := range y {
			if math.Abs(float64(y[i]-y2[i])) > 1e-4*(1+math.Abs(float64(y[i]))) {
				t.Fatalf("%+v: y[%d] = %v rotated %v", c, i, y[i], y2[i])
			}
		}
		if err := r.ApplyT(w2, c.out); err != nil {
			t.Fatal(err)
		}
		for i := range w {
			if math.Abs(float64(w[i]-w2[i])) > 1e-5 {
				t.Fatalf("%+v: ApplyT∘Apply differs at %d: %v vs %v", c, i, w2[i], w[i])
			}
		}
		// ApplyColumns on an in×k matrix equals R·M with the dense R.
		m := randVec(rng, c.in*4)
		got := append([]float32(nil), m...)
		if err := r.ApplyColumns(got, 4); err != nil {
			t.Fatal(err)
		}
		R := r.Matrix()
		for i := 0; i < c.in; i++ {
			for j := 0; j < 4; j++ {
				var s float64
				for k := 0; k < c.in; k++ {
					s += R[i*c.in+k] * float64(m[k*4+j])
				}
				if math.Abs(s-float64(got[i*4+j])) > 1e-4 {
					t.Fatalf("%+v: ApplyColumns[%d,%d] = %v, R·M = %v", c, i, j, got[i*4+j], s)
				}
			}
		}
	}
}

// TestNormPreserved is a property test over random dims, blocks and seeds.
func TestNormPreserved(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for it := 0; it < 200; it++ {
		dim := 1 + rng.IntN(700)
		block := 1 << rng.IntN(9)
		r, err := New(dim, block, rng.Uint64()%4)
		if err != nil {
			t.Fatal(err)
		}
		v := randVec(rng, dim)
		var n0 float64
		for _, x := range v {
			n0 += float64(x) * float64(x)
		}
		_ = r.Apply(v, 1)
		var n1 float64
		for _, x := range v {
			n1 += float64(x) * float64(x)
		}
		if math.Abs(n1/n0-1) > 1e-5 {
			t.Fatalf("dim %d block %d: norm² %v → %v", dim, block, n0, n1)
		}
	}
}

// TestSpreadsOutliers: one large coordinate is spread evenly over its block,
// the reason rotations help block-scaled formats.
func TestSpreadsOutliers(t *testing.T) {
	r, _ := New(64, 32, 0)
	v := make([]float32, 64)
	v[3] = 32
	_ = r.Apply(v, 1)
	for i := 0; i < 32; i++ {
		if math.Abs(math.Abs(float64(v[i]))-32/math.Sqrt(32)) > 1e-5 {
			t.Fatalf("v[%d] = %v", i, v[i])
		}
	}
	for i := 32; i < 64; i++ {
		if v[i] != 0 {
			t.Fatalf("v[%d] = %v leaked out of the block", i, v[i])
		}
	}
}

func TestSpecAndErrors(t *testing.T) {
	r, _ := New(96, 32, 7)
	back, err := Parse(r.Spec(), 96)
	if err != nil {
		t.Fatal(err)
	}
	a, b := r.Matrix(), back.Matrix()
	for i := range a {
		if a[i] != b[i] {
			t.Fatal("Parse(Spec) differs")
		}
	}
	for _, s := range []string{"", "hadamard", "hadamard:block=3", "hadamard:block=x", "rot:block=4", "hadamard:bloc=4", "hadamard:block=4:seed=-1", "hadamard:block"} {
		if _, err := Parse(s, 8); err == nil {
			t.Errorf("Parse(%q) accepted", s)
		}
	}
	for _, c := range [][2]int{{0, 4}, {8, 0}, {8, 12}, {8, 1 << 20}} {
		if _, err := New(c[0], c[1], 0); err == nil {
			t.Errorf("New(%d, %d) accepted", c[0], c[1])
		}
	}
	if err := r.Apply(make([]float32, 95), 1); err == nil {
		t.Error("ragged Apply accepted")
	}
	if err := r.ApplyColumns(make([]float32, 95), 1); err == nil {
		t.Error("ragged ApplyColumns accepted")
	}
}

func FuzzParse(f *testing.F) {
	f.Add("hadamard:block=32", 64)
	f.Add("hadamard:block=16:seed=3", 40)
	f.Add("hadamard:block=:seed=", 1)
	f.Fuzz(func(t *testing.T, spec string, dim int) {
		if dim > 4096 {
			dim %= 4096
		}
		r, err := Parse(spec, dim)
		if err != nil {
			return
		}
		v := make([]float32, r.Dim())
		if err := r.Apply(v, 1); err != nil {
			t.Fatal(err)
		}
	})
}

// matmulT returns x·Wᵀ for x n×in and W out×in.
func matmulT(x, w []float32, n, in, out int) []float64 {
	y := make([]float64, n*out)
	for i := 0; i < n; i++ {
		for o := 0; o < out; o++ {
			var s float64
			for k := 0; k < in; k++ {
				s += float64(x[i*in+k]) * float64(w[o*in+k])
			}
			y[i*out+o] = s
		}
	}
	return y
}

// TestConjugateSym: R·H·Rᵀ is the Hessian of rotated activations.
func TestConjugateSym(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const d, n = 48, 200
	r, _ := New(d, 32, 11)
	x := randVec(rng, n*d)
	hess := func(x []float32) []float64 {
		h := make([]float64, d*d)
		for t := 0; t < n; t++ {
			for i := 0; i < d; i++ {
				for j := 0; j < d; j++ {
					h[i*d+j] += 2 * float64(x[t*d+i]) * float64(x[t*d+j]) / n
				}
			}
		}
		return h
	}
	h := hess(x)
	got, err := r.ConjugateSym(h)
	if err != nil {
		t.Fatal(err)
	}
	xr := append([]float32(nil), x...)
	_ = r.Apply(xr, n)
	want := hess(xr)
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-4 {
			t.Fatalf("(R·H·Rᵀ)[%d] = %v, Hessian of rotated x = %v", i, got[i], want[i])
		}
	}
	if _, err := r.ConjugateSym(h[:10]); err == nil {
		t.Error("ragged matrix accepted")
	}
}
