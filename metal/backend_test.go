//go:build (linux && cgo) || darwin

package metal

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/marlin-llm/marlin/kernels"
	"github.com/marlin-llm/marlin/metal/launch"
	"github.com/marlin-llm/marlin/quant"
)

// recorder wraps a device and records the launches.
type recorder struct {
	device
	launches []launch.Launch
}

func (r *recorder) dispatch(l launch.Launch, args []arg) error {
	r.launches = append(r.launches, l)
	for i, a := range args {
		if len(a.data) == 0 {
			return fmt.Errorf("%s: empty argument %d reaches the device", l.Kernel, i)
		}
	}
	return r.device.dispatch(l, args)
}

// testBackend returns the backend under test with its device wrapped in a
// recorder: the emulator on Linux, the GPU on a Mac (testDevice).
func testBackend(t *testing.T) (*Backend, *recorder) {
	t.Helper()
	dev := &recorder{device: testDevice(t)}
	b, err := newBackend(dev, kernels.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	return b, dev
}

func cpuBackend(t *testing.T) kernels.Backend {
	t.Helper()
	b, err := kernels.Open("cpu", kernels.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sameBits(a, b float32) bool {
	if a != a || b != b {
		return a != a && b != b
	}
	return math.Float32bits(a) == math.Float32bits(b)
}

func randFloats(rng *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	return x
}

func quantized(t *testing.T, rng *rand.Rand, name string, rows, cols int) *quant.Packed {
	t.Helper()
	f, err := quant.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := quant.Quantize(randFloats(rng, rows*cols), rows, cols, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	return pk
}

// TestBackendAgainstCPU drives the backend's public methods (on the
// emulator under Linux, on the GPU on a Mac) and compares with the CPU
// backend: dequantization and FWHT bit for bit, products within rounding.
func TestBackendAgainstCPU(t *testing.T) {
	b, dev := testBackend(t)
	cpu := cpuBackend(t)
	rng := rand.New(rand.NewPCG(21, 22))
	for _, name := range []string{"mxfp4", "nvfp4", "int4", "int3_asym", "fp8_e4m3", "nf4"} {
		for _, sh := range [][3]int{{1, 37, 70}, {5, 8, 64}, {12, 33, 96}} {
			m, n, k := sh[0], sh[1], sh[2]
			pk := quantized(t, rng, name, n, k)
			x := randFloats(rng, m*k)
			want := make([]float32, m*n)
			got := make([]float32, m*n)
			if err := cpu.DequantGEMM(m, x, k, pk, 0, want, n); err != nil {
				t.Fatal(err)
			}
			dev.launches = nil
			if err := b.DequantGEMM(m, x, k, pk, 0, got, n); err != nil {
				t.Fatalf("%s %v: %v", name, sh, err)
			}
			kernel := "mq_gemm"
			if m <= 8 {
				kernel = "mq_gemv"
			}
			if len(dev.launches) != 1 || dev.launches[0].Kernel != kernel {
				t.Fatalf("%s m=%d: launches %v, want one %s", name, m, dev.launches, kernel)
			}
			deq := make([]float32, n*k)
			pk.Dequantize(deq)
			for i := 0; i < m; i++ {
				for j := 0; j < n; j++ {
					var mag float64
					for kk := 0; kk < k; kk++ {
						mag += math.Abs(float64(x[i*k+kk]) * float64(deq[j*k+kk]))
					}
					if d := math.Abs(float64(got[i*n+j] - want[i*n+j])); d > mag*0x1p-18 {
						t.Fatalf("%s %v: C[%d,%d] = %v, cpu %v", name, sh, i, j, got[i*n+j], want[i*n+j])
					}
				}
			}
			dq := make([]float32, n*k)
			if err := b.Dequantize(pk, dq); err != nil {
				t.Fatal(err)
			}
			for i := range dq {
				if !sameBits(dq[i], deq[i]) {
					t.Fatalf("%s: dequantize [%d] = %v, quant %v", name, i, dq[i], deq[i])
				}
			}
		}
	}
	// FWHT: bit-identical to the CPU backend, SIMD and threadgroup kernels.
	for _, lg := range []int{0, 4, 5, 7, 12} {
		x := randFloats(rng, 2*(1<<lg)*2)
		want := append([]float32(nil), x...)
		if err := cpu.FWHT(want, 2, 2<<lg, lg, true); err != nil {
			t.Fatal(err)
		}
		if err := b.FWHT(x, 2, 2<<lg, lg, true); err != nil {
			t.Fatal(err)
		}
		for i := range x {
			if !sameBits(x[i], want[i]) {
				t.Fatalf("fwht 2^%d: [%d] = %v, cpu %v", lg, i, x[i], want[i])
			}
		}
	}
}

func TestBackendErrorsAndFallbacks(t *testing.T) {
	b, dev := testBackend(t)
	rng := rand.New(rand.NewPCG(23, 24))
	pk := quantized(t, rng, "int4", 8, 64)
	c := make([]float32, 8)
	if err := b.DequantGEMM(1, make([]float32, 63), 64, pk, 0, c, 8); !errors.Is(err, kernels.ErrShape) {
		t.Errorf("short X: %v", err)
	}
	if err := b.DequantGEMM(1, make([]float32, 64), 64, pk, 0, c[:7], 8); !errors.Is(err, kernels.ErrShape) {
		t.Errorf("short C: %v", err)
	}
	if err := b.DequantGEMM(1, make([]float32, 64), 64, nil, 0, c, 8); !errors.Is(err, kernels.ErrShape) {
		t.Errorf("nil weight: %v", err)
	}
	bad := *pk
	bad.Codes = bad.Codes[:3]
	if err := b.DequantGEMM(1, make([]float32, 64), 64, &bad, 0, c, 8); err == nil {
		t.Error("corrupt packed weight: no error")
	}
	if err := b.FWHT(make([]float32, 24), 1, 24, 4, false); !errors.Is(err, kernels.ErrShape) {
		t.Errorf("fwht 24 in blocks of 16: %v", err)
	}
	// Unsupported on the GPU, handled by the CPU: f16 weights, FWHT blocks
	// over 2^12.
	f16, _ := quant.Lookup("f16")
	hp, err := quant.Quantize(randFloats(rng, 4*16), 4, 16, f16, nil)
	if err != nil {
		t.Fatal(err)
	}
	dev.launches = nil
	if err := b.DequantGEMM(1, make([]float32, 16), 16, hp, 0, make([]float32, 4), 4); err != nil {
		t.Errorf("f16 weight: %v", err)
	}
	if err := b.FWHT(make([]float32, 1<<13), 1, 1<<13, 13, true); err != nil {
		t.Errorf("fwht 2^13: %v", err)
	}
	if len(dev.launches) != 0 {
		t.Errorf("fallbacks reached the device: %v", dev.launches)
	}
	if err := b.Route(make([]float32, 8), 1, 8, RouterConfig{K: 9}, make([]int32, 9), make([]float32, 9)); !errors.Is(err, kernels.ErrShape) {
		t.Errorf("route k > experts: %v", err)
	}
}

func TestRouteAndMoE(t *testing.T) {
	b, _ := testBackend(t)
	cpu := cpuBackend(t)
	rng := rand.New(rand.NewPCG(25, 26))
	const T, E, K, N, D = 11, 16, 2, 24, 64
	logits := randFloats(rng, T*E)
	idx := make([]int32, T*K)
	w := make([]float32, T*K)
	if err := b.Route(logits, T, E, RouterConfig{K: K, Normalize: true}, idx, w); err != nil {
		t.Fatal(err)
	}
	probs := append([]float32(nil), logits...)
	if err := cpu.Softmax(probs, T, E); err != nil {
		t.Fatal(err)
	}
	vals := make([]float32, T*K)
	wantIdx := make([]int32, T*K)
	if err := cpu.TopK(probs, T, E, K, vals, wantIdx); err != nil {
		t.Fatal(err)
	}
	for tk := 0; tk < T; tk++ {
		s := vals[tk*K] + vals[tk*K+1]
		for r := 0; r < K; r++ {
			i := tk*K + r
			if idx[i] != wantIdx[i] || math.Abs(float64(w[i]-vals[i]/s)) > 1e-6 {
				t.Fatalf("token %d slot %d: expert %d weight %v, cpu %d %v", tk, r, idx[i], w[i], wantIdx[i], vals[i]/s)
			}
		}
	}
	// Group the assignments by expert and run the grouped GEMM.
	experts := make([]*quant.Packed, E)
	for e := range experts {
		experts[e] = quantized(t, rng, "mxfp4", N, D)
	}
	x := randFloats(rng, T*D)
	offsets := make([]int32, E+1)
	var rowmap []int32
	for e := 0; e < E; e++ {
		for i, ex := range idx {
			if int(ex) == e {
				rowmap = append(rowmap, int32(i/K))
			}
		}
		offsets[e+1] = int32(len(rowmap))
	}
	c := make([]float32, len(rowmap)*N)
	if err := b.MoEGEMM(x, D, experts, offsets, rowmap, c, N); err != nil {
		t.Fatal(err)
	}
	for e := 0; e < E; e++ {
		for r := offsets[e]; r < offsets[e+1]; r++ {
			want := make([]float32, N)
			tok := int(rowmap[r])
			if err := cpu.DequantGEMM(1, x[tok*D:(tok+1)*D], D, experts[e], 0, want, N); err != nil {
				t.Fatal(err)
			}
			for j := 0; j < N; j++ {
				if d := math.Abs(float64(c[int(r)*N+j] - want[j])); d > 1e-4 {
					t.Fatalf("moe: expert %d row %d col %d: %v, cpu %v", e, r, j, c[int(r)*N+j], want[j])
				}
			}
		}
	}
	// Experts of different shapes cannot be grouped.
	experts[3] = quantized(t, rng, "mxfp4", N, 2*D)
	if err := b.MoEGEMM(x, D, experts, offsets, rowmap, c, N); !errors.Is(err, ErrExperts) {
		t.Fatalf("mixed shapes: %v", err)
	}
}

// TestConcurrentCalls: a Backend is safe for concurrent use (kernels'
// contract); several goroutines multiply at once and each gets its answer.
func TestConcurrentCalls(t *testing.T) {
	b, err := newBackend(testDevice(t), kernels.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	cpu := cpuBackend(t)
	rng := rand.New(rand.NewPCG(27, 28))
	const workers, n, k = 4, 20, 96
	type job struct {
		pk   *quant.Packed
		x    []float32
		want []float32
	}
	jobs := make([]job, workers)
	for i := range jobs {
		pk := quantized(t, rng, []string{"mxfp4", "int4", "nf4", "fp8_e5m2"}[i], n, k)
		x := randFloats(rng, 2*k)
		want := make([]float32, 2*n)
		if err := cpu.DequantGEMM(2, x, k, pk, 0, want, n); err != nil {
			t.Fatal(err)
		}
		jobs[i] = job{pk, x, want}
	}
	errs := make(chan error, workers)
	for _, j := range jobs {
		go func() {
			for rep := 0; rep < 3; rep++ {
				got := make([]float32, 2*n)
				if err := b.DequantGEMM(2, j.x, k, j.pk, 0, got, n); err != nil {
					errs <- err
					return
				}
				for i := range got {
					if d := math.Abs(float64(got[i] - j.want[i])); d > 1e-4*(1+math.Abs(float64(j.want[i]))) {
						errs <- fmt.Errorf("%s: C[%d] = %v, cpu %v", j.pk.Format, i, got[i], j.want[i])
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for range jobs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
