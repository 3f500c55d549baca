package kernels

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/marlin-llm/marlin/quant"
)

// Benchmarks report GFLOP/s or GB/s; scripts/bench_numpy.py runs numpy
// (OpenBLAS) on the same shapes and prints the ratios. Numbers on a shared
// 2-core machine are noisy: use -count and compare medians.

func benchBackend(threads int) *cpu { return newCPU(Options{Threads: threads}, true) }

func BenchmarkSgemm(b *testing.B) {
	for _, s := range []struct{ m, n, k int }{{1, 4096, 4096}, {128, 4096, 4096}, {2048, 4096, 4096}} {
		for _, tb := range []bool{false, true} {
			b.Run(fmt.Sprintf("%dx%dx%d/tB=%v", s.m, s.n, s.k, tb), func(b *testing.B) {
				r := rand.New(rand.NewPCG(1, 1))
				be := benchBackend(0)
				a, bm, c := randSlice(r, s.m*s.k), randSlice(r, s.k*s.n), make([]float32, s.m*s.n)
				ldb := s.n
				if tb {
					ldb = s.k
				}
				b.ResetTimer()
				for b.Loop() {
					if err := be.Sgemm(false, tb, s.m, s.n, s.k, 1, a, s.k, bm, ldb, 0, c, s.n); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(2*float64(s.m)*float64(s.n)*float64(s.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// reportGBs reports nb bytes per iteration as GB/s of wall time and, where
// the process CPU time is readable, GB/cpu-s: bytes per CPU second used by
// the whole process (all worker threads), which on a shared machine is the
// steadier figure to compare the GEMV with the copy by.
func reportGBs(b *testing.B, nb float64, cpu0 float64, cpuOK bool) {
	b.ReportMetric(nb*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
	if c1, ok := processCPU(); ok && cpuOK && c1 > cpu0 {
		b.ReportMetric(nb*float64(b.N)/(c1-cpu0)/1e9, "GB/cpu-s")
	}
}

// packedBytes is the size of a packed tensor's payload.
func packedBytes(p *quant.Packed) int { return len(p.Codes) + len(p.Scales) + len(p.Zeros) }

// BenchmarkDequantGEMV measures y = W·x for 4096×4096 packed weights in
// GB/s of packed bytes, next to a plain copy of the same bytes
// ("copy-threads=N"). Like a decode step through a model's layers, each
// iteration uses the next of dqBenchWeights different weights (about 70 MB
// of MXFP4 in all, more than the L3 cache), so both stream from memory.
func BenchmarkDequantGEMV(b *testing.B) {
	const rows, cols = 4096, 4096
	const dqBenchWeights = 8
	for _, name := range []string{"mxfp4", "int4", "nvfp4", "nf4", "int3"} {
		b.Run(name, func(b *testing.B) {
			r := rand.New(rand.NewPCG(2, 2))
			f, err := quant.Lookup(name)
			if err != nil {
				b.Fatal(err)
			}
			p0, err := quant.Quantize(randSlice(r, rows*cols), rows, cols, f, nil)
			if err != nil {
				b.Fatal(err)
			}
			ws := make([]*quant.Packed, dqBenchWeights)
			for i := range ws {
				// Distinct copies (same values) so that nothing stays cached.
				p := *p0
				p.Codes = append([]byte(nil), p0.Codes...)
				p.Scales = append([]byte(nil), p0.Scales...)
				p.Zeros = append([]byte(nil), p0.Zeros...)
				ws[i] = &p
			}
			x := randSlice(r, cols)
			y := make([]float32, rows)
			nb := float64(packedBytes(p0))
			gemv := func(be *cpu) func(b *testing.B) {
				return func(b *testing.B) {
					i := 0
					cpu0, cpuOK := processCPU()
					for b.Loop() {
						if err := be.DequantGEMM(1, x, cols, ws[i%len(ws)], 0, y, rows); err != nil {
							b.Fatal(err)
						}
						i++
					}
					reportGBs(b, nb, cpu0, cpuOK)
				}
			}
			// The exact path, for comparison with the default int8
			// activations (kernels.Options.F32Activations).
			b.Run("f32act-threads=0", gemv(newCPU(Options{F32Activations: true}, true)))
			for _, th := range []int{1, 0} {
				b.Run(fmt.Sprintf("threads=%d", th), gemv(benchBackend(th)))
				b.Run(fmt.Sprintf("copy-threads=%d", th), func(b *testing.B) {
					srcs := make([][]byte, dqBenchWeights)
					for i := range srcs {
						srcs[i] = make([]byte, int(nb))
						for j := range srcs[i] {
							srcs[i][j] = byte(j)
						}
					}
					dst := make([]byte, int(nb))
					t := th
					if t == 0 {
						t = benchBackend(0).threads
					}
					chunk := (len(dst) + t - 1) / t
					i := 0
					cpu0, cpuOK := processCPU()
					for b.Loop() {
						src := srcs[i%len(srcs)]
						parallelFor(t, t, func(_, k int) {
							lo := k * chunk
							hi := min(len(src), lo+chunk)
							copy(dst[lo:hi], src[lo:hi])
						})
						i++
					}
					reportGBs(b, nb, cpu0, cpuOK)
				})
			}
		})
	}
}

// BenchmarkDequantGEMM is the prefill shape: 128 tokens through a
// 4096×4096 MXFP4 weight.
func BenchmarkDequantGEMM(b *testing.B) {
	const m, rows, cols = 128, 4096, 4096
	r := rand.New(rand.NewPCG(3, 3))
	f, _ := quant.Lookup("mxfp4")
	p, err := quant.Quantize(randSlice(r, rows*cols), rows, cols, f, nil)
	if err != nil {
		b.Fatal(err)
	}
	x := randSlice(r, m*cols)
	y := make([]float32, m*rows)
	be := benchBackend(0)
	for b.Loop() {
		if err := be.DequantGEMM(m, x, cols, p, 0, y, rows); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(2*float64(m*rows*cols)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

// BenchmarkFWHT transforms 1024 rows of 4096 floats in blocks of 2^k, in
// GB/s of float32 data; threads=1 is the per-core figure.
func BenchmarkFWHT(b *testing.B) {
	const rows, cols = 1024, 4096
	x := randSlice(rand.New(rand.NewPCG(4, 4)), rows*cols)
	for _, lb := range []int{5, 7, 12} {
		for _, th := range []int{1, 0} {
			b.Run(fmt.Sprintf("block=%d/threads=%d", 1<<lb, th), func(b *testing.B) {
				be := benchBackend(th)
				for b.Loop() {
					if err := be.FWHT(x, rows, cols, lb, true); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(4*rows*cols)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
			})
		}
	}
}

// BenchmarkCholesky factors a 4096×4096 SPD matrix (float32).
func BenchmarkCholesky(b *testing.B) {
	const n = 4096
	be := benchBackend(0)
	r := rand.New(rand.NewPCG(5, 5))
	// Symmetric, strictly diagonally dominant: SPD and well conditioned.
	spd := make([]float32, n*n)
	for i := 0; i < n; i++ {
		for j := 0; j < i; j++ {
			v := float32(r.Float64() - 0.5)
			spd[i*n+j], spd[j*n+i] = v, v
		}
		spd[i*n+i] = n
	}
	a := make([]float32, n*n)
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		copy(a, spd)
		b.StartTimer()
		if err := be.Cholesky(Lower, a, n, n); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)*float64(n)*float64(n)/3*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}
