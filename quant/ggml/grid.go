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
	// setCodes stores one block's codes.
	setCodes func(b []byte, codes []uint8)
}

func intLevels(lo, n int) []float32 {
	l := make([]float32, n)
	for i := range l {
		l[i] = float32(lo + i)
	}
	return l
}

// grids builds the table (a function, so that nothing global is mutable).
func grids() map[string]*Grid {
	iq4 := make([]float32, 16)
	for i, v := range IQ4NLValues {
		iq4[i] = float32(v)
	}
	perRow := func(ref func(dst []byte, x []float32), w func(dst []byte, x, qw []float32)) func(dst []byte, x, qw []float32) {
		return func(dst []byte, x, qw []float32) {
			if qw == nil && ref != nil {
				ref(dst, x)
				return
			}
			w(dst, x, qw)
		}
	}
	return map[string]*Grid{
		"Q8_0": {Name: "Q8_0", BlockSize: QK8_0, BlockBytes: SizeQ8_0, Group: 32, Levels: intLevels(-128, 256), uniform: true,
			encodeW: func(dst []byte, x, _ []float32) { EncodeQ8_0(dst, x) }, params: paramsD16, setCodes: setCodesQ8_0},
		"Q4_0": {Name: "Q4_0", BlockSize: QK4_0, BlockBytes: SizeQ4_0, Group: 32, Levels: intLevels(-8, 16), uniform: true,
			encodeW: perRow(EncodeQ4_0, encodeQ4_0W), params: paramsD16,
			setCodes: func(b []byte, c []uint8) { setCodesIQ4(b[2:], c) }},
		"Q5_0": {Name: "Q5_0", BlockSize: QK5_0, BlockBytes: SizeQ5_0, Group: 32, Levels: intLevels(-16, 32), uniform: true,
			encodeW: perRow(EncodeQ5_0, encodeQ5_0W), params: paramsD16,
			setCodes: func(b []byte, c []uint8) { setCodesQ5(b[2:], c) }},
		"Q5_1": {Name: "Q5_1", BlockSize: QK5_1, BlockBytes: SizeQ5_1, Group: 32, Levels: intLevels(0, 32), uniform: true,
			encodeW: perRow(EncodeQ5_1, encodeQ5_1W), params: paramsQ5_1,
			setCodes: func(b []byte, c []uint8) { setCodesQ5(b[4:], c) }},
		"Q4_K": {Name: "Q4_K", BlockSize: QKK, BlockBytes: SizeQ4_K, Group: 32, Levels: intLevels(0, 16), uniform: true,
			encodeW: perRow(EncodeQ4_K, func(dst []byte, x, qw []float32) {
				encodeKW(dst, x, qw, 15, SizeQ4_K, func(b []byte, L *[QKK]uint8) { setCodesQ4_K(b, L[:]) })
			}), params: paramsK4, setCodes: setCodesQ4_K},
		"Q5_K": {Name: "Q5_K", BlockSize: QKK, BlockBytes: SizeQ5_K, Group: 32, Levels: intLevels(0, 32), uniform: true,
			encodeW: perRow(EncodeQ5_K, func(dst []byte, x, qw []float32) {
				encodeKW(dst, x, qw, 31, SizeQ5_K, func(b []byte, L *[QKK]uint8) { setCodesQ5_K(b, L[:]) })
			}), params: paramsK4, setCodes: setCodesQ5_K},
		"Q6_K": {Name: "Q6_K", BlockSize: QKK, BlockBytes: SizeQ6_K, Group: 16, Levels: intLevels(-32, 64), uniform: true,
			encodeW: perRow(EncodeQ6_K, encodeQ6_KW), params: paramsQ6_K, setCodes: setCodesQ6_K},
		"Q3_K": {Name: "Q3_K", BlockSize: QKK, BlockBytes: SizeQ3_K, Group: 16, Levels: intLevels(-4, 8), uniform: true,
			encodeW: encodeQ3_KW, params: paramsQ3_K, setCodes: setCodesQ3_K},
		"Q2_K": {Name: "Q2_K", BlockSize: QKK, BlockBytes: SizeQ2_K, Group: 16, Levels: intLevels(0, 4), uniform: true,
			encodeW: encodeQ2_KW, params: paramsQ2_K, setCodes: setCodesQ2_K},
		"IQ4_NL": {Name: "IQ4_NL", BlockSize: QKIQ4NL, BlockBytes: SizeIQ4_NL, Group: 32, Levels: iq4,
			encodeW: func(dst []byte, x, qw []float32) {
				for i := 0; i < len(x)/32; i++ {
					var q []float32
					if qw != nil {
						q = qw[32*i : 32*i+32]
					}
					encodeIQ4W(dst[i*SizeIQ4_NL:], x[32*i:32*i+32], q, 32)
				}
			}, params: paramsD16, setCodes: func(b []byte, c []uint8) { setCodesIQ4(b[2:], c) }},
		"IQ4_XS": {Name: "IQ4_XS", BlockSize: QKK, BlockBytes: SizeIQ4_XS, Group: 32, Levels: iq4,
			encodeW: func(dst []byte, x, qw []float32) {
				for i := 0; i < len(x)/QKK; i++ {
					var q []float32
					if qw != nil {
						q = qw[QKK*i : QKK*i+QKK]
					}
					encodeIQ4W(dst[i*SizeIQ4_XS:], x[QKK*i:QKK*i+QKK], q, QKK)
				}
			}, params: paramsIQ4_XS, setCodes: func(b []byte, c []uint8) { setCodesIQ4(b[8:], c) }},
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
		g.getCodes(row[b*g.BlockBytes:(b+1)*g.BlockBytes], codes[b*g.BlockSize:(b+1)*g.BlockSize])
	}
}

// getCodes reads one block's codes.
func (g *Grid) getCodes(b []byte, c []uint8) {
	switch g.Name {
	case "Q8_0":
		for j := range c {
			c[j] = b[2+j] ^ 0x80
		}
	case "Q5_0":
		getCodesQ5(b[2:], c)
	case "Q5_1":
		getCodesQ5(b[4:], c)
	case "Q4_0", "IQ4_NL":
		getCodesIQ4(b[2:], c)
	case "IQ4_XS":
		getCodesIQ4(b[8:], c)
	case "Q4_K":
		q := b[4+kScaleSize:]
		for j := 0; j < QKK; j += 64 {
			for l := 0; l < 32; l++ {
				c[j+l], c[j+l+32] = q[l]&0xf, q[l]>>4
			}
			q = q[32:]
		}
	case "Q5_K":
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
	case "Q6_K":
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
	case "Q3_K", "Q2_K":
		var qs []byte
		if g.Name == "Q3_K" {
			qs = b[32:96]
		} else {
			qs = b[16:80]
		}
		for j := 0; j < QKK; j += 128 {
			for l := 0; l < 32; l++ {
				v := qs[j/4+l]
				c[j+l], c[j+l+32], c[j+l+64], c[j+l+96] = v&3, (v>>2)&3, (v>>4)&3, v>>6
			}
		}
		if g.Name == "Q3_K" {
			for j := 0; j < QKK; j++ {
				if b[j%32]&(1<<(j/32)) != 0 {
					c[j] += 4
				}
			}
		}
	}
}

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
