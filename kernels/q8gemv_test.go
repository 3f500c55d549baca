package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/marlin-llm/marlin/quant"
)

// q8Case quantizes a random rows×cols matrix to MXFP4 and a random x.
func q8Case(t testing.TB, seed uint64, rows, cols int) (*quant.Packed, []float32) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 7))
	w := randSlice(r, rows*cols)
	for i := range w { // a spread of magnitudes, so the E8M0 scales vary
		w[i] *= float32(math.Exp2(float64(r.IntN(12) - 6)))
	}
	f, err := quant.Lookup("mxfp4")
	if err != nil {
		t.Fatal(err)
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

// TestQ8MXRowsAVXMatchesGo compares the assembly kernel with its Go
// reference: the integer parts are exact, the float32 parts differ only by
// the kernel's fused multiply-adds, so the results agree within
// 2^-20·Σ|terms| (a few ulp of the per-lane sums).
func TestQ8MXRowsAVXMatchesGo(t *testing.T) {
	if !haveSIMD {
		t.Skip("no AVX2/FMA")
	}
	for _, s := range [][2]int{{1, 256}, {3, 512}, {17, 768}, {64, 4096}} {
		rows, cols := s[0], s[1]
		t.Run(fmt.Sprintf("%dx%d", rows, cols), func(t *testing.T) {
			p, x := q8Case(t, uint64(rows*cols), rows, cols)
			q := newQ8Weight(p)
			if q == nil {
				t.Fatal("mxfp4 weight not eligible")
			}
			a := newQ8Act(cols)
			if !a.quantize(x) {
				t.Fatal("finite x refused")
			}
			got, want := make([]float32, rows), make([]float32, rows)
			for i := range got {
				got[i], want[i] = float32(i), float32(i)
			}
			q8MXRows(p.Codes, p.RowBytes(), p.Scales, rows, a, &q.lut, got)
			q8MXRowsGo(p.Codes, p.RowBytes(), p.Scales, rows, a, &q.lut, want)
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

// TestQ8GEMVWithinActivationBound checks the int8-activation GEMV against
// float64 products of the exact weights: the difference must stay within
// the activation-rounding bound Σ_b Σ_i |w_i|·d_b/2 (plus float32
// summation slack), computed here from x alone, not from the kernel.
func TestQ8GEMVWithinActivationBound(t *testing.T) {
	for _, simd := range []bool{false, true} {
		if simd && !haveSIMD {
			continue
		}
		c := newCPU(Options{}, simd)
		for _, s := range [][2]int{{5, 256}, {300, 768}, {33, 2048}} {
			rows, cols := s[0], s[1]
			p, x := q8Case(t, uint64(rows+cols), rows, cols)
			w := make([]float32, rows*cols)
			p.Dequantize(w)
			y := make([]float32, rows)
			pw, err := c.Prepare(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := pw.DequantGEMM(1, x, cols, 0, y, rows); err != nil {
				t.Fatal(err)
			}
			var exactDiffers bool
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
				if d > bound*(1+1e-6)+1e-6*mag {
					t.Errorf("simd=%v %dx%d row %d: |y − exact| = %g exceeds the activation bound %g", simd, rows, cols, r, d, bound)
				}
				if d > 1e-5*mag {
					exactDiffers = true
				}
			}
			if simd && !exactDiffers {
				t.Errorf("%dx%d: the SIMD GEMV matches float products exactly: int8 path not taken?", rows, cols)
			}
		}
	}
}

// TestQ8Eligibility: only MXFP4 weights with every scale code normal take
// the int8 path, and non-finite activations fall back to the exact one.
func TestQ8Eligibility(t *testing.T) {
	p, x := q8Case(t, 3, 4, 256)
	if newQ8Weight(p) == nil {
		t.Fatal("mxfp4 not eligible")
	}
	for _, name := range []string{"nvfp4", "int4", "fp4", "nf4"} {
		f, err := quant.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		w := make([]float32, 4*256)
		p.Dequantize(w)
		q, err := quant.Quantize(w, 4, 256, f, nil)
		if err != nil {
			t.Fatal(err)
		}
		if newQ8Weight(q) != nil {
			t.Errorf("%s took the mxfp4 int8 path", name)
		}
	}
	odd, _ := q8Case(t, 4, 4, 224)
	if newQ8Weight(odd) != nil {
		t.Error("224 columns (not a multiple of 256) took the int8 path")
	}
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
		case 2: // exact ties: x·127/amax = k + ½
			for i := range x {
				x[i] = float32(r.IntN(255)-127) / 2
			}
			for b := 0; b < cols/32; b++ {
				x[32*b] = 63.5
			}
		case 3:
			x[r.IntN(cols)] = math.MaxFloat32
			x[r.IntN(cols)] = -math.SmallestNonzeroFloat32
		case 4:
			for i := range x {
				x[i] *= 1e-30
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
		for i := range a.c {
			if a.c[i] != g.c[i] {
				t.Fatalf("trial %d: c[%d] asm %d, go %d", trial, i, a.c[i], g.c[i])
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
