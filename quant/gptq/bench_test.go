package gptq

import (
	"context"
	"testing"

	"github.com/marlin-llm/marlin/quant"
)

// BenchmarkQuantize times GPTQ on a 768×2048 layer (INT4-g128, act-order,
// static groups) and reports weights per second. Numbers on the shared
// 2-core machine are noisy.
func BenchmarkQuantize(b *testing.B) {
	const rows, cols = 768, 2048
	L := genLayer(b, 1, rows, cols, 4096, -1)
	g := refIntGrid{4, 128}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Quantize(context.Background(), L.w, rows, cols, L.h, g, Options{ActOrder: true, StaticGroups: true}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(rows*cols)*float64(b.N)/b.Elapsed().Seconds()/1e6, "Mweights/s")
}

// BenchmarkHessianAdd times F64 SYRK accumulation of 2048 tokens of width
// 1024 and reports GFLOP/s (n·c² multiply-adds counted once).
func BenchmarkHessianAdd(b *testing.B) {
	const n, cols = 2048, 1024
	x := make([]float32, n*cols)
	r := &rng{s: 3}
	for i := range x {
		x[i] = float32(r.normal())
	}
	h, _ := NewHessian(cols, F64)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := h.Add(x, n); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)*cols*cols*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

// BenchmarkQuantizeMXFP4Expert times MR-GPTQ's GPTQ step on a GLM-4.7-Flash
// expert projection's shape (1536×2048, MXFP4, act-order, scale search),
// Hessian from 4096 tokens, and reports weights per second.
func BenchmarkQuantizeMXFP4Expert(b *testing.B) {
	const rows, cols = 1536, 2048
	L := genLayer(b, 1, rows, cols, 4096, -1)
	f, err := quant.Lookup("mxfp4")
	if err != nil {
		b.Fatal(err)
	}
	w := make([]float32, len(L.w))
	for i, v := range L.w {
		w[i] = float32(v)
	}
	opt := Options{ActOrder: true, StaticGroups: true, ClipRatios: DefaultClipRatios()}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := QuantizeFormat(context.Background(), w, rows, cols, L.h, f, opt); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(rows*cols)*float64(b.N)/b.Elapsed().Seconds()/1e6, "Mweights/s")
}
