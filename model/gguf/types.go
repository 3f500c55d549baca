package gguf

import (
	"fmt"
	"strings"
)

// GGMLType is a ggml tensor element type (enum ggml_type in ggml.h).
type GGMLType uint32

// The ggml tensor types, numbered as in ggml/include/ggml.h (ggml-org/ggml
// d99724f, 2026-08). Gaps are types removed from the format.
const (
	TypeF32     GGMLType = 0
	TypeF16     GGMLType = 1
	TypeQ4_0    GGMLType = 2
	TypeQ4_1    GGMLType = 3
	TypeQ5_0    GGMLType = 6
	TypeQ5_1    GGMLType = 7
	TypeQ8_0    GGMLType = 8
	TypeQ8_1    GGMLType = 9
	TypeQ2_K    GGMLType = 10
	TypeQ3_K    GGMLType = 11
	TypeQ4_K    GGMLType = 12
	TypeQ5_K    GGMLType = 13
	TypeQ6_K    GGMLType = 14
	TypeQ8_K    GGMLType = 15
	TypeIQ2_XXS GGMLType = 16
	TypeIQ2_XS  GGMLType = 17
	TypeIQ3_XXS GGMLType = 18
	TypeIQ1_S   GGMLType = 19
	TypeIQ4_NL  GGMLType = 20
	TypeIQ3_S   GGMLType = 21
	TypeIQ2_S   GGMLType = 22
	TypeIQ4_XS  GGMLType = 23
	TypeI8      GGMLType = 24
	TypeI16     GGMLType = 25
	TypeI32     GGMLType = 26
	TypeI64     GGMLType = 27
	TypeF64     GGMLType = 28
	TypeIQ1_M   GGMLType = 29
	TypeBF16    GGMLType = 30
	TypeTQ1_0   GGMLType = 34
	TypeTQ2_0   GGMLType = 35
	TypeMXFP4   GGMLType = 39
	TypeNVFP4   GGMLType = 40
	TypeQ1_0    GGMLType = 41
	TypeQ2_0    GGMLType = 42
)

// qkK is ggml's super-block size (QK_K) for the k-quants and IQ types.
const qkK = 256

// TypeInfo describes a ggml type's storage: BlockSize elements are stored
// in TypeSize bytes (ggml's blck_size and type_size).
type TypeInfo struct {
	// Name is the upper-case name gguf-py and llama.cpp tools print ("Q4_K").
	Name      string
	BlockSize int
	TypeSize  int
}

// typeTable is the single table of ggml types. Sizes are the sizeof of the
// block structs in ggml/src/ggml-common.h (static_asserts there give the
// formulas repeated in the comments).
var typeTable = map[GGMLType]TypeInfo{
	TypeF32:     {"F32", 1, 4},
	TypeF16:     {"F16", 1, 2},
	TypeQ4_0:    {"Q4_0", 32, 2 + 16},                  // d, qs[16]
	TypeQ4_1:    {"Q4_1", 32, 2 + 2 + 16},              // d, m, qs[16]
	TypeQ5_0:    {"Q5_0", 32, 2 + 4 + 16},              // d, qh[4], qs[16]
	TypeQ5_1:    {"Q5_1", 32, 2 + 2 + 4 + 16},          // d, m, qh[4], qs[16]
	TypeQ8_0:    {"Q8_0", 32, 2 + 32},                  // d, qs[32]
	TypeQ8_1:    {"Q8_1", 32, 2 + 2 + 32},              // d, s, qs[32]
	TypeQ2_K:    {"Q2_K", qkK, qkK/16 + qkK/4 + 2 + 2}, // scales, qs, d, dmin = 84
	TypeQ3_K:    {"Q3_K", qkK, qkK/8 + qkK/4 + 12 + 2}, // hmask, qs, scales, d = 110
	TypeQ4_K:    {"Q4_K", qkK, 2 + 2 + 12 + qkK/2},     // d, dmin, scales, qs = 144
	TypeQ5_K:    {"Q5_K", qkK, 2 + 2 + 12 + qkK/8 + qkK/2},
	TypeQ6_K:    {"Q6_K", qkK, qkK/2 + qkK/4 + qkK/16 + 2}, // ql, qh, scales, d = 210
	TypeQ8_K:    {"Q8_K", qkK, 4 + qkK + qkK/16*2},         // float d, qs, bsums = 292
	TypeIQ2_XXS: {"IQ2_XXS", qkK, 2 + qkK/8*2},
	TypeIQ2_XS:  {"IQ2_XS", qkK, 2 + qkK/8*2 + qkK/32},
	TypeIQ3_XXS: {"IQ3_XXS", qkK, 2 + 3*(qkK/8)},
	TypeIQ1_S:   {"IQ1_S", qkK, 2 + qkK/8 + qkK/16},
	TypeIQ4_NL:  {"IQ4_NL", 32, 2 + 16},
	TypeIQ3_S:   {"IQ3_S", qkK, 2 + 13*(qkK/32) + qkK/64},
	TypeIQ2_S:   {"IQ2_S", qkK, 2 + qkK/4 + qkK/16},
	TypeIQ4_XS:  {"IQ4_XS", qkK, 2 + 2 + qkK/64 + qkK/2},
	TypeI8:      {"I8", 1, 1},
	TypeI16:     {"I16", 1, 2},
	TypeI32:     {"I32", 1, 4},
	TypeI64:     {"I64", 1, 8},
	TypeF64:     {"F64", 1, 8},
	TypeIQ1_M:   {"IQ1_M", qkK, qkK/8 + qkK/16 + qkK/32},
	TypeBF16:    {"BF16", 1, 2},
	TypeTQ1_0:   {"TQ1_0", qkK, (qkK-4*qkK/64)/5 + qkK/64 + 2},
	TypeTQ2_0:   {"TQ2_0", qkK, qkK/4 + 2},
	TypeMXFP4:   {"MXFP4", 32, 1 + 16},     // e (E8M0), qs[16]
	TypeNVFP4:   {"NVFP4", 64, 64/16 + 32}, // d[4] (UE4M3), qs[32]
	TypeQ1_0:    {"Q1_0", 128, 2 + 128/8},
	TypeQ2_0:    {"Q2_0", 64, 2 + 64/4},
}

// Info returns the type's storage description.
func (t GGMLType) Info() (TypeInfo, bool) {
	ti, ok := typeTable[t]
	return ti, ok
}

// String is the type's name ("Q4_K"), or "GGMLType(n)" when unknown.
func (t GGMLType) String() string {
	if ti, ok := typeTable[t]; ok {
		return ti.Name
	}
	return fmt.Sprintf("GGMLType(%d)", uint32(t))
}

// ParseType looks a type up by name, case-insensitively ("q4_k", "MXFP4").
func ParseType(name string) (GGMLType, error) {
	for t, ti := range typeTable {
		if strings.EqualFold(ti.Name, name) {
			return t, nil
		}
	}
	return 0, fmt.Errorf("unknown ggml type %q", name)
}

// Types lists every known type in numeric order.
func Types() []GGMLType {
	var out []GGMLType
	for t := range GGMLType(64) {
		if _, ok := typeTable[t]; ok {
			out = append(out, t)
		}
	}
	return out
}

// RowSize is the number of bytes n elements of type t take; n must be a
// multiple of the block size.
func (t GGMLType) RowSize(n int64) (int64, error) {
	ti, ok := typeTable[t]
	if !ok {
		return 0, fmt.Errorf("unknown ggml type %d", uint32(t))
	}
	if n < 0 || n%int64(ti.BlockSize) != 0 {
		return 0, fmt.Errorf("%s: %d elements is not a multiple of the block size %d", ti.Name, n, ti.BlockSize)
	}
	return n / int64(ti.BlockSize) * int64(ti.TypeSize), nil
}
