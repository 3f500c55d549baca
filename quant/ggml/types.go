package ggml

import (
	"fmt"
	"strings"

	"github.com/marlin-llm/marlin/model/gguf"
	"github.com/marlin-llm/marlin/tensor"
)

// Type is one row of the GGUF-type registry: a ggml tensor type marlin
// writes into GGUF files. Its number, block size and byte size come from
// model/gguf's type table; its codec from this package (a Grid, or for
// MXFP4 an Encoder; F32, F16 and BF16 are plain floats).
//
// Everything that lists GGUF types derives from the registry: the quantize
// formats of element type GGML (quant.Formats), the pack stage's gguf_type
// recipes and their schema enum, the types a rule may name and the
// validation messages (export/llamacpp), llama-quantize's fallbacks and
// general.file_type of the pure recipes.
type Type struct {
	// Type is the ggml type.
	Type gguf.GGMLType
	// Recipe: the pack stage accepts the lower-case name as a pure
	// gguf_type recipe (every matrix in this type).
	Recipe bool
	// Format: the quantize stage has a format of the lower-case name that
	// fits scales on this type's grid (written into GGUF unchanged).
	Format bool
	// FileType is llama.cpp's general.file_type (enum llama_ftype) written
	// for the pure recipe; -1: none, the file type is derived from the
	// tensors' most common type.
	FileType int
	// Fallback is the type llama-quantize's tensor_type_fallback moves a
	// matrix to when its rows do not fill whole blocks (F16 when that one's
	// blocks do not fit either).
	Fallback gguf.GGMLType
}

// Name is the lower-case name job files use ("q4_k").
func (t Type) Name() string { return strings.ToLower(t.Type.String()) }

// Float reports whether the type is a plain float type (F32, F16, BF16).
func (t Type) Float() bool {
	switch t.Type {
	case gguf.TypeF32, gguf.TypeF16, gguf.TypeBF16:
		return true
	}
	return false
}

// registry is the GGUF-type registry (a function, so that nothing global is
// mutable). Its order is the order every derived list uses.
func registry() []Type {
	f16 := gguf.TypeF16
	return []Type{
		{Type: gguf.TypeF32, Recipe: true, FileType: 0, Fallback: f16},
		{Type: gguf.TypeF16, Recipe: true, FileType: 1, Fallback: f16},
		{Type: gguf.TypeBF16, Recipe: true, FileType: 32, Fallback: f16},
		{Type: gguf.TypeQ8_0, Recipe: true, Format: true, FileType: 7, Fallback: f16},
		{Type: gguf.TypeQ6_K, Recipe: true, Format: true, FileType: 18, Fallback: gguf.TypeQ8_0},
		{Type: gguf.TypeQ5_K, Recipe: true, Format: true, FileType: -1, Fallback: gguf.TypeQ5_1},
		{Type: gguf.TypeQ4_K, Recipe: true, Format: true, FileType: -1, Fallback: gguf.TypeQ5_0},
		{Type: gguf.TypeQ5_0, Recipe: true, Format: true, FileType: 8, Fallback: f16},
		{Type: gguf.TypeQ5_1, Recipe: true, Format: true, FileType: -1, Fallback: f16},
		{Type: gguf.TypeQ4_0, Recipe: true, Format: true, FileType: 2, Fallback: f16},
		{Type: gguf.TypeMXFP4, Recipe: true, FileType: 38, Fallback: f16},
		{Type: gguf.TypeQ3_K, Format: true, FileType: -1, Fallback: gguf.TypeQ4_0},
		{Type: gguf.TypeQ2_K, Format: true, FileType: -1, Fallback: gguf.TypeQ4_0},
		{Type: gguf.TypeIQ4_NL, Format: true, FileType: -1, Fallback: f16},
		{Type: gguf.TypeIQ4_XS, Format: true, FileType: -1, Fallback: gguf.TypeIQ4_NL},
	}
}

// Types returns the writable GGUF types in registry order.
func Types() []Type { return registry() }

// TypeNames returns the lower-case names of the writable types, in
// registry order.
func TypeNames() []string {
	var n []string
	for _, t := range registry() {
		n = append(n, t.Name())
	}
	return n
}

// LookupType returns the registry row of a ggml type.
func LookupType(typ gguf.GGMLType) (Type, bool) {
	for _, t := range registry() {
		if t.Type == typ {
			return t, true
		}
	}
	return Type{}, false
}

// ParseType parses a writable type's name (case-insensitive).
func ParseType(name string) (Type, error) {
	typ, err := gguf.ParseType(name)
	if err != nil {
		return Type{}, err
	}
	if t, ok := LookupType(typ); ok {
		return t, nil
	}
	return Type{}, fmt.Errorf("tensor type %s cannot be written (writable: %s)", typ, strings.Join(TypeNames(), ", "))
}

// EncodeValues encodes float32 values (whole rows, row-major) as the
// writable type typ: the float types exactly, the block types with
// llama-quantize's quantizer without importance weights.
func EncodeValues(typ gguf.GGMLType, x []float32) ([]byte, error) {
	t, ok := LookupType(typ)
	if !ok {
		return nil, fmt.Errorf("ggml: tensor type %s cannot be written (writable: %s)", typ, strings.Join(TypeNames(), ", "))
	}
	if t.Float() {
		dt := map[gguf.GGMLType]tensor.DType{gguf.TypeF32: tensor.F32, gguf.TypeF16: tensor.F16, gguf.TypeBF16: tensor.BF16}[typ]
		b := make([]byte, len(x)*dt.Size())
		if err := tensor.EncodeFloat32(b, dt, x); err != nil {
			return nil, err
		}
		return b, nil
	}
	if enc, err := Lookup(typ.String()); err == nil {
		return enc.Encode(make([]byte, 0, enc.RowBytes(len(x))), x)
	}
	g, err := LookupGrid(typ.String())
	if err != nil {
		return nil, err
	}
	out := make([]byte, g.RowBytes(len(x)))
	return out, g.Encode(out, x, nil)
}

func intLevels(lo, n int) []float32 {
	l := make([]float32, n)
	for i := range l {
		l[i] = float32(lo + i)
	}
	return l
}

// The codec wiring of the registry's block types: encoders holds the
// reference quantizers (llama.cpp's quantize_row_*_ref) and grids every
// block type seen as a quantization grid. A registry row of a block type
// needs a grid (or, as MXFP4, an encoder); TestRegistry checks it.

// encoders are the reference quantizers by llama.cpp type name.
var encoders = map[string]Encoder{
	"Q4_0":  {"Q4_0", QK4_0, SizeQ4_0, EncodeQ4_0},
	"Q5_0":  {"Q5_0", QK5_0, SizeQ5_0, EncodeQ5_0},
	"Q5_1":  {"Q5_1", QK5_1, SizeQ5_1, EncodeQ5_1},
	"Q8_0":  {"Q8_0", QK8_0, SizeQ8_0, EncodeQ8_0},
	"MXFP4": {"MXFP4", QKMXFP4, SizeMXFP4, EncodeMXFP4},
	"Q4_K":  {"Q4_K", QKK, SizeQ4_K, EncodeQ4_K},
	"Q5_K":  {"Q5_K", QKK, SizeQ5_K, EncodeQ5_K},
	"Q6_K":  {"Q6_K", QKK, SizeQ6_K, EncodeQ6_K},
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
			encodeW: func(dst []byte, x, _ []float32) { EncodeQ8_0(dst, x) }, params: paramsD16, halves: []int{0}, setCodes: setCodesQ8_0, getCodesB: getCodesQ8_0},
		"Q4_0": {Name: "Q4_0", BlockSize: QK4_0, BlockBytes: SizeQ4_0, Group: 32, Levels: intLevels(-8, 16), uniform: true,
			encodeW: perRow(EncodeQ4_0, encodeQ4_0W), params: paramsD16, halves: []int{0},
			setCodes: func(b []byte, c []uint8) { setCodesIQ4(b[2:], c) }, getCodesB: func(b []byte, c []uint8) { getCodesIQ4(b[2:], c) }},
		"Q5_0": {Name: "Q5_0", BlockSize: QK5_0, BlockBytes: SizeQ5_0, Group: 32, Levels: intLevels(-16, 32), uniform: true,
			encodeW: perRow(EncodeQ5_0, encodeQ5_0W), params: paramsD16, halves: []int{0},
			setCodes: func(b []byte, c []uint8) { setCodesQ5(b[2:], c) }, getCodesB: func(b []byte, c []uint8) { getCodesQ5(b[2:], c) }},
		"Q5_1": {Name: "Q5_1", BlockSize: QK5_1, BlockBytes: SizeQ5_1, Group: 32, Levels: intLevels(0, 32), uniform: true,
			encodeW: perRow(EncodeQ5_1, encodeQ5_1W), params: paramsQ5_1, halves: []int{0, 2},
			setCodes: func(b []byte, c []uint8) { setCodesQ5(b[4:], c) }, getCodesB: func(b []byte, c []uint8) { getCodesQ5(b[4:], c) }},
		"Q4_K": {Name: "Q4_K", BlockSize: QKK, BlockBytes: SizeQ4_K, Group: 32, Levels: intLevels(0, 16), uniform: true,
			encodeW: perRow(EncodeQ4_K, func(dst []byte, x, qw []float32) {
				encodeKW(dst, x, qw, 15, SizeQ4_K, func(b []byte, L *[QKK]uint8) { setCodesQ4_K(b, L[:]) })
			}), params: paramsK4, halves: []int{0, 2}, setCodes: setCodesQ4_K, getCodesB: getCodesQ4_K},
		"Q5_K": {Name: "Q5_K", BlockSize: QKK, BlockBytes: SizeQ5_K, Group: 32, Levels: intLevels(0, 32), uniform: true,
			encodeW: perRow(EncodeQ5_K, func(dst []byte, x, qw []float32) {
				encodeKW(dst, x, qw, 31, SizeQ5_K, func(b []byte, L *[QKK]uint8) { setCodesQ5_K(b, L[:]) })
			}), params: paramsK4, halves: []int{0, 2}, setCodes: setCodesQ5_K, getCodesB: getCodesQ5_K},
		"Q6_K": {Name: "Q6_K", BlockSize: QKK, BlockBytes: SizeQ6_K, Group: 16, Levels: intLevels(-32, 64), uniform: true,
			encodeW: perRow(EncodeQ6_K, encodeQ6_KW), params: paramsQ6_K, halves: []int{QKK/2 + QKK/4 + QKK/16}, setCodes: setCodesQ6_K, getCodesB: getCodesQ6_K},
		"Q3_K": {Name: "Q3_K", BlockSize: QKK, BlockBytes: SizeQ3_K, Group: 16, Levels: intLevels(-4, 8), uniform: true,
			encodeW: encodeQ3_KW, params: paramsQ3_K, halves: []int{108}, setCodes: setCodesQ3_K, getCodesB: getCodesQ3_K},
		"Q2_K": {Name: "Q2_K", BlockSize: QKK, BlockBytes: SizeQ2_K, Group: 16, Levels: intLevels(0, 4), uniform: true,
			encodeW: encodeQ2_KW, params: paramsQ2_K, halves: []int{80, 82}, setCodes: setCodesQ2_K, getCodesB: getCodesQ2_K},
		"IQ4_NL": {Name: "IQ4_NL", BlockSize: QKIQ4NL, BlockBytes: SizeIQ4_NL, Group: 32, Levels: iq4,
			encodeW: func(dst []byte, x, qw []float32) {
				for i := 0; i < len(x)/32; i++ {
					var q []float32
					if qw != nil {
						q = qw[32*i : 32*i+32]
					}
					encodeIQ4W(dst[i*SizeIQ4_NL:], x[32*i:32*i+32], q, 32)
				}
			}, params: paramsD16, halves: []int{0}, setCodes: func(b []byte, c []uint8) { setCodesIQ4(b[2:], c) }, getCodesB: func(b []byte, c []uint8) { getCodesIQ4(b[2:], c) }},
		"IQ4_XS": {Name: "IQ4_XS", BlockSize: QKK, BlockBytes: SizeIQ4_XS, Group: 32, Levels: iq4,
			encodeW: func(dst []byte, x, qw []float32) {
				for i := 0; i < len(x)/QKK; i++ {
					var q []float32
					if qw != nil {
						q = qw[QKK*i : QKK*i+QKK]
					}
					encodeIQ4W(dst[i*SizeIQ4_XS:], x[QKK*i:QKK*i+QKK], q, QKK)
				}
			}, params: paramsIQ4_XS, halves: []int{0}, setCodes: func(b []byte, c []uint8) { setCodesIQ4(b[8:], c) }, getCodesB: func(b []byte, c []uint8) { getCodesIQ4(b[8:], c) }},
	}
}
