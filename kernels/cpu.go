package kernels

import (
	"fmt"
	"runtime"
)

func init() {
	Register("cpu", func(o Options) (Backend, error) { return NewCPU(o), nil })
}

// microKernelFunc computes C[0:gemmMR, 0:gemmNR] += Ap·Bp over kc packed
// steps (see packA/packB).
type microKernelFunc func(kc int, ap, bp, c []float32, ldc int)

// cpu is the CPU backend. It is immutable after construction.
type cpu struct {
	threads     int
	simd        bool // use the assembly kernels
	f32Act      bool // Options.F32Activations
	microKernel microKernelFunc
}

// NewCPU returns the CPU backend. It uses the AVX2/FMA assembly kernels when
// the CPU has them (and the purego build tag is not set), the pure-Go
// kernels otherwise.
func NewCPU(o Options) Backend {
	return newCPU(o, haveSIMD)
}

// newCPU builds the CPU backend, with or without the assembly kernels (tests
// compare the two).
func newCPU(o Options, simd bool) *cpu {
	t := o.Threads
	if t <= 0 {
		t = runtime.GOMAXPROCS(0)
	}
	c := &cpu{threads: t, simd: simd && haveSIMD, f32Act: o.F32Activations, microKernel: microKernelGo}
	if c.simd {
		c.microKernel = microKernelSIMD
	}
	return c
}

// Name implements Backend.
func (c *cpu) Name() string { return "cpu" }

// serial returns the backend with each call on the calling goroutine.
func (c *cpu) serial() Backend {
	d := *c
	d.threads = 1
	return &d
}

// threadsFor returns how many threads a job of about work multiply-adds
// deserves (small jobs run on the calling goroutine).
func (c *cpu) threadsFor(work int) int {
	const perThread = 1 << 18
	t := work / perThread
	if t < 1 {
		return 1
	}
	return min(t, c.threads)
}

// Sgemm implements Backend.
func (c *cpu) Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int,
	b []float32, ldb int, beta float32, cm []float32, ldc int) error {
	if err := checkGemm(transA, transB, m, n, k, a, lda, b, ldb, cm, ldc); err != nil {
		return err
	}
	c.sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, cm, ldc)
	return nil
}

// SgemmStrided implements Backend.
func (c *cpu) SgemmStrided(transA, transB bool, m, n, k int, alpha float32,
	a []float32, lda, strideA int, b []float32, ldb, strideB int,
	beta float32, cm []float32, ldc, strideC int, batch int) error {
	if batch < 0 || strideA < 0 || strideB < 0 || strideC < 0 {
		return fmt.Errorf("kernels: sgemm strided: negative batch or stride: %w", ErrShape)
	}
	for i := 0; i < batch; i++ {
		oa, ok1 := mulOK(i, strideA)
		ob, ok2 := mulOK(i, strideB)
		oc, ok3 := mulOK(i, strideC)
		if !ok1 || !ok2 || !ok3 || oa > len(a) || ob > len(b) || oc > len(cm) {
			return fmt.Errorf("kernels: sgemm strided: batch %d out of range: %w", i, ErrShape)
		}
		if err := checkGemm(transA, transB, m, n, k, a[oa:], lda, b[ob:], ldb, cm[oc:], ldc); err != nil {
			return fmt.Errorf("kernels: sgemm strided: batch %d: %w", i, err)
		}
	}
	// Small matrices (attention heads): one goroutine per matrix; large
	// ones: one matrix at a time on all threads.
	if work := m * n * k; batch > 1 && work < 1<<22 {
		parallelFor(min(c.threads, c.threadsFor(work*batch)), batch, func(_, i int) {
			c.sgemmT(1, transA, transB, m, n, k, alpha, a[i*strideA:], lda, b[i*strideB:], ldb, beta, cm[i*strideC:], ldc)
		})
		return nil
	}
	for i := 0; i < batch; i++ {
		c.sgemm(transA, transB, m, n, k, alpha, a[i*strideA:], lda, b[i*strideB:], ldb, beta, cm[i*strideC:], ldc)
	}
	return nil
}
