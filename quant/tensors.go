package quant

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/marlin-llm/marlin/tensor"
)

// Meta keys of packed tensors. Every tensor ToTensors makes carries them, so
// a checkpoint blob or an exporter can interpret any one of them alone.
const (
	MetaFormat      = "quant.format"       // registry name, e.g. "mxfp4"
	MetaElem        = "quant.elem"         // Elem.String(): e2m1, int, nf, e4m3, e5m2, bf16, f16
	MetaBits        = "quant.bits"         // element bits
	MetaGroupSize   = "quant.group_size"   // 0: one group per row
	MetaScale       = "quant.scale"        // ScaleType.String()
	MetaAsym        = "quant.asym"         // "true" for zero points
	MetaRows        = "quant.rows"         // logical rows (output dim)
	MetaCols        = "quant.cols"         // logical cols (input dim)
	MetaShape       = "quant.shape"        // original shape, comma-separated (e.g. "768,256")
	MetaTensorScale = "quant.tensor_scale" // FP32 tensor scale, shortest exact decimal
	MetaRole        = "quant.role"         // codes | scales | zeros | g_idx | weight
	MetaMethod      = "quant.method"       // rtn, gptq, mr-gptq (set by the caller)
)

// Tensor-name suffixes of the companion tensors.
const (
	SuffixScales = ".scales"
	SuffixZeros  = ".zeros"
	SuffixGIdx   = ".g_idx"
)

// ToTensors converts p to self-describing tensors named after the weight:
//
//	name           U8 [Rows, RowBytes] codes (bf16/f16: BF16/F16 [Rows, Cols])
//	name.scales    [Rows, Groups] as F16 / BF16 / F32 / U8 (E8M0) / F8_E4M3
//	name.zeros     U8 [Rows, Groups] (asymmetric only)
//	name.g_idx     I32 [Cols] (act-order only)
//
// All carry the Meta keys above plus extra (e.g. MetaMethod, MetaShape).
// The tensors alias p's buffers.
func (p *Packed) ToTensors(name string, extra map[string]string) []*tensor.Tensor {
	f := p.Format
	meta := func(role string) map[string]string {
		m := map[string]string{
			MetaFormat:    f.Name,
			MetaElem:      f.Elem.String(),
			MetaBits:      strconv.Itoa(f.Bits),
			MetaGroupSize: strconv.Itoa(f.GroupSize),
			MetaScale:     f.Scale.String(),
			MetaRows:      strconv.Itoa(p.Rows),
			MetaCols:      strconv.Itoa(p.Cols),
			MetaRole:      role,
		}
		if f.Asym {
			m[MetaAsym] = "true"
		}
		if f.TensorScale {
			m[MetaTensorScale] = strconv.FormatFloat(float64(p.TensorScale), 'g', -1, 32)
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	if !f.Quantized() {
		dt := tensor.BF16
		if f.Elem == ElemF16 {
			dt = tensor.F16
		}
		return []*tensor.Tensor{{Name: name, DType: dt, Shape: []int{p.Rows, p.Cols}, Data: p.Codes, Meta: meta("weight")}}
	}
	out := []*tensor.Tensor{{Name: name, DType: tensor.U8, Shape: []int{p.Rows, p.RowBytes()}, Data: p.Codes, Meta: meta("codes")}}
	if f.Elem == ElemGGML {
		return out // the scales are inside the blocks
	}
	sdt := map[ScaleType]tensor.DType{ScaleF16: tensor.F16, ScaleBF16: tensor.BF16, ScaleF32: tensor.F32, ScaleE8M0: tensor.U8, ScaleE4M3: tensor.F8E4M3}[f.Scale]
	out = append(out, &tensor.Tensor{Name: name + SuffixScales, DType: sdt, Shape: []int{p.Rows, p.Groups()}, Data: p.Scales, Meta: meta("scales")})
	if f.Asym {
		out = append(out, &tensor.Tensor{Name: name + SuffixZeros, DType: tensor.U8, Shape: []int{p.Rows, p.Groups()}, Data: p.Zeros, Meta: meta("zeros")})
	}
	if p.GIdx != nil {
		b := make([]byte, 4*len(p.GIdx))
		for i, g := range p.GIdx {
			binary.LittleEndian.PutUint32(b[4*i:], uint32(g))
		}
		out = append(out, &tensor.Tensor{Name: name + SuffixGIdx, DType: tensor.I32, Shape: []int{p.Cols}, Data: b, Meta: meta("g_idx")})
	}
	return out
}

// FormatFromMeta rebuilds a Format from a packed tensor's Meta: the
// registered format of MetaFormat with MetaGroupSize and MetaScale applied,
// cross-checked against MetaBits, MetaElem and MetaAsym.
func FormatFromMeta(m map[string]string) (Format, error) {
	f, err := Lookup(m[MetaFormat])
	if err != nil {
		return Format{}, fmt.Errorf("meta %s: %w", MetaFormat, err)
	}
	if !f.Quantized() {
		return f, nil
	}
	if s, ok := m[MetaGroupSize]; ok {
		g, err := strconv.Atoi(s)
		if err != nil || g < 0 {
			return Format{}, fmt.Errorf("meta %s: bad group size %q", MetaGroupSize, s)
		}
		if f, err = f.WithGroupSize(g); err != nil {
			return Format{}, fmt.Errorf("meta %s: %w", MetaGroupSize, err)
		}
	}
	if s, ok := m[MetaScale]; ok {
		st, err := ParseScaleType(s)
		if err != nil {
			return Format{}, fmt.Errorf("meta %s: %w", MetaScale, err)
		}
		if f, err = f.WithScale(st); err != nil {
			return Format{}, fmt.Errorf("meta %s: %w", MetaScale, err)
		}
	}
	if s, ok := m[MetaBits]; ok && s != strconv.Itoa(f.Bits) {
		return Format{}, fmt.Errorf("meta %s = %q disagrees with format %s (%d bits)", MetaBits, s, f.Name, f.Bits)
	}
	if s, ok := m[MetaElem]; ok && s != f.Elem.String() {
		return Format{}, fmt.Errorf("meta %s = %q disagrees with format %s (%s)", MetaElem, s, f.Name, f.Elem)
	}
	if (m[MetaAsym] == "true") != f.Asym {
		return Format{}, fmt.Errorf("meta %s = %q disagrees with format %s", MetaAsym, m[MetaAsym], f.Name)
	}
	return f, nil
}

// IsPacked reports whether t is the main (codes or weight) tensor of a
// packed/kept weight made by ToTensors.
func IsPacked(t *tensor.Tensor) bool {
	r := t.Meta[MetaRole]
	return t.Meta[MetaFormat] != "" && (r == "codes" || r == "weight")
}

// FromTensors rebuilds a Packed from the tensors ToTensors made (in any
// order, other tensors ignored) for the weight called name. It validates
// every size and value range, so corrupt checkpoints give errors, not
// panics. The result aliases the tensors' data.
func FromTensors(name string, ts []*tensor.Tensor) (*Packed, error) {
	byName := map[string]*tensor.Tensor{}
	for _, t := range ts {
		if t != nil {
			byName[t.Name] = t
		}
	}
	main := byName[name]
	if main == nil {
		return nil, fmt.Errorf("quant: packed tensor %q not found", name)
	}
	wrap := func(err error) error { return fmt.Errorf("quant: packed tensor %q: %w", name, err) }
	f, err := FormatFromMeta(main.Meta)
	if err != nil {
		return nil, wrap(err)
	}
	rows, err1 := strconv.Atoi(main.Meta[MetaRows])
	cols, err2 := strconv.Atoi(main.Meta[MetaCols])
	if err1 != nil || err2 != nil || !shapeOK(rows, cols) {
		return nil, wrap(fmt.Errorf("bad %s/%s %q/%q", MetaRows, MetaCols, main.Meta[MetaRows], main.Meta[MetaCols]))
	}
	if err := main.Validate(); err != nil {
		return nil, wrap(err)
	}
	p := &Packed{Format: f, Rows: rows, Cols: cols, Codes: main.Data}
	if !f.Quantized() {
		want := tensor.BF16
		if f.Elem == ElemF16 {
			want = tensor.F16
		}
		if main.DType != want {
			return nil, wrap(fmt.Errorf("dtype %s, want %s", main.DType, want))
		}
		if err := p.Validate(); err != nil {
			return nil, wrap(err)
		}
		return p, nil
	}
	if main.DType != tensor.U8 {
		return nil, wrap(fmt.Errorf("codes dtype %s, want U8", main.DType))
	}
	if f.Elem == ElemGGML {
		p.Scales = []byte{}
		if err := p.Validate(); err != nil {
			return nil, wrap(err)
		}
		return p, nil
	}
	sc := byName[name+SuffixScales]
	if sc == nil {
		return nil, wrap(fmt.Errorf("scales tensor %q missing", name+SuffixScales))
	}
	if err := sc.Validate(); err != nil {
		return nil, wrap(err)
	}
	if sc.DType.Size() != f.Scale.Bytes() {
		return nil, wrap(fmt.Errorf("scales dtype %s does not hold %s", sc.DType, f.Scale))
	}
	p.Scales = sc.Data
	if f.Asym {
		z := byName[name+SuffixZeros]
		if z == nil {
			return nil, wrap(fmt.Errorf("zeros tensor %q missing", name+SuffixZeros))
		}
		if z.DType != tensor.U8 {
			return nil, wrap(fmt.Errorf("zeros dtype %s, want U8", z.DType))
		}
		p.Zeros = z.Data
	}
	if gi := byName[name+SuffixGIdx]; gi != nil {
		if gi.DType != tensor.I32 || len(gi.Data) != 4*cols {
			return nil, wrap(fmt.Errorf("g_idx: %s with %d bytes, want I32 [%d]", gi.DType, len(gi.Data), cols))
		}
		p.GIdx = make([]int32, cols)
		for i := range p.GIdx {
			p.GIdx[i] = int32(binary.LittleEndian.Uint32(gi.Data[4*i:]))
		}
	}
	if f.TensorScale {
		s := main.Meta[MetaTensorScale]
		v, err := strconv.ParseFloat(s, 32)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return nil, wrap(fmt.Errorf("bad %s %q", MetaTensorScale, s))
		}
		p.TensorScale = float32(v)
	}
	if err := p.Validate(); err != nil {
		return nil, wrap(err)
	}
	return p, nil
}

// ParseShape parses a MetaShape value ("768,256"; "" is a scalar's
// shape). It is the one parser of shapes in Meta, the inverse of
// FormatShape.
func ParseShape(s string) ([]int, error) {
	if s == "" {
		return []int{}, nil
	}
	var out []int
	for _, part := range strings.Split(s, ",") {
		d, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || d < 0 {
			return nil, fmt.Errorf("bad shape %q", s)
		}
		out = append(out, d)
	}
	return out, nil
}

// FormatShape renders a shape for MetaShape: dimensions joined by commas,
// without brackets or spaces ("768,256"; "" for a scalar).
func FormatShape(shape []int) string {
	parts := make([]string, len(shape))
	for i, d := range shape {
		parts[i] = strconv.Itoa(d)
	}
	return strings.Join(parts, ",")
}
