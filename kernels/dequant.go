package kernels

import (
	"fmt"
	"math"
	"sync"

	"github.com/marlin-llm/marlin/quant"
)

// Dequantizing GEMM/GEMV on quant.Packed weights; the paths and the
// bit-exactness argument are described in the package documentation.
//
// tileDecoder turns packed codes into float32 tiles: for every quantized
// format it builds, per group, the table (base[i] − off)·mul (integers) or
// base[i]·mul (element tables), where base is the element table (E2M1, NF,
// FP8, or 0..2^b−1 for integers), off the group's zero point (2^(b−1) for
// symmetric integers) and mul the group's Mul — exactly the float32
// operations of quant.Packed.DequantizeRow. bf16/f16 rows are decoded by
// quant itself.

// Tile sizes: small batches use row tiles of dqTileFloats elements and dot
// products; batches of at least dqBigM rows dequantize panels of dqBigRows
// rows and run the blocked GEMM on them.
const (
	dqTileFloats = 4096
	dqBigRows    = 64
	dqBigFloats  = 64 * 1024
	dqBigM       = 8
	dqTaskRows   = 16
)

// DequantGEMM implements Backend.
func (c *cpu) DequantGEMM(m int, x []float32, ldx int, w *quant.Packed, beta float32, cm []float32, ldc int) error {
	if w == nil {
		return fmt.Errorf("kernels: dequant-gemm: nil weight: %w", ErrShape)
	}
	if err := w.Validate(); err != nil {
		return fmt.Errorf("kernels: dequant-gemm: %w", err)
	}
	return c.dequantGEMM(m, x, ldx, c.prepare(w, m < dqBigM), beta, cm, ldc)
}

// dequantGEMM is DequantGEMM on a validated, prepared weight.
func (c *cpu) dequantGEMM(m int, x []float32, ldx int, pw *cpuPrepared, beta float32, cm []float32, ldc int) error {
	w, dec := pw.w, pw.dec
	rows, cols := w.Rows, w.Cols
	if m < 0 {
		return fmt.Errorf("kernels: dequant-gemm: m = %d: %w", m, ErrShape)
	}
	if err := checkMat("kernels: dequant-gemm: X", x, m, cols, ldx); err != nil {
		return err
	}
	if err := checkMat("kernels: dequant-gemm: C", cm, m, rows, ldc); err != nil {
		return err
	}
	if m == 0 {
		return nil
	}
	scaleC(m, rows, beta, cm, ldc)
	if pw.q8 != nil && m < dqBigM && c.q8GEMV(m, x, ldx, pw, cm, ldc) {
		return nil
	}
	if dec.lut4 && c.simd && dec.gs%16 == 0 && m < dqBigM {
		c.dequantGEMVFused(m, x, ldx, dec, cm, ldc)
		return nil
	}
	if m >= dqBigM && dec.table && (w.GIdx != nil || gemmKC%dec.gs == 0 || cols <= gemmKC) {
		// X is packed once per chunk of rows; W is decoded KC columns at a
		// time straight into packed GEMM panels.
		const chunk = 4 * gemmMC
		for i0 := 0; i0 < m; i0 += chunk {
			c.dequantGEMMPacked(min(chunk, m-i0), x[i0*ldx:], ldx, dec, cm[i0*ldc:], ldc)
		}
		return nil
	}

	tr, tc := 1, dec.tileCols(dqTileFloats)
	if m >= dqBigM {
		tc = dec.tileCols(dqBigFloats / dqBigRows)
		tr = max(1, min(dqBigRows, dqBigFloats/tc))
	}
	taskRows := dqTaskRows
	if m >= dqBigM {
		taskRows = tr
	}
	tasks := (rows + taskRows - 1) / taskRows
	threads := c.threadsFor(m * rows * cols / 4)
	bufs := make([][]float32, min(threads, tasks))
	parallelFor(threads, tasks, func(wk, t int) {
		if bufs[wk] == nil {
			bufs[wk] = make([]float32, tr*tc+dec.scratch())
		}
		tile := bufs[wk][:tr*tc]
		scratch := bufs[wk][tr*tc:]
		rEnd := min(rows, (t+1)*taskRows)
		for r0 := t * taskRows; r0 < rEnd; r0 += tr {
			nr := min(tr, rEnd-r0)
			for c0 := 0; c0 < cols; c0 += tc {
				nc := min(tc, cols-c0)
				dec.decode(tile, nc, r0, nr, c0, nc, scratch)
				if m >= dqBigM {
					c.gemmSingle(false, true, m, nr, nc, 1, x[c0:], ldx, tile, nc, cm[r0:], ldc)
					continue
				}
				for i := 0; i < m; i++ {
					xi := x[i*ldx+c0 : i*ldx+c0+nc]
					ci := cm[i*ldc+r0 : i*ldc+r0+nr]
					for r := range ci {
						ci[r] += dotF32(xi, tile[r*nc:r*nc+nc])
					}
				}
			}
		}
	})
	return nil
}

// dequantGEMVFused computes C += X·Wᵀ for small m with the fused 4-bit
// decode-and-dot kernel: no weight tile is written to memory at all.
func (c *cpu) dequantGEMVFused(m int, x []float32, ldx int, d *tileDecoder, cm []float32, ldc int) {
	p := d.p
	rows, cols, gs := p.Rows, p.Cols, d.gs
	nfull := cols / gs
	vc := nfull * gs
	ngAll := p.Groups()
	// Two fused kernels: the bfloat16-plane one (E2M1 and integer tables,
	// groups of a multiple of 32) and the VPERMPS table one (any 4-bit
	// table, groups of a multiple of 16).
	bf := d.planes != nil && gs%32 == 0
	// Integer codes with scales whose products with the codes are exact
	// (no subnormal rounding) take the scale-hoisted kernel, which sees x
	// in natural order plus per-group sums of x.
	f := p.Format
	i4 := d.isInt && gs%32 == 0 && !f.TensorScale &&
		(f.Scale == quant.ScaleF16 || f.Scale == quant.ScaleE8M0 || f.Scale == quant.ScaleE4M3)
	// E2M1 (no zero point) with the same exact scales: the bfloat16 decode
	// with the scale applied once per group.
	bfh := bf && !d.isInt && !f.TensorScale &&
		(f.Scale == quant.ScaleF16 || f.Scale == quant.ScaleE8M0 || f.Scale == quant.ScaleE4M3)
	bfs1 := bfh && d.mul1 != nil
	g32 := bfs1 && gs == 32 // MXFP4: two groups an iteration, x by deinterleave16w
	// The int4 kernel with binary16 scales reads scales and zero points
	// itself (VCVTPH2PS); symmetric formats have the one zero point 2^(b−1).
	i4h := i4 && f.Scale == quant.ScaleF16 && haveF16C
	zeros, zstride := []byte{byte(1) << (f.Bits - 1)}, 0
	if f.Asym {
		zeros, zstride = p.Zeros, 1
	}
	xd := make([]float32, m*vc)
	var xsv []float32
	if i4 {
		xsv = make([]float32, m*nfull*8)
	}
	for i := 0; i < m; i++ {
		if i4 {
			copy(xd[i*vc:(i+1)*vc], x[i*ldx:i*ldx+vc])
			int4XSums(xsv[i*nfull*8:(i+1)*nfull*8], xd[i*vc:(i+1)*vc], gs)
		} else if g32 {
			deinterleave16w(xd[i*vc:(i+1)*vc], x[i*ldx:i*ldx+vc])
		} else if bf {
			deinterleave8(xd[i*vc:(i+1)*vc], x[i*ldx:i*ldx+vc])
		} else {
			deinterleave16(xd[i*vc:(i+1)*vc], x[i*ldx:i*ldx+vc])
		}
	}
	rb := p.RowBytes()
	tasks := (rows + dqTaskRows - 1) / dqTaskRows
	parallelFor(c.threadsFor(m*rows*cols/4), tasks, func(_, t int) {
		scratch := make([]float32, 2*ngAll)
		muls, offs := scratch[:ngAll], scratch[ngAll:]
		for r := t * dqTaskRows; r < min(rows, (t+1)*dqTaskRows); r++ {
			row := p.Codes[r*rb : (r+1)*rb]
			var lut [16]float32
			switch {
			case bfs1 || i4h: // the kernel reads the scale codes itself
				if vc < cols {
					d.rowScales(r, nfull, muls[:1], offs[:1])
					d.fillTable(lut[:], muls[0], offs[0])
				}
			default:
				d.rowScales(r, 0, muls, offs)
				if vc < cols { // short last group: Go
					d.fillTable(lut[:], muls[nfull], offs[nfull])
				}
			}
			for i := 0; i < m; i++ {
				var s float32
				switch {
				case i4h:
					z := zeros
					if zstride != 0 {
						z = zeros[r*ngAll : r*ngAll+nfull]
					}
					s, _ = int4DotS16SIMD(xd[i*vc:(i+1)*vc], row, nfull, gs, xsv[i*nfull*8:(i+1)*nfull*8], p.Scales[2*r*ngAll:2*(r*ngAll+nfull)], z, zstride)
				case i4:
					s = int4DotSIMD(xd[i*vc:(i+1)*vc], row, nfull, gs, xsv[i*nfull*8:(i+1)*nfull*8], muls, offs)
				case g32:
					s = bf16Dot32S1SIMD(xd[i*vc:(i+1)*vc], row, nfull, d.planes, p.Scales[r*ngAll:r*ngAll+nfull], d.mul1)
				case bfs1:
					s = bf16DotHoistS1SIMD(xd[i*vc:(i+1)*vc], row, nfull, gs, d.planes, p.Scales[r*ngAll:r*ngAll+nfull], d.mul1)
				case bfh:
					s = bf16DotHoistSIMD(xd[i*vc:(i+1)*vc], row, nfull, gs, d.planes, muls)
				case bf:
					s = lut4DotBF16SIMD(xd[i*vc:(i+1)*vc], row, nfull, gs, d.planes, muls, offs)
				default:
					s = lut4DotSIMD(xd[i*vc:(i+1)*vc], row, nfull, gs, &d.base4, muls, offs)
				}
				xi := x[i*ldx : i*ldx+cols]
				for col := vc; col < cols; col++ {
					s += xi[col] * lut[(row[col>>1]>>(4*(col&1)))&15]
				}
				cm[i*ldc+r] += s
			}
		}
	})
}

// dequantGEMMPacked computes C += X·Wᵀ (m ≥ dqBigM) with the GEMM
// micro-kernel: X is packed once, and each task decodes a panel of W rows
// gemmKC columns at a time into an L1/L2 tile, packs it as Bᵀ strips and
// multiplies it with every packed block of X. The decoded values are those
// of tileDecoder.decode (bit-identical to quant). Requires table decoding
// with KC-aligned groups (or g_idx).
func (c *cpu) dequantGEMMPacked(m int, x []float32, ldx int, d *tileDecoder, cm []float32, ldc int) {
	p := d.p
	rows, cols := p.Rows, p.Cols
	nmb := (m + gemmMC - 1) / gemmMC
	mcb := ((m+nmb-1)/nmb + gemmMR - 1) / gemmMR * gemmMR
	nkb := (cols + gemmKC - 1) / gemmKC
	blk := mcb * gemmKC
	threads := c.threadsFor(m * rows * cols)
	ap := make([]float32, nmb*nkb*blk)
	parallelFor(threads, nmb*nkb, func(_, t int) {
		ib, kb := t/nkb, t%nkb
		ic, pc := ib*mcb, kb*gemmKC
		packA(sTile, ap[t*blk:], false, x, ldx, ic, min(mcb, m-ic), pc, min(gemmKC, cols-pc), 1)
	})
	const panel = 4 * gemmNR // W rows per task
	type work struct{ tile, bp, scratch []float32 }
	bufs := make([]*work, threads)
	parallelFor(threads, (rows+panel-1)/panel, func(wk, t int) {
		if bufs[wk] == nil {
			bufs[wk] = &work{make([]float32, panel*gemmKC), make([]float32, panel*gemmKC), make([]float32, d.scratch())}
		}
		b := bufs[wk]
		r0 := t * panel
		nr := min(panel, rows-r0)
		for kb := 0; kb < nkb; kb++ {
			pc := kb * gemmKC
			kc := min(gemmKC, cols-pc)
			d.decode(b.tile, kc, r0, nr, pc, kc, b.scratch)
			for s := 0; s*gemmNR < nr; s++ {
				packB(b.bp[s*gemmKC*gemmNR:], true, b.tile, kc, 0, kc, s*gemmNR, min(gemmNR, nr-s*gemmNR))
			}
			for ib := 0; ib < nmb; ib++ {
				ic := ib * mcb
				macroKernel[float32](sTile, c.microKernel, kc, ap[(ib*nkb+kb)*blk:], min(mcb, m-ic), b.bp, nr, cm[ic*ldc+r0:], ldc)
			}
		}
	})
}

// deinterleave8 writes x (a multiple of 8 long) to dst with each run of 8
// elements reordered as its 4 even then its 4 odd elements.
func deinterleave8(dst, x []float32) {
	for j := 0; j+8 <= len(x); j += 8 {
		s := (*[8]float32)(x[j:])
		o := (*[8]float32)(dst[j:])
		o[0], o[1], o[2], o[3] = s[0], s[2], s[4], s[6]
		o[4], o[5], o[6], o[7] = s[1], s[3], s[5], s[7]
	}
}

// deinterleave16w writes x (a multiple of 16 long) to dst with each run of
// 16 elements e = 4k+2a+b (k < 4, a, b < 2) moved to position 8a+4b+k: the
// order in which bf16Dot32S1AVX widens its decoded words.
func deinterleave16w(dst, x []float32) {
	for j := 0; j+16 <= len(x); j += 16 {
		s := (*[16]float32)(x[j:])
		o := (*[16]float32)(dst[j:])
		for a := 0; a < 2; a++ {
			for b := 0; b < 2; b++ {
				for k := 0; k < 4; k++ {
					o[8*a+4*b+k] = s[4*k+2*a+b]
				}
			}
		}
	}
}

// deinterleave16 writes x (a multiple of 16 long) to dst with each run of
// 16 elements reordered as its 8 even then its 8 odd elements.
func deinterleave16(dst, x []float32) {
	for j := 0; j+16 <= len(x); j += 16 {
		s := (*[16]float32)(x[j:])
		o := (*[16]float32)(dst[j:])
		for i := 0; i < 8; i++ {
			o[i] = s[2*i]
			o[8+i] = s[2*i+1]
		}
	}
}

// gemmSingle is C += alpha*op(A)·op(B) on the calling goroutine only.
func (c *cpu) gemmSingle(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int,
	b []float32, ldb int, cm []float32, ldc int) {
	if m == 1 {
		gemv1(transB, n, k, alpha, a, lda, transA, b, ldb, cm, 1)
		return
	}
	c.gemmBlocked(transA, transB, m, n, k, alpha, a, lda, b, ldb, cm, ldc, 1)
}

// tileDecoder dequantizes tiles of a packed weight. It is read-only after
// construction and shared by the workers of one call.
type tileDecoder struct {
	p     *quant.Packed
	simd  bool
	table bool        // per-group table decode (every quantized format)
	lut4  bool        // 4-bit codes in contiguous groups (vector kernels)
	isInt bool        // integer elements: table entry (i − zero)·mul
	bits  int         // code width
	gs    int         // group size
	base  []float32   // element value of each code (2^bits entries)
	base4 [16]float32 // base for the 4-bit vector kernels
	// mul1 maps a 1-byte scale code to its Mul (E8M0, E4M3·tensor scale).
	mul1 *[256]float32
	// planes holds bytes 3 and 2 of the 4-bit base values (each table twice,
	// one per 128-bit lane) when they are exact in bfloat16 (E2M1,
	// integers), for lut4DotBF16SIMD; nil otherwise.
	planes *[64]byte
}

func newTileDecoder(p *quant.Packed, simd bool) *tileDecoder {
	d := &tileDecoder{p: p, simd: simd}
	f := p.Format
	if !f.Quantized() || f.Bits < 1 || f.Bits > 8 {
		return d
	}
	switch f.Scale {
	case quant.ScaleF16, quant.ScaleBF16, quant.ScaleF32, quant.ScaleE8M0, quant.ScaleE4M3:
	default:
		return d
	}
	d.bits = f.Bits
	d.base = make([]float32, 1<<f.Bits)
	for i := range d.base {
		switch f.Elem {
		case quant.ElemInt:
			d.base[i] = float32(i)
		case quant.ElemE2M1, quant.ElemNF, quant.ElemE4M3, quant.ElemE5M2:
			d.base[i] = f.ElemValue(uint8(i), 0)
		default:
			return d
		}
	}
	d.table = true
	d.isInt = f.Elem == quant.ElemInt
	d.gs = f.Group(p.Cols)
	d.lut4 = f.Bits == 4 && p.GIdx == nil
	copy(d.base4[:], d.base)
	if d.lut4 {
		var pl [64]byte
		ok := true
		for i, v := range d.base4 {
			b := math.Float32bits(v)
			ok = ok && b&0xffff == 0
			pl[i], pl[16+i] = byte(b>>24), byte(b>>24)
			pl[32+i], pl[48+i] = byte(b>>16), byte(b>>16)
		}
		if ok {
			d.planes = &pl
		}
	}
	if f.Scale.Bytes() == 1 {
		var t [256]float32
		for code := range t {
			t[code] = mulOf(f, uint32(code), p.TensorScale)
		}
		d.mul1 = &t
	}
	return d
}

// mulOf is the group multiplier of a stored scale code, computed exactly as
// quant.Packed.Group does (decode, times the tensor scale in float32; NaN
// for the MX NaN scale).
func mulOf(f quant.Format, code uint32, tensorScale float32) float32 {
	mul := f.DecodeScale(code)
	if f.TensorScale {
		mul *= tensorScale
	}
	if f.Scale == quant.ScaleE8M0 && code == quant.E8M0NaN {
		mul = float32(math.NaN())
	}
	return mul
}

// tileCols returns the tile width for about want elements per row: a
// multiple of the group size for table decoding with contiguous groups,
// whole rows otherwise.
func (d *tileDecoder) tileCols(want int) int {
	cols := d.p.Cols
	if !d.table || cols <= want {
		return cols
	}
	if d.p.GIdx != nil {
		return want
	}
	g := d.gs
	return max(g, want/g*g)
}

// scratch is the number of floats decode needs as scratch: multipliers and
// offsets of every group of a row, plus one table per group.
func (d *tileDecoder) scratch() int {
	if !d.table {
		return 0
	}
	ng := d.p.Groups()
	return 2*ng + ng*len(d.base)
}

// f16Table maps every binary16 code to quant.DecodeF16's float32 (built
// once on first use, read-only afterwards).
var f16Table = sync.OnceValue(func() *[1 << 16]float32 {
	var t [1 << 16]float32
	for i := range t {
		t[i] = quant.DecodeF16(uint16(i))
	}
	return &t
})

// rowScales writes the multipliers and offsets of groups g0..g0+len(muls)
// of row r (lut4 only).
func (d *tileDecoder) rowScales(r, g0 int, muls, offs []float32) {
	p := d.p
	f := p.Format
	si := r*p.Groups() + g0
	sc := p.Scales
	switch f.Scale {
	case quant.ScaleE8M0, quant.ScaleE4M3:
		for g := range muls {
			muls[g] = d.mul1[sc[si+g]]
		}
	case quant.ScaleF16:
		t := f16Table()
		for g := range muls {
			muls[g] = t[uint16(sc[2*(si+g)])|uint16(sc[2*(si+g)+1])<<8]
		}
	case quant.ScaleBF16:
		for g := range muls {
			muls[g] = quant.DecodeBF16(uint16(sc[2*(si+g)]) | uint16(sc[2*(si+g)+1])<<8)
		}
	default:
		for g := range muls {
			j := 4 * (si + g)
			muls[g] = mulOf(f, uint32(sc[j])|uint32(sc[j+1])<<8|uint32(sc[j+2])<<16|uint32(sc[j+3])<<24, p.TensorScale)
		}
	}
	switch {
	case f.Elem != quant.ElemInt:
		clear(offs)
	case f.Asym:
		for g := range offs {
			offs[g] = float32(p.Zeros[si+g])
		}
	default:
		z := float32(int(1) << (f.Bits - 1))
		for g := range offs {
			offs[g] = z
		}
	}
}

// decode writes W[r0:r0+nr, c0:c0+nc] to dst (leading dimension ldd). For
// contiguous groups c0 is a multiple of the group size; without table
// decoding the tile is whole rows.
func (d *tileDecoder) decode(dst []float32, ldd, r0, nr, c0, nc int, scratch []float32) {
	p := d.p
	if !d.table {
		for i := 0; i < nr; i++ {
			p.DequantizeRow(r0+i, dst[i*ldd:i*ldd+p.Cols])
		}
		return
	}
	gs := d.gs
	L := len(d.base)
	rb := p.RowBytes()
	if p.GIdx != nil {
		// Act-order: a table for every group of the row, looked up per
		// column through g_idx.
		ng := p.Groups()
		muls, offs, luts := scratch[:ng], scratch[ng:2*ng], scratch[2*ng:2*ng+ng*L]
		for i := 0; i < nr; i++ {
			r := r0 + i
			d.rowScales(r, 0, muls, offs)
			for g := 0; g < ng; g++ {
				d.fillTable(luts[g*L:(g+1)*L], muls[g], offs[g])
			}
			row := p.Codes[r*rb : (r+1)*rb]
			out := dst[i*ldd : i*ldd+nc]
			gidx := p.GIdx[c0 : c0+nc]
			for e := range out {
				out[e] = luts[int(gidx[e])*L+int(codeAt(row, c0+e, d.bits))]
			}
		}
		return
	}
	g0 := c0 / gs
	ng := (nc + gs - 1) / gs
	muls := scratch[:ng]
	offs := scratch[ng : 2*ng]
	lut := scratch[2*ng : 2*ng+L]
	for i := 0; i < nr; i++ {
		r := r0 + i
		d.rowScales(r, g0, muls, offs)
		row := p.Codes[r*rb : (r+1)*rb]
		out := dst[i*ldd : i*ldd+nc]
		// Whole 4-bit groups of a multiple of 16 elements go to the vector
		// decoder (c0 is then even); the rest (other widths, odd group
		// sizes, a short last group) to Go.
		vec := 0
		if d.lut4 && d.simd && gs%16 == 0 {
			vec = nc / gs
			lut4DecodeSIMD(out, row[c0/2:], vec, gs, &d.base4, muls, offs)
		}
		for g := vec; g < ng; g++ {
			d.fillTable(lut, muls[g], offs[g])
			e0 := g * gs
			e1 := min(nc, e0+gs)
			decodeCodes(out[e0:e1], row, c0+e0, d.bits, lut)
		}
	}
}

// fillTable writes the dequantized value of every code for one group, with
// the float32 operations of quant.Packed.DequantizeRow: element·mul for
// table formats, (code − zero)·mul for integers.
func (d *tileDecoder) fillTable(lut []float32, mul, off float32) {
	if d.isInt {
		for k, v := range d.base {
			lut[k] = (v - off) * mul
		}
		return
	}
	for k, v := range d.base {
		lut[k] = v * mul
	}
}

// codeAt returns the bits-wide (at most 8) code of column c of a packed row (LSB-first
// bit stream, as quant.Packed stores it).
func codeAt(row []byte, c, bits int) uint32 {
	switch bits {
	case 8:
		return uint32(row[c])
	case 4:
		return uint32(row[c>>1]>>(4*(c&1))) & 15
	case 2:
		return uint32(row[c>>2]>>(2*(c&3))) & 3
	}
	off := c * bits
	i := off >> 3
	w := uint32(row[i])
	if i+1 < len(row) {
		w |= uint32(row[i+1]) << 8
	}
	return (w >> (off & 7)) & (1<<bits - 1)
}

// decodeCodes writes lut[code] for the len(out) codes starting at column c0.
func decodeCodes(out []float32, row []byte, c0, bits int, lut []float32) {
	switch bits {
	case 8:
		for e, b := range row[c0 : c0+len(out)] {
			out[e] = lut[b]
		}
	case 4:
		e := 0
		if c0&1 == 1 && len(out) > 0 {
			out[0] = lut[row[c0>>1]>>4]
			e = 1
		}
		for ; e+1 < len(out); e += 2 {
			b := row[(c0+e)>>1]
			out[e] = lut[b&15]
			out[e+1] = lut[b>>4]
		}
		if e < len(out) {
			out[e] = lut[row[(c0+e)>>1]&15]
		}
	case 2:
		e := 0
		for ; e < len(out) && (c0+e)&3 != 0; e++ {
			out[e] = lut[codeAt(row, c0+e, bits)]
		}
		for ; e+4 <= len(out); e += 4 {
			b := row[(c0+e)>>2]
			o := (*[4]float32)(out[e:])
			o[0], o[1], o[2], o[3] = lut[b&3], lut[(b>>2)&3], lut[(b>>4)&3], lut[b>>6]
		}
		for ; e < len(out); e++ {
			out[e] = lut[codeAt(row, c0+e, bits)]
		}
	case 3:
		// Eight codes in every three bytes.
		e := 0
		for ; e < len(out) && (c0+e)&7 != 0; e++ {
			out[e] = lut[codeAt(row, c0+e, bits)]
		}
		lut8 := lut[:8]
		for ; e+8 <= len(out); e += 8 {
			i := (c0 + e) * 3 >> 3
			w := uint32(row[i]) | uint32(row[i+1])<<8 | uint32(row[i+2])<<16
			o := (*[8]float32)(out[e:])
			o[0], o[1], o[2], o[3] = lut8[w&7], lut8[(w>>3)&7], lut8[(w>>6)&7], lut8[(w>>9)&7]
			o[4], o[5], o[6], o[7] = lut8[(w>>12)&7], lut8[(w>>15)&7], lut8[(w>>18)&7], lut8[(w>>21)&7]
		}
		for ; e < len(out); e++ {
			out[e] = lut[codeAt(row, c0+e, bits)]
		}
	default:
		for e := range out {
			out[e] = lut[codeAt(row, c0+e, bits)]
		}
	}
}
