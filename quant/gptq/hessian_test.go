package gptq

import (
	"fmt"
	"github.com/marlin-llm/marlin/kernels"
	"math"
	"testing"

	"github.com/marlin-llm/marlin/tensor"
)

// naiveH is 2XᵀX/n in float64, straight from the definition.
func naiveH(x []float32, n, cols int) []float64 {
	h := make([]float64, cols*cols)
	for t := 0; t < n; t++ {
		for i := 0; i < cols; i++ {
			xi := float64(x[t*cols+i])
			for j := 0; j < cols; j++ {
				h[i*cols+j] += 2 * xi * float64(x[t*cols+j]) / float64(n)
			}
		}
	}
	return h
}

func maxRelDiff(a, b []float64) float64 {
	var scale, d float64
	for i := range a {
		scale = math.Max(scale, math.Abs(b[i]))
		d = math.Max(d, math.Abs(a[i]-b[i]))
	}
	return d / scale
}

func TestHessianAccumulation(t *testing.T) {
	const n, cols = 700, 48
	L := genLayer(t, 99, 4, cols, n, -1)
	want := naiveH(L.x, n, cols)
	for _, c := range []struct {
		prec  Precision
		batch int
		tol   float64
	}{{F64, 1, 1e-12}, {F64, 64, 1e-12}, {F64, 700, 1e-12}, {F32, 1, 1e-4}, {F32, 100, 1e-5}} {
		h, err := NewHessian(cols, c.prec)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i += c.batch {
			e := min(i+c.batch, n)
			if err := h.Add(L.x[i*cols:e*cols], e-i); err != nil {
				t.Fatal(err)
			}
		}
		if h.Samples() != n {
			t.Errorf("samples %d, want %d", h.Samples(), n)
		}
		if d := maxRelDiff(h.Matrix(), want); d > c.tol {
			t.Errorf("%v batch %d: max rel diff %g > %g", c.prec, c.batch, d, c.tol)
		}
	}
}

func TestHessianMergeAndTensor(t *testing.T) {
	const n, cols = 300, 16
	L := genLayer(t, 1, 4, cols, n, -1)
	a, _ := NewHessian(cols, F64)
	b, _ := NewHessian(cols, F64)
	if err := a.Add(L.x[:100*cols], 100); err != nil {
		t.Fatal(err)
	}
	if err := b.Add(L.x[100*cols:], 200); err != nil {
		t.Fatal(err)
	}
	if err := a.Merge(b); err != nil {
		t.Fatal(err)
	}
	if d := maxRelDiff(a.Matrix(), naiveH(L.x, n, cols)); d > 1e-12 {
		t.Errorf("merged hessian off by %g", d)
	}
	for _, prec := range []Precision{F32, F64} {
		h, _ := NewHessian(cols, prec)
		_ = h.Add(L.x, n)
		back, err := HessianFromTensor(h.Tensor("h"))
		if err != nil {
			t.Fatal(err)
		}
		if back.Samples() != n || back.Precision() != prec {
			t.Errorf("round trip: samples %d prec %v", back.Samples(), back.Precision())
		}
		if d := maxRelDiff(back.Matrix(), h.Matrix()); d != 0 {
			t.Errorf("%v round trip differs by %g", prec, d)
		}
	}
	c, _ := NewHessian(cols+1, F64)
	if err := a.Merge(c); err == nil {
		t.Error("merging different widths: no error")
	}
}

func TestHessianErrors(t *testing.T) {
	if _, err := NewHessian(0, F32); err == nil {
		t.Error("width 0 accepted")
	}
	h, _ := NewHessian(4, F32)
	if err := h.Add(make([]float32, 7), 2); err == nil {
		t.Error("ragged input accepted")
	}
	if err := h.Add([]float32{1, 2, float32(math.NaN()), 4}, 1); err == nil {
		t.Error("NaN input accepted")
	}
	good := h.Tensor("h")
	bad := []*tensor.Tensor{
		nil,
		{Name: "h", DType: tensor.F32, Shape: []int{4, 5}, Data: make([]byte, 80), Meta: good.Meta},
		{Name: "h", DType: tensor.BF16, Shape: []int{4, 4}, Data: make([]byte, 32), Meta: good.Meta},
		{Name: "h", DType: tensor.F32, Shape: []int{4, 4}, Data: make([]byte, 60), Meta: good.Meta},
		{Name: "h", DType: tensor.F32, Shape: []int{4, 4}, Data: make([]byte, 64), Meta: map[string]string{"gptq.samples": "-3"}},
		{Name: "h", DType: tensor.F32, Shape: []int{4, 4}, Data: []byte{0, 0, 0xc0, 0x7f}, Meta: good.Meta},
	}
	for i, b := range bad {
		if _, err := HessianFromTensor(b); err == nil {
			t.Errorf("bad tensor %d accepted", i)
		}
	}
}

func FuzzHessianFromTensor(f *testing.F) {
	h, _ := NewHessian(3, F32)
	_ = h.Add([]float32{1, 2, 3, 4, 5, 6}, 2)
	good := h.Tensor("h")
	f.Add(good.Data, 3, 3, "2", uint8(tensor.F32))
	f.Add([]byte{1, 2, 3}, 1, 1, "x", uint8(tensor.F64))
	f.Add([]byte{}, 0, -1, "0", uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, r, c int, samples string, dt uint8) {
		tt := &tensor.Tensor{Name: "h", DType: tensor.DType(dt), Shape: []int{r, c}, Data: data,
			Meta: map[string]string{"gptq.samples": samples}}
		hh, err := HessianFromTensor(tt)
		if err != nil {
			return
		}
		if len(hh.Matrix()) != r*c {
			t.Fatalf("matrix size %d for %dx%d", len(hh.Matrix()), r, c)
		}
	})
}

// TestHessianGemm: accumulation through a GEMM callback (a backend's
// Sgemm) matches the definition, with one block row of the upper triangle
// and with several (the last one short), folded on several goroutines.
func TestHessianGemm(t *testing.T) {
	for _, cols := range []int{24, 2*hessTileCols + 88} {
		t.Run(fmt.Sprint(cols), func(t *testing.T) { testHessianGemm(t, cols) })
	}
}

func testHessianGemm(t *testing.T, cols int) {
	const n = 300
	L := genLayer(t, 8, 4, cols, n, -1)
	gemm := func(transA, transB bool, m, nn, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) error {
		if !transA || transB {
			t.Fatal("unexpected transposes")
		}
		for i := 0; i < m; i++ {
			for j := 0; j < nn; j++ {
				var s float64
				for r := 0; r < k; r++ {
					s += float64(a[r*lda+i]) * float64(b[r*ldb+j])
				}
				c[i*ldc+j] = alpha*float32(s) + beta*c[i*ldc+j]
			}
		}
		return nil
	}
	for _, prec := range []Precision{F32, F64} {
		h, _ := NewHessian(cols, prec)
		h.UseGemm(gemm)
		for i := 0; i < n; i += 100 {
			if err := h.Add(L.x[i*cols:(i+100)*cols], 100); err != nil {
				t.Fatal(err)
			}
		}
		if d := maxRelDiff(h.Matrix(), naiveH(L.x, n, cols)); d > 1e-5 {
			t.Errorf("%v: gemm accumulation off by %g", prec, d)
		}
	}
}

// BenchmarkHessianAddTiles folds batches of 1024 token rows into a 2048-wide
// Hessian (a routed expert's gate/up input at real width) through the
// serial CPU Sgemm, tiles in parallel; GFLOP/s counts the upper triangle.
func BenchmarkHessianAddTiles(b *testing.B) {
	const rows, cols = 1024, 2048
	be, err := kernels.Open("cpu", kernels.Options{})
	if err != nil {
		b.Fatal(err)
	}
	sb, _ := kernels.Serial(be)
	x := make([]float32, rows*cols)
	for i := range x {
		x[i] = float32(i%97) / 97
	}
	h, _ := NewHessian(cols, F64)
	h.UseGemm(sb.Sgemm)
	for b.Loop() {
		if err := h.Add(x, rows); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(rows)*cols*(cols+1)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}
