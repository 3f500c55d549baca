package kernels

import (
	"bytes"
	"math"

	"github.com/marlin-llm/marlin/quant"
)

// The int8-activation GEMV: the decode path for 4-bit weights whose
// element values are integers up to a factor of two (E2M1 and INT4, with
// E8M0 scales of groups of 32 — MXFP4 —, E4M3 scales of groups of 16
// times a tensor scale — NVFP4 — or binary16 scales of groups of 32, 64
// or 128), as llama.cpp runs its 4-bit formats. Each row of X is
// quantized to int8 in blocks of 32 with one float32 scale per block
// (amax/127, round to nearest even); the weight codes go through a
// 16-entry byte table to an unsigned doubled value (2·e2m1 + 12, or 2·code
// for integers), and the dot products are exact integer sums over eight
// columns (VPMADDUBSW/VPMADDWD) from which the offset (12, or twice the
// zero point) is removed with the precomputed Σq of those columns. The only
// rounding beyond the float32 sums of the exact path is the activation's:
// for block b with scale d_b, |y − y_exact| ≤ Σ_b Σ_{i∈b} |w_i|·d_b/2
// (plus float32 summation error), which q8gemv_test.go checks.
// Options.F32Activations turns the path off.
//
// Activation layout (q8Act), for every pair of blocks (2p, 2p+1) — 64
// columns, 32 code bytes — in the order the kernel decodes the codes: 64
// bytes [q_{2p}[0,2,…,30], q_{2p+1}[0,2,…,30], q_{2p}[1,3,…,31],
// q_{2p+1}[1,3,…,31]]; eight float32 lane sums sq = [Σ q_{2p}[0:8],
// Σ q_{2p}[8:16], …, Σ q_{2p+1}[24:32]] (each of the kernel's eight int32
// partial sums covers those eight columns, both nibbles of four code
// bytes, and removes offset·sq exactly, in float32); and per block its
// scale d_b/2 (the table doubles the element values).

// q8Block is the activation block (and MXFP4 group) size.
const q8Block = 32

// q8Cols is the column granularity of the assembly kernel: one iteration
// reads the scales of eight blocks.
const q8Cols = 8 * q8Block

// q8Tiny is the block maximum below which the quantizers scale a block by
// 2^64 before computing 127/amax (which overflows below ~2^-121).
const q8Tiny = 0x1p-64

// q8Offset is added to the doubled E2M1 values to make them unsigned.
const q8Offset = 12

// q8Kind selects the int8 GEMV kernel of a weight.
type q8Kind uint8

const (
	q8E8M0 q8Kind = iota + 1 // MXFP4: E8M0 scale codes, groups of 32
	q8F16                    // binary16 scales, groups of 32·k (k = 1, 2, 4)
	q8E4M3                   // NVFP4: E4M3 scale codes of groups of 16 × a tensor scale
)

// q8Weight is the int8-path state of a packed weight.
type q8Weight struct {
	kind q8Kind
	lut  [16]byte // doubled element value of each code, made unsigned
	// k is the number of 32-column blocks of a group (q8F16).
	k int
	// zc holds the offset/2 (a zero point) of formats without per-group
	// zero points (q8F16), eight times for the kernel's 8-byte loads.
	zc [8]byte
	// asym reads the per-group zero points p.Zeros instead of zc.
	asym bool
	// tsc is the tensor scale times 2^120 (q8E4M3): the kernel reads an
	// E4M3 code c as the float32 with bits c<<20, which is its value
	// times 2^-120, so tsc·that is fl(value·tensor scale) exactly as
	// quant.Packed.Group computes it.
	tsc float32
}

// q8Perm spreads the values of groups of k blocks over the eight blocks of
// a kernel step (VPERMPS indices), for k = 1, 2, 4.
var q8Perm = [5][8]int32{
	1: {0, 1, 2, 3, 4, 5, 6, 7},
	2: {0, 0, 1, 1, 2, 2, 3, 3},
	4: {0, 0, 0, 0, 1, 1, 1, 1},
}

// newQ8Weight returns the int8-path state of p, or nil when p cannot take
// the path. It needs 4-bit codes without g_idx or tensor scale, a
// multiple of q8Cols columns, and either MXFP4 (E2M1 with E8M0 scales of
// groups of 32, every scale code in [1, 254]: normal float32 powers of two
// built from the code's bits in the kernel) or E2M1/INT4 elements with
// binary16 scales of groups of 32, 64 or 128.
func newQ8Weight(p *quant.Packed) *q8Weight {
	f := p.Format
	if f.Bits != 4 || (f.TensorScale && f.Scale != quant.ScaleE4M3) || p.GIdx != nil || p.Cols%q8Cols != 0 || p.Rows == 0 {
		return nil
	}
	gs := f.Group(p.Cols)
	w := &q8Weight{}
	switch {
	case f.Scale == quant.ScaleE8M0 && gs == q8Block:
		w.kind = q8E8M0
		if bytes.IndexByte(p.Scales, 0) >= 0 || bytes.IndexByte(p.Scales, quant.E8M0NaN) >= 0 {
			return nil
		}
	case f.Scale == quant.ScaleF16 && gs%q8Block == 0 && gs/q8Block <= 4 && gs/q8Block != 3:
		w.kind, w.k = q8F16, gs/q8Block
	case f.Scale == quant.ScaleE4M3 && gs == q8Block/2 && f.Elem == quant.ElemE2M1:
		// Positive, non-NaN scale codes (0x00..0x7E) and a tensor scale
		// that stays finite times 2^120.
		ts := float32(1)
		if f.TensorScale {
			ts = p.TensorScale
		}
		if !(ts >= 0 && ts < 0x1p7) {
			return nil
		}
		for _, c := range p.Scales {
			if c >= 0x7F {
				return nil
			}
		}
		w.kind, w.tsc = q8E4M3, ts*0x1p120
		f.TensorScale = false // checked above
	default:
		return nil
	}
	var half float64 // offset/2
	switch f.Elem {
	case quant.ElemE2M1:
		if f.Asym {
			return nil
		}
		half = q8Offset / 2
		for c := range w.lut {
			v := 2*float64(f.ElemValue(uint8(c), 0)) + q8Offset
			if v != math.Trunc(v) || v < 0 || v > 2*q8Offset {
				return nil
			}
			w.lut[c] = byte(v)
		}
	case quant.ElemInt:
		if w.kind != q8F16 {
			return nil
		}
		for c := range w.lut {
			w.lut[c] = byte(2 * c)
		}
		half = float64(int(1) << (f.Bits - 1))
		w.asym = f.Asym
	default:
		return nil
	}
	for i := range w.zc {
		w.zc[i] = byte(half)
	}
	return w
}

// q8Act is one row of X quantized for the int8 GEMV (layout above).
type q8Act struct {
	q  []int8    // cols bytes, pair-interleaved
	s  []float32 // cols/32 block scales d_b/2
	sq []float32 // cols/8 sums of q over 8 columns (8 per pair)
}

func newQ8Act(cols int) *q8Act {
	nb := cols / q8Block
	return &q8Act{q: make([]int8, cols), s: make([]float32, nb), sq: make([]float32, 4*nb)}
}

// quantize fills a from x (len(a.q) floats). It returns false, leaving a
// unusable, when x holds a NaN or an infinity: the exact path then keeps
// IEEE propagation.
func (a *q8Act) quantize(x []float32) bool {
	if haveSIMD {
		return q8Quant(x[:len(a.q)], a)
	}
	return a.quantizeGo(x)
}

// quantizeGo is quantize in Go, the reference of q8QuantAVX (bit-identical:
// both round x·id to nearest even in float32).
func (a *q8Act) quantizeGo(x []float32) bool {
	nb := len(a.s)
	for b := 0; b < nb; b++ {
		xb := (*[q8Block]float32)(x[b*q8Block:])
		var amax float32
		for _, v := range xb {
			av := abs32(v)
			if !(av <= math.MaxFloat32) {
				return false
			}
			if av > amax {
				amax = av
			}
		}
		// Block b of pair p: even columns at 64p + 16h + i, odd ones 32
		// bytes further (h = b&1).
		o := (*[64]int8)(a.q[64*(b>>1):])
		h := 16 * (b & 1)
		var sum [4]int32 // per 8 columns
		if amax == 0 {
			a.s[b] = 0
			for i := 0; i < 16; i++ {
				o[h+i], o[32+h+i] = 0, 0
			}
		} else {
			// Below q8Tiny, 127/amax could overflow: the block is scaled
			// by 2^64 first (exact), as the assembly does.
			scale := float32(1)
			if amax < q8Tiny {
				scale = 0x1p64
			}
			id := 127 / (amax * scale)
			for i := 0; i < 16; i++ {
				// |v·id| ≤ 127 (to rounding): adding 1.5·2^23 rounds it
				// to an integer (nearest, ties to even) in the low
				// mantissa bits.
				q0 := int32(math.Float32bits(xb[2*i]*scale*id+0x1.8p23)) - 0x4B400000
				q1 := int32(math.Float32bits(xb[2*i+1]*scale*id+0x1.8p23)) - 0x4B400000
				o[h+i], o[32+h+i] = int8(q0), int8(q1)
				sum[i/4] += q0 + q1
			}
			a.s[b] = amax / 127 / 2
		}
		c := (*[4]float32)(a.sq[4*b:])
		for l, v := range sum {
			c[l] = float32(v)
		}
	}
	return true
}

func abs32(v float32) float32 {
	return math.Float32frombits(math.Float32bits(v) &^ (1 << 31))
}

// q8PairDot returns the eight int32 lane sums of block pair p (64
// columns) of a code row with the activations: lane l covers code bytes
// 4l..4l+3 of the pair, both nibbles.
func q8PairDot(row []byte, p int, a *q8Act, lut *[16]byte) [8]int32 {
	cb := row[32*p : 32*p+32]
	xq := a.q[64*p : 64*p+64]
	var lane [8]int32
	for j := 0; j < 32; j++ {
		lo, hi := int32(lut[cb[j]&15]), int32(lut[cb[j]>>4])
		lane[j/4] += lo*int32(xq[j]) + hi*int32(xq[32+j])
	}
	return lane
}

// q8HSum adds the kernels' two accumulators in the assembly's order.
func q8HSum(acc *[2][8]float32) float32 {
	var s [8]float32
	for l := range s {
		s[l] = acc[0][l] + acc[1][l]
	}
	b0, b1, b2, b3 := s[0]+s[4], s[1]+s[5], s[2]+s[6], s[3]+s[7]
	return (b0 + b1) + (b2 + b3)
}

// q8MXRowsGo is the reference of q8MXRowsAVX: for each of rows rows of
// codes (rb bytes apart) with scale codes (cols/32 bytes a row), it adds
// the int8-activation dot product with a to y[r]. It performs the
// assembly's float32 operations in the same order, except that the kernel
// fuses multiply-adds (the results agree to float32 rounding of the
// products; q8gemv_test.go states the bound).
func q8MXRowsGo(codes []byte, rb int, scales []byte, rows int, a *q8Act, lut *[16]byte, y []float32) {
	nb := len(a.s)
	for r := 0; r < rows; r++ {
		row := codes[r*rb:]
		sc := scales[r*nb:]
		var acc [2][8]float32
		for qd := 0; qd < nb/8; qd++ {
			var ws [8]float32
			for l := range ws {
				ws[l] = math.Float32frombits(uint32(sc[8*qd+l])<<23) * a.s[8*qd+l]
			}
			for k := 0; k < 4; k++ {
				p := 4*qd + k
				lane := q8PairDot(row, p, a, lut)
				for l := range lane {
					f := float32(lane[l]) - q8Offset*a.sq[8*p+l]
					acc[k%2][l] += f * ws[2*k+l/4]
				}
			}
		}
		y[r] += q8HSum(&acc)
	}
}

// q8F16RowsGo is the reference of q8F16RowsAVX: q8MXRowsGo for binary16
// group scales (2 bytes per group of w.k blocks) and zero points (a byte
// per group, from zeros when w.asym, else w.zc).
func q8F16RowsGo(codes []byte, rb int, scales, zeros []byte, rows int, a *q8Act, w *q8Weight, y []float32) {
	nb := len(a.s)
	ng := nb / w.k
	perm := &q8Perm[w.k]
	for r := 0; r < rows; r++ {
		row := codes[r*rb:]
		var acc [2][8]float32
		for qd := 0; qd < nb/8; qd++ {
			g0 := r*ng + qd*8/w.k
			var ws, zs [8]float32
			for l := range ws {
				g := g0 + int(perm[l])
				ws[l] = quant.DecodeF16(uint16(scales[2*g])|uint16(scales[2*g+1])<<8) * a.s[8*qd+l]
				z := w.zc[0]
				if w.asym {
					z = zeros[g]
				}
				zs[l] = float32(z) + float32(z)
			}
			for k := 0; k < 4; k++ {
				p := 4*qd + k
				lane := q8PairDot(row, p, a, &w.lut)
				for l := range lane {
					f := float32(lane[l]) - zs[2*k+l/4]*a.sq[8*p+l]
					acc[k%2][l] += f * ws[2*k+l/4]
				}
			}
		}
		y[r] += q8HSum(&acc)
	}
}

// q8NVRowsGo is the reference of q8NVRowsAVX: q8MXRowsGo for E4M3 scale
// codes of groups of 16 (two per block, one byte each) times the tensor
// scale.
func q8NVRowsGo(codes []byte, rb int, scales []byte, rows int, a *q8Act, w *q8Weight, y []float32) {
	nb := len(a.s)
	for r := 0; r < rows; r++ {
		row := codes[r*rb:]
		sc := scales[2*r*nb:]
		var acc [2][8]float32
		for qd := 0; qd < nb/8; qd++ {
			var gs [16]float32 // per group: fl(fl(e4m3·ts)·d_b/2)
			for g := range gs {
				mul := math.Float32frombits(uint32(sc[16*qd+g])<<20) * w.tsc
				gs[g] = mul * a.s[8*qd+g/2]
			}
			for k := 0; k < 4; k++ {
				p := 4*qd + k
				lane := q8PairDot(row, p, a, &w.lut)
				for l := range lane {
					f := float32(lane[l]) - q8Offset*a.sq[8*p+l]
					acc[k%2][l] += f * gs[4*k+l/2]
				}
			}
		}
		y[r] += q8HSum(&acc)
	}
}
