//go:build darwin

package metal

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/marlin-llm/marlin/kernels"
	"github.com/marlin-llm/marlin/quant"
)

// BenchmarkDequantGEMM times the Metal dequant-GEMV/GEMM against the CPU
// backend on the same shapes in the same run and reports GFLOP/s, GB/s of
// packed weights and the Metal/CPU ratio. Times include buffer creation
// and copies per call (weights are not kept resident between calls).
func BenchmarkDequantGEMM(b *testing.B) {
	dev, err := openDevice()
	if err != nil {
		b.Skipf("no Metal device: %v", err)
	}
	gpu, err := newBackend(dev, kernels.Options{})
	if err != nil {
		b.Fatal(err)
	}
	cpu, err := kernels.Open("cpu", kernels.Options{})
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct {
		format  string
		m, n, k int
	}{{"mxfp4", 1, 4096, 4096}, {"int4", 1, 4096, 4096}, {"mxfp4", 128, 4096, 4096}, {"nvfp4", 128, 4096, 4096}} {
		f, _ := quant.Lookup(c.format)
		w := make([]float32, c.n*c.k)
		for i := range w {
			w[i] = float32(rng.NormFloat64())
		}
		pk, err := quant.Quantize(w, c.n, c.k, f, nil)
		if err != nil {
			b.Fatal(err)
		}
		x := make([]float32, c.m*c.k)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		out := make([]float32, c.m*c.n)
		bytes := float64(len(pk.Codes) + len(pk.Scales) + len(pk.Zeros))
		flops := 2 * float64(c.m) * float64(c.n) * float64(c.k)
		run := func(be kernels.Backend) time.Duration {
			t0 := time.Now()
			if err := be.DequantGEMM(c.m, x, c.k, pk, 0, out, c.n); err != nil {
				b.Fatal(err)
			}
			return time.Since(t0)
		}
		b.Run(fmt.Sprintf("%s_%dx%dx%d", c.format, c.m, c.n, c.k), func(b *testing.B) {
			run(gpu) // compile the pipeline
			cpuT := run(cpu)
			var gpuT time.Duration
			for i := 0; i < b.N; i++ {
				gpuT += run(gpu)
			}
			per := gpuT.Seconds() / float64(b.N)
			b.ReportMetric(flops/per/1e9, "GFLOP/s")
			b.ReportMetric(bytes/per/1e9, "GB/s")
			b.ReportMetric(cpuT.Seconds()/per, "x_cpu")
		})
	}
}
