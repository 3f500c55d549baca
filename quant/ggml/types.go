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
		{Type: gguf.TypeQ3_K, Format: true, FileType: -1, Fallback: f16},
		{Type: gguf.TypeQ2_K, Format: true, FileType: -1, Fallback: f16},
		{Type: gguf.TypeIQ4_NL, Format: true, FileType: -1, Fallback: f16},
		{Type: gguf.TypeIQ4_XS, Format: true, FileType: -1, Fallback: f16},
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
