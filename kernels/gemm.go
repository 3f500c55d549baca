package kernels

import (
	"fmt"
	"sync"
)

// Blocking parameters of the SGEMM driver (BLIS-style five loops around a
// gemmMR×gemmNR micro-kernel). gemmKC×gemmNR floats of B (16 KiB) stay in
// L1 while a gemmMC×gemmKC block of A (120 KiB) stays in L2; the packed
// gemmKC×gemmNC panel of B (4 MiB) lives in L3.
const (
	gemmMR = 6
	gemmNR = 16
	gemmKC = 256
	gemmMC = 120 // multiple of gemmMR
	gemmNC = 4096
	// gemmChunk is the width (columns of C, multiple of gemmNR) of one
	// parallel task inside a packed B panel.
	gemmChunk = 512
)

// sgemm is the CPU Sgemm after validation.
func (c *cpu) sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int,
	b []float32, ldb int, beta float32, cm []float32, ldc int) {
	c.sgemmT(c.threadsFor(m*n*k), transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, cm, ldc)
}

// sgemmT is sgemm on at most threads goroutines.
func (c *cpu) sgemmT(threads int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int,
	b []float32, ldb int, beta float32, cm []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	scaleC(m, n, beta, cm, ldc)
	if k == 0 || alpha == 0 {
		return
	}
	if m == 1 {
		gemv1(transB, n, k, alpha, a, lda, transA, b, ldb, cm, threads)
		return
	}
	c.gemmBlocked(transA, transB, m, n, k, alpha, a, lda, b, ldb, cm, ldc, threads)
}

// scaleC applies C *= beta (C = 0 when beta == 0).
func scaleC[T float32 | float64](m, n int, beta T, c []T, ldc int) {
	if beta == 1 {
		return
	}
	for i := 0; i < m; i++ {
		row := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(row)
			continue
		}
		for j := range row {
			row[j] *= beta
		}
	}
}

// gemmBuffers are per-call scratch buffers, recycled through a pool.
type gemmBuffers struct {
	b []float32   // packed B panel: ceil(NC/NR) strips of KC×NR
	a [][]float32 // one packed A block per worker: MC×KC
}

var gemmPool = sync.Pool{New: func() any { return &gemmBuffers{} }}

func (g *gemmBuffers) ensure(workers, n int) {
	nb := ((min(n, gemmNC) + gemmNR - 1) / gemmNR) * gemmNR * gemmKC
	if len(g.b) < nb {
		g.b = make([]float32, nb)
	}
	for len(g.a) < workers {
		g.a = append(g.a, make([]float32, gemmMC*gemmKC))
	}
}

// gemmBlocked is the cache-blocked, multi-threaded SGEMM: C += alpha*op(A)*op(B).
func (c *cpu) gemmBlocked(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int,
	b []float32, ldb int, cm []float32, ldc int, threads int) {
	buf := gemmPool.Get().(*gemmBuffers)
	defer gemmPool.Put(buf)
	buf.ensure(threads, n)
	kern := c.microKernel
	// Balance the row blocks: the fewest blocks of at most gemmMC rows, of
	// equal size rounded up to a multiple of gemmMR.
	nmb := (m + gemmMC - 1) / gemmMC
	mcb := ((m+nmb-1)/nmb + gemmMR - 1) / gemmMR * gemmMR

	for jc := 0; jc < n; jc += gemmNC {
		nc := min(gemmNC, n-jc)
		strips := (nc + gemmNR - 1) / gemmNR
		for pc := 0; pc < k; pc += gemmKC {
			kc := min(gemmKC, k-pc)
			// Pack B[pc:pc+kc, jc:jc+nc] strip by strip, in parallel.
			parallelFor(threads, strips, func(_, s int) {
				packB(buf.b[s*gemmKC*gemmNR:], transB, b, ldb, pc, kc, jc+s*gemmNR, min(gemmNR, nc-s*gemmNR))
			})
			// Tasks: (MC block of rows) × (chunk of columns of the panel).
			mBlocks := (m + mcb - 1) / mcb
			chunks := (nc + gemmChunk - 1) / gemmChunk
			lastIC := make([]int, threads)
			for i := range lastIC {
				lastIC[i] = -1
			}
			parallelFor(threads, mBlocks*chunks, func(w, t int) {
				ib, ch := t/chunks, t%chunks
				ic := ib * mcb
				mc := min(mcb, m-ic)
				ap := buf.a[w]
				if lastIC[w] != ic {
					packA(sTile, ap, transA, a, lda, ic, mc, pc, kc, alpha)
					lastIC[w] = ic
				}
				j0 := ch * gemmChunk
				j1 := min(nc, j0+gemmChunk)
				macroKernel[float32](sTile, kern, kc, ap, mc, buf.b[(j0/gemmNR)*gemmKC*gemmNR:], j1-j0, cm[ic*ldc+jc+j0:], ldc)
			})
		}
	}
}

// tile is a micro-kernel's register tile (mr×nr) and the k-stride (kc)
// of its packed strips.
type tile struct{ mr, nr, kc int }

// sTile and dTile are the SGEMM and DGEMM tiles.
var (
	sTile = tile{gemmMR, gemmNR, gemmKC}
	dTile = tile{dgemmMR, dgemmNR, dgemmKC}
)

// macroKernel computes C[0:mc, 0:nc] += Ap·Bp for a packed A block (strips
// of tl.mr rows, tl.kc apart) and packed B strips (tl.nr columns, tl.kc·tl.nr
// apart), over kc steps.
func macroKernel[T float32 | float64](tl tile, kern func(kc int, ap, bp, c []T, ldc int), kc int, ap []T, mc int, bp []T, nc int, cm []T, ldc int) {
	var tmp [gemmMR * gemmNR]T // the largest tile
	for jr := 0; jr < nc; jr += tl.nr {
		nr := min(tl.nr, nc-jr)
		bs := bp[(jr/tl.nr)*tl.kc*tl.nr:]
		for ir := 0; ir < mc; ir += tl.mr {
			mr := min(tl.mr, mc-ir)
			as := ap[(ir/tl.mr)*tl.kc*tl.mr:]
			off := ir*ldc + jr
			if mr == tl.mr && nr == tl.nr {
				kern(kc, as, bs, cm[off:], ldc)
				continue
			}
			t := tmp[:tl.mr*tl.nr]
			clear(t)
			kern(kc, as, bs, t, tl.nr)
			for i := 0; i < mr; i++ {
				row := cm[off+i*ldc : off+i*ldc+nr]
				for j := range row {
					row[j] += t[i*tl.nr+j]
				}
			}
		}
	}
}

// packB packs op(B)[pc:pc+kc, j0:j0+nr] into dst as kc rows of gemmNR
// floats (zero padded beyond nr).
func packB(dst []float32, transB bool, b []float32, ldb, pc, kc, j0, nr int) {
	dst = dst[:kc*gemmNR]
	if !transB {
		if nr == gemmNR && packB16(dst, b[pc*ldb+j0:], ldb, kc) {
			return
		}
		for p := 0; p < kc; p++ {
			src := b[(pc+p)*ldb+j0 : (pc+p)*ldb+j0+nr]
			d := dst[p*gemmNR : p*gemmNR+gemmNR]
			copy(d, src)
			clear(d[nr:])
		}
		return
	}
	// op(B)[p][j] = b[j*ldb+p]
	p0 := 0
	if nr == gemmNR {
		p0 = packBT16(dst, b[j0*ldb+pc:], ldb, kc)
	} else {
		clear(dst)
	}
	for j := 0; j < nr; j++ {
		src := b[(j0+j)*ldb+pc+p0 : (j0+j)*ldb+pc+kc]
		for p, v := range src {
			dst[(p0+p)*gemmNR+j] = v
		}
	}
}

// packA packs alpha*op(A)[ic:ic+mc, pc:pc+kc] into dst as strips of tl.mr
// rows: strip s holds kc groups of tl.mr values (zero padded), tl.kc groups
// apart.
func packA[T float32 | float64](tl tile, dst []T, transA bool, a []T, lda, ic, mc, pc, kc int, alpha T) {
	for s := 0; s*tl.mr < mc; s++ {
		mr := min(tl.mr, mc-s*tl.mr)
		d := dst[s*tl.kc*tl.mr : s*tl.kc*tl.mr+kc*tl.mr]
		if mr < tl.mr {
			clear(d)
		}
		i0 := ic + s*tl.mr
		if !transA {
			for i := 0; i < mr; i++ {
				src := a[(i0+i)*lda+pc : (i0+i)*lda+pc+kc]
				for p, v := range src {
					d[p*tl.mr+i] = alpha * v
				}
			}
			continue
		}
		// op(A)[i][p] = a[p*lda+i]
		for p := 0; p < kc; p++ {
			src := a[(pc+p)*lda+i0 : (pc+p)*lda+i0+mr]
			dd := d[p*tl.mr : p*tl.mr+mr]
			for i, v := range src {
				dd[i] = alpha * v
			}
		}
	}
}

// microKernelGo computes C[0:6,0:16] += Ap·Bp over kc steps, where Ap holds
// kc groups of 6 floats and Bp kc groups of 16.
func microKernelGo(kc int, ap, bp, c []float32, ldc int) { tileKernelGo(sTile, kc, ap, bp, c, ldc) }

// tileKernelGo is the pure-Go micro-kernel for tile tl (the reference for
// the assembly ones): C[0:mr, 0:nr] += Ap·Bp over kc packed steps.
func tileKernelGo[T float32 | float64](tl tile, kc int, ap, bp, c []T, ldc int) {
	var acc [gemmMR * gemmNR]T // the largest tile
	mr, nr := tl.mr, tl.nr
	ap = ap[:kc*mr]
	bp = bp[:kc*nr]
	for p := 0; p < kc; p++ {
		b := bp[p*nr : p*nr+nr]
		for i, ai := range ap[p*mr : p*mr+mr] {
			r := acc[i*nr : i*nr+nr]
			for j, bj := range b {
				r[j] += ai * bj
			}
		}
	}
	for i := 0; i < mr; i++ {
		row := c[i*ldc : i*ldc+nr]
		for j := range row {
			row[j] += acc[i*nr+j]
		}
	}
}

// gemv1 computes the single row c[0:n] += alpha * x · op(B) where x is the
// first row of op(A) (elements a[p*strideA] when transA, a[p] otherwise).
func gemv1(transB bool, n, k int, alpha float32, a []float32, lda int, transA bool,
	b []float32, ldb int, c []float32, threads int) {
	// Gather alpha*x contiguously (x is A's row itself when it already is).
	var x []float32
	switch {
	case !transA && alpha == 1:
		x = a[:k]
	case transA:
		x = make([]float32, k)
		for p := range x {
			x[p] = alpha * a[p*lda]
		}
	default:
		x = make([]float32, k)
		for p := range x {
			x[p] = alpha * a[p]
		}
	}
	if transB {
		// c[j] += dot(x, B[j, 0:k]); split the rows of B among workers.
		const chunk = 64
		if threads <= 1 || n <= chunk {
			for j := 0; j < n; j++ {
				c[j] += dotF32(x, b[j*ldb:j*ldb+k])
			}
			return
		}
		parallelFor(threads, (n+chunk-1)/chunk, func(_, t int) {
			for j := t * chunk; j < min(n, (t+1)*chunk); j++ {
				c[j] += dotF32(x, b[j*ldb:j*ldb+k])
			}
		})
		return
	}
	// c += Σ_p x[p]·B[p, :]: each worker streams a contiguous range of rows
	// of B (in column blocks that keep its partial sum in L1), then the
	// partial sums are added.
	const colBlock = 4096
	if threads > 1 && k >= 4*threads {
		parts := make([][]float32, threads)
		per := (k/threads + 3) &^ 3
		parallelFor(threads, threads, func(_, w int) {
			p0, p1 := min(k, w*per), min(k, (w+1)*per)
			if w == threads-1 {
				p1 = k
			}
			acc := make([]float32, n)
			for j0 := 0; j0 < n; j0 += colBlock {
				j1 := min(n, j0+colBlock)
				gemvRows(x, b, ldb, p0, p1, j0, j1, acc[j0:j1])
			}
			parts[w] = acc
		})
		for _, acc := range parts {
			axpyF32(1, acc, c[:n])
		}
		return
	}
	for j0 := 0; j0 < n; j0 += colBlock {
		j1 := min(n, j0+colBlock)
		gemvRows(x, b, ldb, 0, k, j0, j1, c[j0:j1])
	}
}

// gemvRows computes dst += Σ_{p0≤p<p1} x[p]·B[p, j0:j1], four rows at a time.
func gemvRows(x, b []float32, ldb, p0, p1, j0, j1 int, dst []float32) {
	p := p0
	for ; p+4 <= p1; p += 4 {
		axpy4F32((*[4]float32)(x[p:]), b[p*ldb+j0:], ldb, dst)
	}
	for ; p < p1; p++ {
		axpyF32(x[p], b[p*ldb+j0:p*ldb+j1], dst)
	}
}

// checkGemm validates an Sgemm call.
func checkGemm(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) error {
	if m < 0 || n < 0 || k < 0 {
		return fmt.Errorf("kernels: sgemm: negative size m=%d n=%d k=%d: %w", m, n, k, ErrShape)
	}
	ar, ac := m, k
	if transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	if m > 0 && k > 0 {
		if err := checkMat("kernels: sgemm: A", a, ar, ac, lda); err != nil {
			return err
		}
	}
	if n > 0 && k > 0 {
		if err := checkMat("kernels: sgemm: B", b, br, bc, ldb); err != nil {
			return err
		}
	}
	return checkMat("kernels: sgemm: C", c, m, n, ldc)
}
