package quant

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
)

// Packed is a quantized 2-D weight [Rows, Cols] (Cols = input dimension,
// the dimension groups run along).
//
// Layout (all little-endian, rows independent and byte-aligned):
//   - Codes: Rows × RowBytes() bytes. Within a row, element c occupies bits
//     [c·B, c·B+B) of the row's bit stream, least significant bit first.
//     So 4-bit codes are nibbles, low nibble first (byte j = c[2j] |
//     c[2j+1]<<4, which read as a little-endian int32 is GPTQ's 8 values per
//     int32); 2-bit codes are four per byte, lowest bits first; 3-bit codes
//     pack 8 per 3 bytes (c0 bits 0-2, c1 bits 3-5, c2 bits 6-7 of byte 0
//     and bit 0 of byte 1, ...); 8-bit codes are bytes; bf16/f16 are
//     2-byte little-endian values. A row's last byte is zero-padded.
//   - Scales: Rows × Groups() scales of Format.Scale.Bytes() bytes each,
//     row-major (group g of row r at (r·Groups()+g)·size).
//   - Zeros: asymmetric integers only, one byte (the zero point) per
//     scale, same order.
//   - TensorScale: the FP32 tensor scale (NVFP4); 0 otherwise.
//   - GIdx: optional, len Cols: the group of each column (GPTQ act-order);
//     nil means column c is in group c / GroupSize.
//
// Dequantized weight (r, c) with g = group(c):
//
//	Mul = decode(scale[r,g]) (· TensorScale, float32, for NVFP4)
//	w = elem(code[r,c]) · Mul, ints: float32(code − zero) · Mul
type Packed struct {
	Format      Format
	Rows, Cols  int
	Codes       []byte
	Scales      []byte
	Zeros       []byte
	TensorScale float32
	GIdx        []int32
}

// RowBytes is the size of one packed row of Codes.
func (p *Packed) RowBytes() int {
	if p.Format.Elem == ElemGGML {
		gi, _ := ggmlInfo(p.Format.GGML)
		if gi.BlockSize == 0 {
			return 0
		}
		return p.Cols / gi.BlockSize * gi.BlockBytes
	}
	return (p.Cols*p.Format.Bits + 7) / 8
}

// Groups is the number of scale groups per row.
func (p *Packed) Groups() int {
	if !p.Format.Quantized() || p.Format.Elem == ElemGGML {
		return 0
	}
	g := p.Format.Group(p.Cols)
	return (p.Cols + g - 1) / g
}

// GroupOf returns the group index of column c.
func (p *Packed) GroupOf(c int) int {
	if p.GIdx != nil {
		return int(p.GIdx[c])
	}
	return c / p.Format.Group(p.Cols)
}

// NewPacked allocates an all-zero Packed for f and shape rows×cols. GPTQ
// fills it with SetGroup and SetCode (and GIdx for act-order); NVFP4 callers
// set TensorScale first.
func NewPacked(f Format, rows, cols int) (*Packed, error) {
	if rows <= 0 || cols <= 0 {
		return nil, fmt.Errorf("quant: bad shape [%d, %d]", rows, cols)
	}
	if !shapeOK(rows, cols) {
		return nil, fmt.Errorf("quant: shape [%d, %d] too large", rows, cols)
	}
	if f.Elem == ElemInvalid || f.Bits <= 0 || f.Bits > 16 {
		return nil, fmt.Errorf("quant: invalid format %+v", f)
	}
	if f.Elem == ElemGGML {
		if err := checkGGML(f, cols); err != nil {
			return nil, err
		}
	}
	p := &Packed{Format: f, Rows: rows, Cols: cols}
	p.Codes = make([]byte, rows*p.RowBytes())
	ng := rows * p.Groups()
	p.Scales = make([]byte, ng*f.Scale.Bytes())
	if f.Asym {
		p.Zeros = make([]byte, ng)
	}
	return p, nil
}

// SetGroup stores the scale (and zero point) of group g of row r.
func (p *Packed) SetGroup(r, g int, gs GroupScale) {
	i := r*p.Groups() + g
	switch p.Format.Scale.Bytes() {
	case 1:
		p.Scales[i] = uint8(gs.Code)
	case 2:
		binary.LittleEndian.PutUint16(p.Scales[2*i:], uint16(gs.Code))
	case 4:
		binary.LittleEndian.PutUint32(p.Scales[4*i:], gs.Code)
	}
	if p.Format.Asym {
		p.Zeros[i] = gs.Zero
	}
}

// Group returns the stored scale of group g of row r as a GroupScale (Mul
// recomputed from the stored code and the tensor scale).
func (p *Packed) Group(r, g int) GroupScale {
	i := r*p.Groups() + g
	var code uint32
	switch p.Format.Scale.Bytes() {
	case 1:
		code = uint32(p.Scales[i])
	case 2:
		code = uint32(binary.LittleEndian.Uint16(p.Scales[2*i:]))
	case 4:
		code = binary.LittleEndian.Uint32(p.Scales[4*i:])
	}
	gs := GroupScale{Code: code, Mul: p.Format.DecodeScale(code)}
	if p.Format.TensorScale {
		gs.Mul *= p.TensorScale
	}
	if p.Format.Scale == ScaleE8M0 && code == E8M0NaN {
		gs.NaN = true
	}
	if p.Format.Asym {
		gs.Zero = p.Zeros[i]
	}
	return gs
}

// SetCode stores the code of element (r, c).
func (p *Packed) SetCode(r, c int, code uint8) {
	setBits(p.Codes[r*p.RowBytes():], c, p.Format.Bits, uint32(code))
}

// Code returns the code of element (r, c) (for bf16/f16: the raw 16 bits).
func (p *Packed) Code(r, c int) uint32 {
	return getBits(p.Codes[r*p.RowBytes():], c, p.Format.Bits)
}

func setBits(row []byte, c, bits int, v uint32) {
	switch bits {
	case 4:
		b := &row[c>>1]
		if c&1 == 0 {
			*b = *b&0xf0 | uint8(v&15)
		} else {
			*b = *b&0x0f | uint8(v<<4)
		}
		return
	case 8:
		row[c] = uint8(v)
		return
	}
	off := c * bits
	mask := uint32(1)<<bits - 1
	v &= mask
	for done := 0; done < bits; {
		byteI, bit := (off+done)/8, (off+done)%8
		n := min(8-bit, bits-done)
		m := uint8((mask >> done) & (1<<n - 1))
		row[byteI] = row[byteI]&^(m<<bit) | uint8(v>>done)<<bit&(m<<bit)
		done += n
	}
}

func getBits(row []byte, c, bits int) uint32 {
	switch bits {
	case 4:
		return uint32(row[c>>1]>>(4*(c&1))) & 15
	case 8:
		return uint32(row[c])
	}
	off := c * bits
	var v uint32
	for done := 0; done < bits; {
		byteI, bit := (off+done)/8, (off+done)%8
		n := min(8-bit, bits-done)
		v |= uint32(row[byteI]>>bit) & (1<<n - 1) << done
		done += n
	}
	return v
}

// maxWeights bounds rows×cols of a Packed (about 10^12), so that buffer
// sizes computed from the shape never overflow.
const maxWeights = 1 << 40

// shapeOK reports whether rows×cols is positive and at most maxWeights,
// checked by division so that a product wrapping around int64 (2^32×2^32
// is 0) cannot pass.
func shapeOK(rows, cols int) bool {
	return rows > 0 && cols > 0 && int64(rows) <= maxWeights/int64(cols)
}

// Validate checks the buffer sizes, the format and GIdx against the shape.
func (p *Packed) Validate() error {
	f := p.Format
	if f.Elem == ElemInvalid || f.Bits <= 0 || f.Bits > 16 {
		return fmt.Errorf("quant: invalid format %q", f.Name)
	}
	if !shapeOK(p.Rows, p.Cols) {
		return fmt.Errorf("quant: bad shape [%d, %d]", p.Rows, p.Cols)
	}
	if f.Elem == ElemGGML {
		if err := checkGGML(f, p.Cols); err != nil {
			return err
		}
		if p.GIdx != nil {
			return fmt.Errorf("quant: %s: GGML blocks have no g_idx", f.Name)
		}
	}
	if want := p.Rows * p.RowBytes(); len(p.Codes) != want {
		return fmt.Errorf("quant: %s [%d, %d]: codes have %d bytes, want %d", f.Name, p.Rows, p.Cols, len(p.Codes), want)
	}
	ng := p.Rows * p.Groups()
	if want := ng * f.Scale.Bytes(); len(p.Scales) != want {
		return fmt.Errorf("quant: %s [%d, %d]: scales have %d bytes, want %d", f.Name, p.Rows, p.Cols, len(p.Scales), want)
	}
	if f.Asym && len(p.Zeros) != ng {
		return fmt.Errorf("quant: %s [%d, %d]: zeros have %d bytes, want %d", f.Name, p.Rows, p.Cols, len(p.Zeros), ng)
	}
	if !f.Asym && len(p.Zeros) != 0 {
		return fmt.Errorf("quant: %s: unexpected zero points", f.Name)
	}
	if p.GIdx != nil {
		if len(p.GIdx) != p.Cols {
			return fmt.Errorf("quant: g_idx has %d entries, want %d", len(p.GIdx), p.Cols)
		}
		for c, g := range p.GIdx {
			if g < 0 || int(g) >= p.Groups() {
				return fmt.Errorf("quant: g_idx[%d] = %d out of range [0, %d)", c, g, p.Groups())
			}
		}
	}
	if f.PerTensor {
		sb := f.Scale.Bytes()
		for r := 1; r < p.Rows; r++ {
			if !bytes.Equal(p.Scales[r*sb:(r+1)*sb], p.Scales[:sb]) {
				return fmt.Errorf("quant: %s [%d, %d]: row %d's scale differs from row 0's (one scale per tensor)", f.Name, p.Rows, p.Cols, r)
			}
		}
	}
	if f.Asym {
		maxq := uint8(1<<f.Bits - 1)
		for i, z := range p.Zeros {
			if z > maxq {
				return fmt.Errorf("quant: zero point %d at %d exceeds %d", z, i, maxq)
			}
		}
	}
	return nil
}

// DequantizeRow writes row r's dequantized weights into dst[:Cols].
func (p *Packed) DequantizeRow(r int, dst []float32) {
	dst = dst[:p.Cols]
	f := p.Format
	row := p.Codes[r*p.RowBytes() : (r+1)*p.RowBytes()]
	switch f.Elem {
	case ElemBF16:
		for c := range dst {
			dst[c] = DecodeBF16(binary.LittleEndian.Uint16(row[2*c:]))
		}
		return
	case ElemF16:
		for c := range dst {
			dst[c] = DecodeF16(binary.LittleEndian.Uint16(row[2*c:]))
		}
		return
	case ElemGGML:
		if err := dequantGGML(f.GGML, row, dst); err != nil {
			for c := range dst {
				dst[c] = float32(math.NaN())
			}
		}
		return
	}
	ng := p.Groups()
	var lut [256]float32
	g := f.Group(p.Cols)
	if p.GIdx == nil && (f.Elem == ElemE2M1 || f.Elem == ElemE4M3 || f.Elem == ElemE5M2 || f.Elem == ElemNF) {
		// Contiguous groups of table formats: table × Mul per group.
		var tab []float32
		switch f.Elem {
		case ElemE2M1:
			tab = E2M1Values[:]
		case ElemE4M3:
			tab = E4M3Values[:]
		case ElemE5M2:
			tab = E5M2Values[:]
		default:
			tab = f.nfTable()
		}
		for gi := 0; gi < ng; gi++ {
			gs := p.Group(r, gi)
			mul := gs.Mul
			if gs.NaN {
				mul = float32(math.NaN())
			}
			for i, v := range tab {
				lut[i] = v * mul
			}
			c0, c1 := gi*g, min((gi+1)*g, p.Cols)
			if f.Bits == 4 {
				for c := c0; c < c1; c++ {
					dst[c] = lut[(row[c>>1]>>(4*(c&1)))&15]
				}
			} else {
				for c := c0; c < c1; c++ {
					dst[c] = lut[getBits(row, c, f.Bits)]
				}
			}
		}
		return
	}
	muls := make([]float32, ng)
	zeros := make([]uint8, ng)
	for gi := range muls {
		gs := p.Group(r, gi)
		muls[gi], zeros[gi] = gs.Mul, gs.Zero
		if gs.NaN {
			muls[gi] = float32(math.NaN())
		}
	}
	for c := range dst {
		gi := p.GroupOf(c)
		dst[c] = f.ElemValue(uint8(getBits(row, c, f.Bits)), zeros[gi]) * muls[gi]
	}
}

// Dequantize writes all Rows×Cols weights into dst (row-major).
func (p *Packed) Dequantize(dst []float32) {
	for r := 0; r < p.Rows; r++ {
		p.DequantizeRow(r, dst[r*p.Cols:(r+1)*p.Cols])
	}
}

// GPTQWords returns 4-bit codes in GPTQ's qweight layout: int32 words
// [Cols/8][Rows] (row-major), word (k, n) holding the codes of columns
// 8k..8k+7 of row n, column 8k in the lowest nibble. Since Packed rows pack
// nibbles low first, word (k, n) is bytes 4k..4k+3 of row n read as a
// little-endian uint32: this is a transpose of 32-bit words. Cols must be a
// multiple of 8. (Symmetric codes are offset by 2^(B−1), the zero point
// GPTQ stores; exporters write zeros and scales in their own layouts.)
func (p *Packed) GPTQWords() ([]int32, error) {
	if p.Format.Bits != 4 || !p.Format.Quantized() {
		return nil, fmt.Errorf("quant: GPTQ words need a 4-bit format, have %s", p.Format.Name)
	}
	if p.Cols%8 != 0 {
		return nil, fmt.Errorf("quant: GPTQ words need cols %% 8 == 0, have %d", p.Cols)
	}
	k := p.Cols / 8
	out := make([]int32, k*p.Rows)
	rb := p.RowBytes()
	for n := 0; n < p.Rows; n++ {
		row := p.Codes[n*rb : (n+1)*rb]
		for j := 0; j < k; j++ {
			out[j*p.Rows+n] = int32(binary.LittleEndian.Uint32(row[4*j:]))
		}
	}
	return out, nil
}
