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
