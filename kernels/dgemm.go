package kernels

import (
	"fmt"
	"runtime"
)

// Blocking of the float64 GEMM: a dgemmMR×dgemmNR register tile, a
// dgemmKC×dgemmNR strip of B (16 KiB) in L1, a dgemmMC×dgemmKC block of A
// (192 KiB) in L2.
const (
	dgemmMR    = 6
	dgemmNR    = 8
	dgemmKC    = 256
	dgemmMC    = 96 // multiple of dgemmMR
	dgemmNC    = 2048
	dgemmChunk = 256 // columns of C per parallel task, multiple of dgemmNR
)

// dgemmKernel computes C[0:6, 0:8] += Ap·Bp over kc packed steps.
type dgemmKernel func(kc int, ap, bp, c []float64, ldc int)

// Dgemm computes C = alpha·op(A)·op(B) + beta·C in float64 on the CPU, on
// up to GOMAXPROCS goroutines; op(X) is X or Xᵀ. Matrices are row-major
// with leading dimensions lda, ldb, ldc; op(A) is m×k, op(B) k×n. It is
// the dense linear algebra of GPTQ (Cholesky, triangular inverse, the
// lazy-batch update, Hessian products), with the AVX2/FMA micro-kernel
// when the CPU has one and a pure-Go one otherwise.
func Dgemm(transA, transB bool, m, n, k int, alpha float64, a []float64, lda int,
	b []float64, ldb int, beta float64, c []float64, ldc int) error {
	kern := dgemmKernelGo
	if haveSIMD {
		kern = dgemmKernelSIMD
	}
	return dgemm(kern, runtime.GOMAXPROCS(0), transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// DgemmScratchBytes bounds what one Dgemm call allocates for its packed
// panels when it runs on threads goroutines: memory estimates of callers
// that run many products at once count it per concurrent call.
func DgemmScratchBytes(threads int) int64 {
	return 8 * (dgemmNC*dgemmKC + int64(max(threads, 1))*dgemmMC*dgemmKC)
}

func dgemm(kern dgemmKernel, threads int, transA, transB bool, m, n, k int, alpha float64, a []float64, lda int,
	b []float64, ldb int, beta float64, c []float64, ldc int) error {
	ra, ca := m, k
	if transA {
		ra, ca = k, m
	}
	rb, cb := k, n
	if transB {
		rb, cb = n, k
	}
	if err := checkMatrix("A", ra, ca, len(a), lda); err != nil {
		return err
	}
	if err := checkMatrix("B", rb, cb, len(b), ldb); err != nil {
		return err
	}
	if err := checkMatrix("C", m, n, len(c), ldc); err != nil {
		return err
	}
	if m == 0 || n == 0 {
		return nil
	}
	scaleC(m, n, beta, c, ldc)
	if k == 0 || alpha == 0 {
		return nil
	}
	threads = max(1, min(threads, m*n*k/(1<<17)))
	bp := make([]float64, ((min(n, dgemmNC)+dgemmNR-1)/dgemmNR)*dgemmNR*dgemmKC)
	// One A pack per worker, allocated on first use (a sync.Pool per call
	// kept every call's packs reachable until the next two collections:
	// thousands of GPTQ updates left gigabytes of them).
	aps := make([][]float64, threads)
	nmb := (m + dgemmMC - 1) / dgemmMC
	mcb := ((m+nmb-1)/nmb + dgemmMR - 1) / dgemmMR * dgemmMR
	for jc := 0; jc < n; jc += dgemmNC {
		nc := min(dgemmNC, n-jc)
		strips := (nc + dgemmNR - 1) / dgemmNR
		for pc := 0; pc < k; pc += dgemmKC {
			kc := min(dgemmKC, k-pc)
			parallelFor(threads, strips, func(_, s int) {
				dpackB(bp[s*dgemmKC*dgemmNR:], transB, b, ldb, pc, kc, jc+s*dgemmNR, min(dgemmNR, nc-s*dgemmNR))
			})
			chunks := (nc + dgemmChunk - 1) / dgemmChunk
			mBlocks := (m + mcb - 1) / mcb
			parallelFor(threads, mBlocks*chunks, func(w, t int) {
				ic := (t / chunks) * mcb
				mc := min(mcb, m-ic)
				if aps[w] == nil {
					aps[w] = make([]float64, dgemmMC*dgemmKC)
				}
				ap := aps[w]
				packA(dTile, ap, transA, a, lda, ic, mc, pc, kc, alpha)
				j0 := (t % chunks) * dgemmChunk
				j1 := min(nc, j0+dgemmChunk)
				macroKernel[float64](dTile, kern, kc, ap, mc, bp[(j0/dgemmNR)*dgemmKC*dgemmNR:], j1-j0, c[ic*ldc+jc+j0:], ldc)
			})
		}
	}
	return nil
}

// checkMatrix validates a rows×cols row-major operand of n elements.
func checkMatrix(name string, rows, cols, n, ld int) error {
	if rows < 0 || cols < 0 {
		return fmt.Errorf("kernels: dgemm: %s is %dx%d", name, rows, cols)
	}
	if rows == 0 || cols == 0 {
		return nil
	}
	if ld < cols {
		return fmt.Errorf("kernels: dgemm: %s leading dimension %d < %d columns", name, ld, cols)
	}
	if need := (rows-1)*ld + cols; n < need {
		return fmt.Errorf("kernels: dgemm: %s has %d elements, %dx%d (ld %d) needs %d", name, n, rows, cols, ld, need)
	}
	return nil
}

// dpackB packs op(B)[pc:pc+kc, j0:j0+nr] as kc rows of dgemmNR (zero padded).
func dpackB(dst []float64, transB bool, b []float64, ldb, pc, kc, j0, nr int) {
	dst = dst[:kc*dgemmNR]
	if !transB {
		for p := 0; p < kc; p++ {
			d := dst[p*dgemmNR : (p+1)*dgemmNR]
			copy(d, b[(pc+p)*ldb+j0:(pc+p)*ldb+j0+nr])
			clear(d[nr:])
		}
		return
	}
	if nr < dgemmNR {
		clear(dst)
	}
	for j := 0; j < nr; j++ {
		for p, v := range b[(j0+j)*ldb+pc : (j0+j)*ldb+pc+kc] {
			dst[p*dgemmNR+j] = v
		}
	}
}

// dgemmKernelGo is the pure-Go DGEMM micro-kernel.
func dgemmKernelGo(kc int, ap, bp, c []float64, ldc int) { tileKernelGo(dTile, kc, ap, bp, c, ldc) }
