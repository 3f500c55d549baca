package kernels

import "testing"

func BenchmarkMicroKernel(b *testing.B) {
	ap := make([]float32, gemmKC*gemmMR)
	bp := make([]float32, gemmKC*gemmNR)
	c := make([]float32, gemmMR*gemmNR)
	for b.Loop() {
		microKernelSIMD(gemmKC, ap, bp, c, gemmNR)
	}
	b.ReportMetric(2*gemmKC*gemmMR*gemmNR*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

func BenchmarkSgemm1T(b *testing.B) {
	be := benchBackend(1)
	m, n, k := 512, 4096, 4096
	a, bm, c := make([]float32, m*k), make([]float32, k*n), make([]float32, m*n)
	for b.Loop() {
		_ = be.Sgemm(false, false, m, n, k, 1, a, k, bm, n, 0, c, n)
	}
	b.ReportMetric(2*float64(m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

func BenchmarkLut4DotRow(b *testing.B) {
	const n = 4096
	x := make([]float32, n)
	codes := make([]byte, n/2)
	muls := make([]float32, n/32)
	offs := make([]float32, n/32)
	var base [16]float32
	if !haveSIMD {
		b.Skip("no SIMD kernels")
	}
	for b.Loop() {
		lut4DotSIMD(x, codes, n/32, 32, &base, muls, offs)
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gelem/s")
}

func BenchmarkDotRow(b *testing.B) {
	const n = 4096
	x := make([]float32, n)
	y := make([]float32, n)
	for b.Loop() {
		dotF32(x, y)
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gelem/s")
}

func BenchmarkPackBTrans(b *testing.B) {
	const k = 4096
	src := make([]float32, 16*k)
	dst := make([]float32, gemmKC*gemmNR)
	for b.Loop() {
		for pc := 0; pc < k; pc += gemmKC {
			packB(dst, true, src, k, pc, gemmKC, 0, 16)
		}
	}
	b.ReportMetric(float64(16*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gelem/s")
}
