package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/marlin-llm/marlin/quant"
)

// q8Format returns the named format with group size gs (0: its default).
func q8Format(t testing.TB, name string, gs int) quant.Format {
	t.Helper()
	f, err := quant.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	if gs != 0 {
		f.GroupSize = gs
	}
	return f
}

// q8Formats are the int8-path formats the tests cover: every kernel, every
// group size, symmetric and asymmetric integers.
func q8Formats(t testing.TB) []quant.Format {
	return []quant.Format{
		q8Format(t, "mxfp4", 0), q8Format(t, "nvfp4", 0), q8Format(t, "fp4", 0), q8Format(t, "fp4", 32),
		q8Format(t, "int4", 0), q8Format(t, "int4", 32), q8Format(t, "int4", 64),
		q8Format(t, "int4_asym", 0), q8Format(t, "int4_asym", 64), q8Format(t, "int4_asym", 32),
	}
}

// q8Case quantizes a random rows×cols matrix to f and draws a random x.
func q8Case(t testing.TB, f quant.Format, seed uint64, rows, cols int) (*quant.Packed, []float32) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 7))
	w := randSlice(r, rows*cols)
	for i := range w { // a spread of magnitudes, so the scales vary
		w[i] *= float32(math.Exp2(float64(r.IntN(12) - 6)))
	}
	if f.Asym { // asymmetric groups: shift some
		for i := range w {
			if (i/128)%3 == 0 {
				w[i] += 0.5
			}
		}
	}
	p, err := quant.Quantize(w, rows, cols, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	x := randSlice(r, cols)
	for i := range x {
		if r.IntN(50) == 0 {
			x[i] *= 40 // outliers, as real activations have
		}
	}
	return p, x
}

// q8Rows runs the int8 kernel of q (assembly when asm) on all rows of p.
func q8Rows(p *quant.Packed, q *q8Weight, a *q8Act, y []float32, asm bool) {
	switch {
	case q.kind == q8E4M3 && asm:
		q8NVRows(p.Codes, p.RowBytes(), p.Scales, p.Rows, a, q, y)
	case q.kind == q8E4M3:
		q8NVRowsGo(p.Codes, p.RowBytes(), p.Scales, p.Rows, a, q, y)
	case q.kind == q8E8M0 && asm:
		q8MXRows(p.Codes, p.RowBytes(), p.Scales, p.Rows, a, &q.lut, y)
	case q.kind == q8E8M0:
		q8MXRowsGo(p.Codes, p.RowBytes(), p.Scales, p.Rows, a, &q.lut, y)
	case asm:
		q8F16Rows(p.Codes, p.RowBytes(), p.Scales, p.Zeros, p.Rows, a, q, y)
	default:
		q8F16RowsGo(p.Codes, p.RowBytes(), p.Scales, p.Zeros, p.Rows, a, q, y)
	}
}

// TestQ8RowsAVXMatchesGo compares the assembly kernels with their Go
// references: the integer parts are exact, the float32 parts differ only by
// the kernels' fused multiply-adds, so the results agree within
// 2^-20·Σ|terms| (a few ulp of the per-lane sums).
func TestQ8RowsAVXMatchesGo(t *testing.T) {
	if !haveSIMD || !haveF16C {
		t.Skip("no AVX2/FMA/F16C")
	}
	for _, f := range q8Formats(t) {
		for _, s := range [][2]int{{1, 256}, {3, 512}, {17, 768}, {64, 4096}} {
			rows, cols := s[0], s[1]
			t.Run(fmt.Sprintf("%v/%dx%d", f, rows, cols), func(t *testing.T) {
				p, x := q8Case(t, f, uint64(rows*cols), rows, cols)
				q := newQ8Weight(p)
				if q == nil {
					t.Fatal("weight not eligible")
				}
				a := newQ8Act(cols)
				if !a.quantize(x) {
					t.Fatal("finite x refused")
				}
				got, want := make([]float32, rows), make([]float32, rows)
				for i := range got {
					got[i], want[i] = float32(i), float32(i)
				}
				q8Rows(p, q, a, got, true)
				q8Rows(p, q, a, want, false)
				w := make([]float32, rows*cols)
				p.Dequantize(w)
				for r := range got {
					var mag float64
					for c := 0; c < cols; c++ {
						mag += math.Abs(float64(w[r*cols+c]) * float64(x[c]))
					}
					if d := math.Abs(float64(got[r] - want[r])); d > 0x1p-20*(mag+float64(r)) || math.IsNaN(d) {
						t.Errorf("row %d: asm %v, go %v (|diff| %g, Σ|w·x| %g)", r, got[r], want[r], d, mag)
					}
				}
			})
		}
	}
}

// TestQ8GEMVWithinActivationBound checks the int8-activation GEMV (through
// a prepared weight, as models run it) against float64 products of the
// exact weights: the difference must stay within the activation-rounding
// bound Σ_b Σ_i |w_i|·d_b/2 (plus float32 summation slack), computed here
// from x alone, not from the kernel. The Go reference kernels are checked
// against the same bound.
func TestQ8GEMVWithinActivationBound(t *testing.T) {
	c := newCPU(Options{}, true)
	for _, f := range q8Formats(t) {
		for _, s := range [][2]int{{5, 256}, {300, 768}, {33, 2048}} {
			rows, cols := s[0], s[1]
			p, x := q8Case(t, f, uint64(rows+cols), rows, cols)
			w := make([]float32, rows*cols)
			p.Dequantize(w)
			ys := map[string][]float32{}
			if c.simd && haveF16C {
				y := make([]float32, rows)
				pw, err := c.Prepare(p)
				if err != nil {
					t.Fatal(err)
				}
				if err := pw.DequantGEMM(1, x, cols, 0, y, rows); err != nil {
					t.Fatal(err)
				}
				ys["prepared"] = y
			}
			q := newQ8Weight(p)
			a := newQ8Act(cols)
			if q == nil || !a.quantizeGo(x) {
				t.Fatalf("%v: not eligible", f)
			}
			ys["go"] = make([]float32, rows)
			q8Rows(p, q, a, ys["go"], false)
			for name, y := range ys {
				exactDiffers := false
				for r := 0; r < rows; r++ {
					var dot, bound, mag float64
					for b := 0; b < cols/q8Block; b++ {
						var amax float64
						for i := b * q8Block; i < (b+1)*q8Block; i++ {
							amax = max(amax, math.Abs(float64(x[i])))
						}
						for i := b * q8Block; i < (b+1)*q8Block; i++ {
							wi := float64(w[r*cols+i])
							dot += wi * float64(x[i])
							bound += math.Abs(wi) * amax / 127 / 2
							mag += math.Abs(wi * float64(x[i]))
						}
					}
					d := math.Abs(float64(y[r]) - dot)
					if !(d <= bound*(1+1e-6)+1e-6*mag) {
						t.Errorf("%s %v %dx%d row %d: |y − exact| = %g exceeds the activation bound %g", name, f, rows, cols, r, d, bound)
					}
					if d > 1e-5*mag {
						exactDiffers = true
					}
				}
				if !exactDiffers {
					t.Errorf("%s %v %dx%d: matches float products exactly: int8 path not taken?", name, f, rows, cols)
				}
			}
		}
	}
}

// TestQ8Eligibility: only the covered formats take the int8 path, MXFP4
// only with every scale code normal, and non-finite activations fall back
// to the exact path.
func TestQ8Eligibility(t *testing.T) {
	for _, f := range q8Formats(t) {
		if p, _ := q8Case(t, f, 3, 4, 256); newQ8Weight(p) == nil {
			t.Errorf("%v not eligible", f)
		}
	}
	for _, f := range []quant.Format{q8Format(t, "nf4", 0), q8Format(t, "int3", 0),
		q8Format(t, "int8", 0), q8Format(t, "int4", 256), q8Format(t, "int4", 96)} {
		if p, _ := q8Case(t, f, 3, 4, 768); newQ8Weight(p) != nil {
			t.Errorf("%v took the int8 path", f)
		}
	}
	mx := q8Format(t, "mxfp4", 0)
	if odd, _ := q8Case(t, mx, 4, 4, 224); newQ8Weight(odd) != nil {
		t.Error("224 columns (not a multiple of 256) took the int8 path")
	}
	p, x := q8Case(t, mx, 3, 4, 256)
	sub := *p
	sub.Scales = append([]byte(nil), p.Scales...)
	sub.Scales[5] = 0
	if newQ8Weight(&sub) != nil {
		t.Error("scale code 0 (2^-127, subnormal) took the int8 path")
	}
	a := newQ8Act(256)
	x[17] = float32(math.NaN())
	if a.quantize(x) {
		t.Error("NaN activation quantized")
	}
	// NaN still propagates through the prepared GEMV.
	c := newCPU(Options{}, haveSIMD)
	pw, err := c.Prepare(p)
	if err != nil {
		t.Fatal(err)
	}
	y := make([]float32, 4)
	if err := pw.DequantGEMM(1, x, 256, 0, y, 4); err != nil {
		t.Fatal(err)
	}
	if !math.IsNaN(float64(y[0])) {
		t.Errorf("NaN input gave %v", y[0])
	}
}

// TestQ8QuantAVXMatchesGo: the assembly activation quantizer writes the
// same bytes, scales and corrections as the Go one, including all-zero
// blocks, ties, outliers and the largest finite values, and refuses NaN
// and ±Inf the same way.
func TestQ8QuantAVXMatchesGo(t *testing.T) {
	if !haveSIMD {
		t.Skip("no AVX2/FMA")
	}
	r := rand.New(rand.NewPCG(9, 9))
	for trial := 0; trial < 200; trial++ {
		cols := 64 * (1 + r.IntN(8))
		x := randSlice(r, cols)
		switch trial % 5 {
		case 1: // a zero block
			clear(x[32:64])
		case 2: // exact ties: amax 63.5 makes id = 2 and x·id = k + ½
			for i := range x {
				x[i] = float32(r.IntN(253)-126)/2 + 0.25
			}
			for b := 0; b < cols/32; b++ {
				x[32*b] = 63.5
			}
		case 3:
			x[r.IntN(cols)] = math.MaxFloat32
			x[r.IntN(cols)] = -math.SmallestNonzeroFloat32
		case 4: // tiny blocks, down to subnormals: 127/amax would overflow
			for i := range x {
				x[i] *= 1e-30
			}
			for i := 0; i < 32; i++ {
				x[i] *= 1e-8
			}
			x[40], x[41] = 3e-45, -1e-44
			for i := 42; i < 64; i++ {
				x[i] = 0
			}
		}
		a, g := newQ8Act(cols), newQ8Act(cols)
		okA, okG := q8Quant(x, a), g.quantizeGo(x)
		if !okA || !okG {
			t.Fatalf("trial %d: finite x refused (asm %v, go %v)", trial, okA, okG)
		}
		for i := range a.q {
			if a.q[i] != g.q[i] {
				t.Fatalf("trial %d: q[%d] asm %d, go %d", trial, i, a.q[i], g.q[i])
			}
		}
		for i := range a.s {
			if math.Float32bits(a.s[i]) != math.Float32bits(g.s[i]) {
				t.Fatalf("trial %d: s[%d] asm %v, go %v", trial, i, a.s[i], g.s[i])
			}
		}
		for i := range a.sq {
			if math.Float32bits(a.sq[i]) != math.Float32bits(g.sq[i]) {
				t.Fatalf("trial %d: sq[%d] asm %v, go %v", trial, i, a.sq[i], g.sq[i])
			}
		}
	}
	for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
		x := make([]float32, 128)
		x[100] = bad
		if q8Quant(x, newQ8Act(128)) || newQ8Act(128).quantizeGo(x) {
			t.Errorf("%v accepted", bad)
		}
	}
}

// TestQ8TinyBlocks: blocks whose largest |x| is far below 1 (even
// subnormal) are quantized to full-range codes, not overflowed ones.
func TestQ8TinyBlocks(t *testing.T) {
	x := make([]float32, 64)
	for i := range x {
		x[i] = float32(i%7-3) * 1e-39
	}
	x[32] = 2e-38
	x[33] = -1e-38
	a := newQ8Act(64)
	if !a.quantize(x) {
		t.Fatal("tiny finite x refused")
	}
	for b := 0; b < 2; b++ {
		var amax float64
		for i := 32 * b; i < 32*(b+1); i++ {
			amax = max(amax, math.Abs(float64(x[i])))
		}
		d := 2 * float64(a.s[b])
		// Decode q back (undoing the pair interleave) and compare.
		for i := 0; i < 32; i++ {
			h, p := b&1, b/2
			var q int8
			if i%2 == 0 {
				q = a.q[64*p+16*h+i/2]
			} else {
				q = a.q[64*p+32+16*h+i/2]
			}
			if e := math.Abs(float64(q)*d - float64(x[32*b+i])); e > d/2*(1+1e-6) {
				t.Errorf("block %d element %d: q %d·d %g vs x %g", b, i, q, d, x[32*b+i])
			}
		}
	}
}

// TestQ8GEMVBatches runs the int8 path through DequantGEMM with 1..7
// activation rows, padded leading dimensions and beta ≠ 0: every row must
// equal the single-row product of that row (the rows are independent) plus
// beta·C, and the padding of C stays untouched.
func TestQ8GEMVBatches(t *testing.T) {
	if !haveSIMD || !haveF16C {
		t.Skip("no AVX2/FMA/F16C")
	}
	c := newCPU(Options{}, true)
	for _, f := range q8Formats(t) {
		for _, rows := range []int{1, 17, 33} {
			cols := 512
			p, _ := q8Case(t, f, uint64(rows), rows, cols)
			pw, err := c.Prepare(p)
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(uint64(rows), 5))
			for m := 1; m < dqBigM; m++ {
				ldx, ldc := cols+5, rows+3
				x := randSlice(r, m*ldx)
				c0 := randSlice(r, m*ldc)
				got := append([]float32(nil), c0...)
				if err := pw.DequantGEMM(m, x, ldx, 0.5, got, ldc); err != nil {
					t.Fatal(err)
				}
				for i := 0; i < m; i++ {
					one := make([]float32, rows)
					if err := pw.DequantGEMM(1, x[i*ldx:i*ldx+cols], cols, 0, one, rows); err != nil {
						t.Fatal(err)
					}
					for j := 0; j < ldc; j++ {
						g := got[i*ldc+j]
						want := c0[i*ldc+j]
						if j < rows {
							want = 0.5*c0[i*ldc+j] + one[j]
						}
						if g != want {
							t.Fatalf("%v %dx%d m=%d: C[%d,%d] = %v, want %v", f, rows, cols, m, i, j, g, want)
						}
					}
				}
			}
		}
	}
}
