package ggml

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"strings"
)

// Block sizes of the types only the grids write.
const (
	SizeQ3_K   = QKK/8 + QKK/4 + 12 + 2 // hmask, qs, scales, half d
	SizeQ2_K   = QKK/16 + QKK/4 + 2 + 2 // scales, qs, half d, half dmin
	QKIQ4NL    = 32
	SizeIQ4_NL = 2 + QKIQ4NL/2          // half d, 16 bytes of nibbles
	SizeIQ4_XS = 2 + 2 + QKK/64 + QKK/2 // half d, scales_h, scales_l, nibbles
)

// Grid is a GGML block type seen as a quantization grid: every sub-block
// of Group consecutive weights of a row has a multiplier D and an offset M
// (decoded from the block's stored scales), and element code c stands for
// float32(D·Levels[c]) − M, exactly the float32 value llama.cpp's
// dequantize_row_* computes. A quantizer fits the scales with Encode
// (importance-weighted, as llama-quantize with an imatrix), reads them with
// Params, may choose other codes (GPTQ) with Round and stores them with
// SetCodes; the block headers stay as fitted.
type Grid struct {
	// Name is llama.cpp's type name ("Q4_K").
	Name string
	// BlockSize weights are stored in BlockBytes bytes; Group weights share
	// one (D, M).
	BlockSize, BlockBytes, Group int
	// Levels are the element values by code.
	Levels []float32
	// uniform: Levels[c] = Levels[0] + c.
	uniform bool
	// encodeW encodes a row of whole blocks with importance weights qw
	// (nil: the type's reference quantizer).
	encodeW func(dst []byte, x, qw []float32)
	// params decodes one block's (D, M) per group.
	params func(b []byte, d, m []float32)
	// setCodes stores one block's codes and getCodesB reads them.
	setCodes, getCodesB func(b []byte, codes []uint8)
	// halves are the byte offsets of the block's fp16 scales that every
	// decoded value is linear in: d, then (for types with mins) dmin.
	halves []int
}

// Halves is the number of fp16 block scales every decoded value of a
// block is linear in (d; and dmin for types with mins): value_i =
// Σ_t half_t·part_t,i, the parts fixed by the codes and sub-block scales
// (up to llama.cpp's float32 rounding).
func (g *Grid) Halves() int { return len(g.halves) }

// Parts writes one block's parts (Halves slices of BlockSize values): the
// values the block decodes to with one fp16 scale at 1 and the others at
// 0.
func (g *Grid) Parts(blk []byte, parts [][]float32) {
	tmp := append([]byte(nil), blk...)
	per := g.BlockSize / g.Group
	d, m := make([]float32, per), make([]float32, per)
	codes := make([]uint8, g.BlockSize)
	g.getCodesB(blk, codes)
	for t := range g.halves {
		for u, off := range g.halves {
			v := uint16(0)
			if u == t {
				v = fp16(1)
			}
			binary.LittleEndian.PutUint16(tmp[off:], v)
		}
		g.params(tmp, d, m)
		for i, c := range codes {
			parts[t][i] = g.Value(c, d[i/g.Group], m[i/g.Group])
		}
	}
}

// SetHalves stores a block's fp16 scales (Halves values, rounded to fp16).
func (g *Grid) SetHalves(blk []byte, v []float32) {
	for t, off := range g.halves {
		binary.LittleEndian.PutUint16(blk[off:], fp16(v[t]))
	}
}

// readHalves returns a block's fp16 scales as float32.
func (g *Grid) readHalves(blk []byte) []float32 {
	v := make([]float32, len(g.halves))
	for t, off := range g.halves {
		v[t] = fp32(binary.LittleEndian.Uint16(blk[off:]))
	}
	return v
}

// DecodeBlock writes the values one block decodes to.
func (g *Grid) DecodeBlock(blk []byte, out []float32) {
	per := g.BlockSize / g.Group
	d, m := make([]float32, per), make([]float32, per)
	codes := make([]uint8, g.BlockSize)
	g.getCodesB(blk, codes)
	g.params(blk, d, m)
	for i, c := range codes {
		out[i] = g.Value(c, d[i/g.Group], m[i/g.Group])
	}
}

// LookupGrid returns the grid of a GGML type name (case-insensitive).
func LookupGrid(name string) (*Grid, error) {
	g := grids()
	if e, ok := g[strings.ToUpper(name)]; ok {
		return e, nil
	}
	var names []string
	for k := range g {
		names = append(names, k)
	}
	sort.Strings(names)
	return nil, fmt.Errorf("ggml: no grid for type %q (have %s)", name, strings.Join(names, ", "))
}

// RowBytes is the encoded size of a row of n weights.
func (g *Grid) RowBytes(n int) int { return n / g.BlockSize * g.BlockBytes }

// Encode quantizes one row x (a whole number of blocks) into dst
// (RowBytes(len(x)) bytes) with importance weights qw (len(x) values, one
// per input column; nil: llama-quantize's quantizer without an imatrix).
// Weights must be finite and non-negative.
func (g *Grid) Encode(dst []byte, x, qw []float32) error {
	if len(x)%g.BlockSize != 0 {
		return fmt.Errorf("ggml %s: row of %d weights is not a multiple of the block size %d", g.Name, len(x), g.BlockSize)
	}
	if len(dst) != g.RowBytes(len(x)) {
		return fmt.Errorf("ggml %s: %d bytes for %d weights, want %d", g.Name, len(dst), len(x), g.RowBytes(len(x)))
	}
	if qw != nil && len(qw) != len(x) {
		return fmt.Errorf("ggml %s: %d importance weights for %d weights", g.Name, len(qw), len(x))
	}
	for i, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("ggml %s: weight %d is %v", g.Name, i, v)
		}
	}
	for i, v := range qw {
		if !(v >= 0) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("ggml %s: importance weight %d is %v", g.Name, i, v)
		}
	}
	g.encodeW(dst, x, qw)
	return nil
}

// Params decodes the (D, M) of every group of a row's blocks into d and m
// (len(row)/BlockBytes·BlockSize/Group entries each).
func (g *Grid) Params(row []byte, d, m []float32) {
	per := g.BlockSize / g.Group
	for b := 0; b < len(row)/g.BlockBytes; b++ {
		g.params(row[b*g.BlockBytes:(b+1)*g.BlockBytes], d[b*per:(b+1)*per], m[b*per:(b+1)*per])
	}
}

// SetCodes stores codes (one per weight, indices into Levels) into a row's
// blocks, leaving the scales as they are.
func (g *Grid) SetCodes(row []byte, codes []uint8) {
	for b := 0; b < len(row)/g.BlockBytes; b++ {
		g.setCodes(row[b*g.BlockBytes:(b+1)*g.BlockBytes], codes[b*g.BlockSize:(b+1)*g.BlockSize])
	}
}

// Value is the dequantized value of code c under (d, m), as llama.cpp
// computes it.
func (g *Grid) Value(c uint8, d, m float32) float32 {
	return float32(d*g.Levels[c]) - m
}

// Round returns the code whose value under (d, m) is nearest to v (the
// smaller code on ties) and that value.
func (g *Grid) Round(v, d, m float32) (uint8, float32) {
	n := len(g.Levels)
	best, bestErr := 0, float32(math.Inf(1))
	try := func(c int) {
		if c < 0 || c >= n {
			return
		}
		e := absf(g.Value(uint8(c), d, m) - v)
		if e < bestErr || e == bestErr && c < best {
			best, bestErr = c, e
		}
	}
	if g.uniform && d != 0 {
		t := float64((v+m)/d) - float64(g.Levels[0])
		c := int(math.Round(math.Max(-1, math.Min(float64(n), t))))
		try(c - 1)
		try(c)
		try(c + 1)
	} else {
		for c := 0; c < n; c++ {
			try(c)
		}
	}
	return uint8(best), g.Value(uint8(best), d, m)
}

// Codes reads the codes of a row's blocks (the inverse of SetCodes).
func (g *Grid) Codes(row []byte, codes []uint8) {
	for b := 0; b < len(row)/g.BlockBytes; b++ {
		g.getCodesB(row[b*g.BlockBytes:(b+1)*g.BlockBytes], codes[b*g.BlockSize:(b+1)*g.BlockSize])
	}
}

// The getCodes* functions read one block's codes (the inverse of the
// setCodes* functions).

func getCodesQ8_0(b []byte, c []uint8) {
	for j := range c {
		c[j] = b[2+j] ^ 0x80
	}
}

func getCodesQ4_K(b []byte, c []uint8) {
	q := b[4+kScaleSize:]
	for j := 0; j < QKK; j += 64 {
		for l := 0; l < 32; l++ {
			c[j+l], c[j+l+32] = q[l]&0xf, q[l]>>4
		}
		q = q[32:]
	}
}

func getCodesQ5_K(b []byte, c []uint8) {
	qh, ql := b[4+kScaleSize:4+kScaleSize+QKK/8], b[4+kScaleSize+QKK/8:]
	u1, u2 := uint8(1), uint8(2)
	for j := 0; j < QKK; j += 64 {
		for l := 0; l < 32; l++ {
			c[j+l] = ql[l] & 0xf
			if qh[l]&u1 != 0 {
				c[j+l] += 16
			}
			c[j+l+32] = ql[l] >> 4
			if qh[l]&u2 != 0 {
				c[j+l+32] += 16
			}
		}
		ql = ql[32:]
		u1 <<= 2
		u2 <<= 2
	}
}

func getCodesQ6_K(b []byte, c []uint8) {
	ql, qh := b[0:QKK/2], b[QKK/2:QKK/2+QKK/4]
	for n := 0; n < QKK; n += 128 {
		for l := 0; l < 32; l++ {
			c[n+l] = ql[l]&0xf | (qh[l]&3)<<4
			c[n+l+32] = ql[l+32]&0xf | ((qh[l]>>2)&3)<<4
			c[n+l+64] = ql[l]>>4 | ((qh[l]>>4)&3)<<4
			c[n+l+96] = ql[l+32]>>4 | ((qh[l]>>6)&3)<<4
		}
		ql, qh = ql[64:], qh[32:]
	}
}

// getCodes2 reads the 2-bit low parts of Q3_K's and Q2_K's codes from qs.
func getCodes2(qs []byte, c []uint8) {
	for j := 0; j < QKK; j += 128 {
		for l := 0; l < 32; l++ {
			v := qs[j/4+l]
			c[j+l], c[j+l+32], c[j+l+64], c[j+l+96] = v&3, (v>>2)&3, (v>>4)&3, v>>6
		}
	}
}

func getCodesQ3_K(b []byte, c []uint8) {
	getCodes2(b[32:96], c)
	for j := 0; j < QKK; j++ {
		if b[j%32]&(1<<(j/32)) != 0 {
			c[j] += 4
		}
	}
}

func getCodesQ2_K(b []byte, c []uint8) { getCodes2(b[16:80], c) }

// paramsD16 is (D, M) = (the block's leading fp16 d, 0).
func paramsD16(b []byte, d, m []float32) {
	v := fp32(binary.LittleEndian.Uint16(b))
	for i := range d {
		d[i], m[i] = v, 0
	}
}

// paramsQ5_1 is (d, −m): Q5_1's value d·q + m is float32(d·q) − (−m).
func paramsQ5_1(b []byte, d, m []float32) {
	d[0], m[0] = fp32(binary.LittleEndian.Uint16(b)), -fp32(binary.LittleEndian.Uint16(b[2:]))
}

func paramsK4(b []byte, d, m []float32) {
	dAll, mAll := fp32(binary.LittleEndian.Uint16(b)), fp32(binary.LittleEndian.Uint16(b[2:]))
	for j := 0; j < 8; j++ {
		s, mm := scaleMinK4(j, b[4:4+kScaleSize])
		d[j], m[j] = dAll*float32(s), mAll*float32(mm)
	}
}

func paramsQ6_K(b []byte, d, m []float32) {
	dAll := fp32(binary.LittleEndian.Uint16(b[QKK/2+QKK/4+QKK/16:]))
	sc := b[QKK/2+QKK/4:]
	for j := 0; j < 16; j++ {
		d[j], m[j] = dAll*float32(int8(sc[j])), 0
	}
}

func paramsQ3_K(b []byte, d, m []float32) {
	dAll := fp32(binary.LittleEndian.Uint16(b[108:]))
	for j := 0; j < 16; j++ {
		d[j], m[j] = dAll*float32(q3Scale(b[96:108], j)), 0
	}
}

func paramsQ2_K(b []byte, d, m []float32) {
	dAll, mAll := fp32(binary.LittleEndian.Uint16(b[80:])), fp32(binary.LittleEndian.Uint16(b[82:]))
	for j := 0; j < 16; j++ {
		d[j], m[j] = dAll*float32(b[j]&0xf), mAll*float32(b[j]>>4)
	}
}

func paramsIQ4_XS(b []byte, d, m []float32) {
	dAll := fp32(binary.LittleEndian.Uint16(b))
	sh := binary.LittleEndian.Uint16(b[2:])
	for ib := 0; ib < 8; ib++ {
		ls := int32((b[4+ib/2]>>(4*(ib%2)))&0xf) | int32((sh>>(2*ib))&3)<<4
		d[ib], m[ib] = dAll*float32(ls-32), 0
	}
}

func setCodesQ8_0(b []byte, c []uint8) {
	for j, v := range c[:32] {
		b[2+j] = v ^ 0x80 // code − 128 as int8
	}
}

// setCodesIQ4 packs 32·k 4-bit codes: byte 16i+j = c[32i+j] | c[32i+16+j]<<4.
func setCodesIQ4(q []byte, c []uint8) {
	for i := 0; i < len(c)/32; i++ {
		for j := 0; j < 16; j++ {
			q[16*i+j] = c[32*i+j] | c[32*i+16+j]<<4
		}
	}
}

func getCodesIQ4(q []byte, c []uint8) {
	for i := 0; i < len(c)/32; i++ {
		for j := 0; j < 16; j++ {
			c[32*i+j], c[32*i+16+j] = q[16*i+j]&0xf, q[16*i+j]>>4
		}
	}
}

func setCodesQ4_K(b []byte, c []uint8) {
	q := b[4+kScaleSize:]
	for j := 0; j < QKK; j += 64 {
		for l := 0; l < 32; l++ {
			q[l] = c[j+l] | c[j+l+32]<<4
		}
		q = q[32:]
	}
}

func setCodesQ5_K(b []byte, c []uint8) {
	qh := b[4+kScaleSize : 4+kScaleSize+QKK/8]
	ql := b[4+kScaleSize+QKK/8:]
	clear(qh)
	m1, m2 := uint8(1), uint8(2)
	for n := 0; n < QKK; n += 64 {
		for j := 0; j < 32; j++ {
			l1, l2 := c[n+j], c[n+j+32]
			if l1 > 15 {
				l1 -= 16
				qh[j] |= m1
			}
			if l2 > 15 {
				l2 -= 16
				qh[j] |= m2
			}
			ql[j] = l1 | l2<<4
		}
		m1 <<= 2
		m2 <<= 2
		ql = ql[32:]
	}
}

func setCodesQ6_K(b []byte, c []uint8) {
	ql, qh := b[0:QKK/2], b[QKK/2:QKK/2+QKK/4]
	for j := 0; j < QKK; j += 128 {
		for l := 0; l < 32; l++ {
			ql[l] = c[j+l]&0xf | (c[j+l+64]&0xf)<<4
			ql[l+32] = c[j+l+32]&0xf | (c[j+l+96]&0xf)<<4
			qh[l] = c[j+l]>>4 | (c[j+l+32]>>4)<<2 | (c[j+l+64]>>4)<<4 | (c[j+l+96]>>4)<<6
		}
		ql, qh = ql[64:], qh[32:]
	}
}

// setCodes2bit packs 2-bit codes as Q2_K/Q3_K's qs.
func setCodes2bit(qs []byte, c []uint8) {
	for j := 0; j < QKK; j += 128 {
		for l := 0; l < 32; l++ {
			qs[j/4+l] = c[j+l]&3 | (c[j+l+32]&3)<<2 | (c[j+l+64]&3)<<4 | (c[j+l+96]&3)<<6
		}
	}
}

func setCodesQ3_K(b []byte, c []uint8) {
	hm := b[0:32]
	clear(hm)
	for j := 0; j < QKK; j++ {
		if c[j] > 3 {
			hm[j%32] |= 1 << (j / 32)
		}
	}
	setCodes2bit(b[32:96], c)
}

func setCodesQ2_K(b []byte, c []uint8) { setCodes2bit(b[16:80], c) }
