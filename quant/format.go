package quant

import (
	"fmt"
	"sort"
	"strings"

	"github.com/marlin-llm/marlin/quant/ggml"
)

// Elem is the element encoding of a format.
type Elem uint8

// Element encodings.
const (
	ElemInvalid Elem = iota
	// ElemE2M1 is FP4 E2M1: sign bit 3, values ±{0,.5,1,1.5,2,3,4,6}.
	ElemE2M1
	// ElemInt is a b-bit integer stored as an unsigned code u in
	// [0, 2^b−1]; the value is (u − zero)·scale. Symmetric formats use the
	// fixed zero 2^(b−1) (so q = u − 2^(b−1) ∈ [−2^(b−1), 2^(b−1)−1]);
	// asymmetric formats store a per-group zero point.
	ElemInt
	// ElemNF is a NormalFloat level table (NF4Values, NF3Values); the code
	// indexes the table and the value is level·scale.
	ElemNF
	// ElemE4M3 is OCP FP8 E4M3 (E4M3FN).
	ElemE4M3
	// ElemE5M2 is OCP FP8 E5M2.
	ElemE5M2
	// ElemBF16 keeps the weights as bfloat16 (not quantized).
	ElemBF16
	// ElemF16 keeps the weights as IEEE half (not quantized).
	ElemF16
	// ElemGGML is a GGML block type (Format.GGML names it): Packed.Codes
	// holds each row's blocks exactly as llama.cpp stores them (scales
	// inside the blocks, no Packed.Scales); see quant/ggml.Grid.
	ElemGGML
)

var elemNames = [...]string{"invalid", "e2m1", "int", "nf", "e4m3", "e5m2", "bf16", "f16", "ggml"}

// String names the element encoding.
func (e Elem) String() string {
	if int(e) < len(elemNames) {
		return elemNames[e]
	}
	return fmt.Sprintf("Elem(%d)", uint8(e))
}

// ScaleType is the encoding of the per-group scales.
type ScaleType uint8

// Scale encodings. Scales are stored little-endian, one per (row, group).
const (
	// ScaleNone: no scales (bf16, f16).
	ScaleNone ScaleType = iota
	// ScaleF16: IEEE binary16, 2 bytes.
	ScaleF16
	// ScaleBF16: bfloat16, 2 bytes.
	ScaleBF16
	// ScaleF32: IEEE binary32, 4 bytes.
	ScaleF32
	// ScaleE8M0: OCP MX power-of-two exponent, 1 byte (2^(code−127)).
	ScaleE8M0
	// ScaleE4M3: OCP FP8 E4M3, 1 byte, multiplied by the FP32 tensor scale
	// (NVFP4).
	ScaleE4M3
)

var scaleNames = [...]string{"none", "f16", "bf16", "f32", "e8m0", "e4m3"}

// String names the scale type as it appears in configs and Meta.
func (s ScaleType) String() string {
	if int(s) < len(scaleNames) {
		return scaleNames[s]
	}
	return fmt.Sprintf("ScaleType(%d)", uint8(s))
}

// Bytes is the encoded size of one scale.
func (s ScaleType) Bytes() int {
	switch s {
	case ScaleF16, ScaleBF16:
		return 2
	case ScaleF32:
		return 4
	case ScaleE8M0, ScaleE4M3:
		return 1
	}
	return 0
}

// ParseScaleType parses a scale type name ("f16", "bf16", "f32", "e8m0",
// "e4m3", "none").
func ParseScaleType(s string) (ScaleType, error) {
	for i, n := range scaleNames {
		if strings.EqualFold(s, n) {
			return ScaleType(i), nil
		}
	}
	return ScaleNone, fmt.Errorf("unknown scale type %q (known: %s)", s, strings.Join(scaleNames[:], ", "))
}

// Format describes one number format completely: what a kernel or exporter
// needs to interpret a Packed tensor. Formats are values; derive variants
// with WithGroupSize and WithScale.
type Format struct {
	// Name is the registry name ("mxfp4", "int4", "int4_asym", ...).
	Name string
	// Elem is the element encoding and Bits its width in bits (1..16).
	Elem Elem
	Bits int
	// GroupSize is the number of consecutive weights of a row (along the
	// input dimension) that share a scale. 0 means one group per row
	// (per-channel scale, used by FP8).
	GroupSize int
	// FixedGroup is set where the spec fixes the block size (MXFP4 32,
	// NVFP4 16): WithGroupSize refuses other sizes.
	FixedGroup bool
	// Scale is the scale encoding (ScaleNone for bf16/f16).
	Scale ScaleType
	// TensorScale is set for formats with an FP32 per-tensor scale that
	// multiplies every group scale (NVFP4).
	TensorScale bool
	// Asym is set for integer formats with a per-group zero point (stored
	// as one byte per group in Packed.Zeros).
	Asym bool
	// PerTensor is set for formats with one scale for the whole tensor
	// (FP8 "per tensor"): it is fitted on all the weights and stored in
	// every row's slot, so the layout, the kernels and the exporters are
	// those of a per-channel scale (GroupSize 0) whose rows agree;
	// Packed.Validate checks that they do.
	PerTensor bool
	// GGML is the llama.cpp block type name of an ElemGGML format ("Q4_K");
	// GroupSize is then its block size and Bits 8 (Packed rows are the
	// blocks' bytes).
	GGML string
}

// Quantized reports whether the format quantizes (false for bf16/f16, which
// keep the tensor as a plain float tensor).
func (f Format) Quantized() bool {
	return f.Elem != ElemBF16 && f.Elem != ElemF16 && f.Elem != ElemInvalid
}

// Levels returns the number of codes (2^Bits).
func (f Format) Levels() int { return 1 << f.Bits }

// Max returns the largest element magnitude on the unscaled grid (6 for
// E2M1, 448 for E4M3, 57344 for E5M2, 1 for NF, 2^(b−1)−1 for symmetric
// integers and 2^b−1 for asymmetric ones).
func (f Format) Max() float32 {
	switch f.Elem {
	case ElemE2M1:
		return E2M1Max
	case ElemE4M3:
		return E4M3Max
	case ElemE5M2:
		return E5M2Max
	case ElemNF:
		return 1
	case ElemInt:
		if f.Asym {
			return float32(int(1)<<f.Bits - 1)
		}
		return float32(int(1)<<(f.Bits-1) - 1)
	}
	return 0
}

// Group returns the effective group size for rows of cols weights.
func (f Format) Group(cols int) int {
	if f.GroupSize <= 0 || f.GroupSize > cols {
		return cols
	}
	return f.GroupSize
}

// BitsPerWeight is the storage cost per weight including scales, zero points
// and (amortised over a tensor of rows×cols) the tensor scale. It is exact
// for the Packed layout (rows are padded to whole bytes).
func (f Format) BitsPerWeight(rows, cols int) float64 {
	if rows <= 0 || cols <= 0 {
		return 0
	}
	if f.Elem == ElemGGML {
		return f.NominalBitsPerWeight()
	}
	bits := float64(rows * ((cols*f.Bits + 7) / 8) * 8)
	if f.Quantized() {
		g := f.Group(cols)
		ngroups := float64(rows * ((cols + g - 1) / g))
		bits += ngroups * float64(f.Scale.Bytes()*8)
		if f.Asym {
			bits += ngroups * 8
		}
		if f.TensorScale {
			bits += 32
		}
	}
	return bits / float64(rows*cols)
}

// NominalBitsPerWeight is the per-weight cost for a long row: element bits
// plus scale (and zero) bits divided by the group size.
func (f Format) NominalBitsPerWeight() float64 {
	if f.Elem == ElemGGML {
		if gi, ok := ggmlInfo(f.GGML); ok {
			return float64(gi.BlockBytes*8) / float64(gi.BlockSize)
		}
		return 0
	}
	b := float64(f.Bits)
	if f.Quantized() && f.GroupSize > 0 {
		b += float64(f.Scale.Bytes()*8) / float64(f.GroupSize)
		if f.Asym {
			b += 8 / float64(f.GroupSize)
		}
	}
	return b
}

// WithGroupSize returns f with another group size (0: one group per row).
// Formats whose block size is fixed by their spec refuse a different size.
func (f Format) WithGroupSize(g int) (Format, error) {
	if g < 0 {
		return f, fmt.Errorf("format %s: group size %d < 0", f.Name, g)
	}
	if g == f.GroupSize {
		return f, nil
	}
	if f.PerTensor {
		return f, fmt.Errorf("format %s: one scale per tensor, no group size (got %d)", f.Name, g)
	}
	if f.FixedGroup {
		return f, fmt.Errorf("format %s: block size is fixed at %d by its spec (got %d)", f.Name, f.GroupSize, g)
	}
	if !f.Quantized() {
		return f, fmt.Errorf("format %s: not quantized, has no group size", f.Name)
	}
	f.GroupSize = g
	return f, nil
}

// WithScale returns f with another scale encoding. Only formats with a
// floating scale per group (fp4, int*, nf*, fp8) may switch between f16,
// bf16 and f32; E8M0/E4M3 scales belong to their spec.
func (f Format) WithScale(s ScaleType) (Format, error) {
	if s == f.Scale {
		return f, nil
	}
	switch f.Scale {
	case ScaleF16, ScaleBF16, ScaleF32:
	default:
		return f, fmt.Errorf("format %s: scale type %s is fixed by its spec", f.Name, f.Scale)
	}
	switch s {
	case ScaleF16, ScaleBF16, ScaleF32:
	default:
		return f, fmt.Errorf("format %s: scale type must be f16, bf16 or f32, got %s", f.Name, s)
	}
	f.Scale = s
	return f, nil
}

// String is "name" plus non-default group size and scale, e.g.
// "int4(g=64,scale=f32)".
func (f Format) String() string {
	base, err := Lookup(f.Name)
	if err != nil {
		return f.Name
	}
	var extra []string
	if f.GroupSize != base.GroupSize {
		extra = append(extra, fmt.Sprintf("g=%d", f.GroupSize))
	}
	if f.Scale != base.Scale {
		extra = append(extra, "scale="+f.Scale.String())
	}
	if len(extra) == 0 {
		return f.Name
	}
	return f.Name + "(" + strings.Join(extra, ",") + ")"
}

func intFormat(name string, bits int, asym bool) Format {
	return Format{Name: name, Elem: ElemInt, Bits: bits, GroupSize: 128, Scale: ScaleF16, Asym: asym}
}

// ggmlFormat is the format of a GGML block type.
func ggmlFormat(name, typ string) Format {
	gi, _ := ggmlInfo(typ)
	return Format{Name: name, Elem: ElemGGML, Bits: 8, GroupSize: gi.BlockSize, FixedGroup: true, GGML: typ}
}

// formats is the registry, built by a function so that nothing global is
// mutable: Lookup returns copies.
func formats() []Format {
	fs := []Format{
		{Name: "fp4", Elem: ElemE2M1, Bits: 4, GroupSize: 128, Scale: ScaleF16},
		{Name: "mxfp4", Elem: ElemE2M1, Bits: 4, GroupSize: 32, FixedGroup: true, Scale: ScaleE8M0},
		{Name: "nvfp4", Elem: ElemE2M1, Bits: 4, GroupSize: 16, FixedGroup: true, Scale: ScaleE4M3, TensorScale: true},
		intFormat("int4", 4, false),
		intFormat("int4_asym", 4, true),
		intFormat("int3", 3, false),
		intFormat("int3_asym", 3, true),
		intFormat("int2", 2, false),
		intFormat("int2_asym", 2, true),
		intFormat("int8", 8, false),
		{Name: "nf4", Elem: ElemNF, Bits: 4, GroupSize: 64, Scale: ScaleF16},
		{Name: "nf3", Elem: ElemNF, Bits: 3, GroupSize: 64, Scale: ScaleF16},
		{Name: "fp8_e4m3", Elem: ElemE4M3, Bits: 8, GroupSize: 0, Scale: ScaleF32},
		{Name: "fp8_e5m2", Elem: ElemE5M2, Bits: 8, GroupSize: 0, Scale: ScaleF32},
		{Name: "fp8_e4m3_tensor", Elem: ElemE4M3, Bits: 8, GroupSize: 0, FixedGroup: true, Scale: ScaleF32, PerTensor: true},
		{Name: "fp8_e5m2_tensor", Elem: ElemE5M2, Bits: 8, GroupSize: 0, FixedGroup: true, Scale: ScaleF32, PerTensor: true},
	}
	// the GGML block types of the GGUF-type registry
	for _, t := range ggml.Types() {
		if t.Format {
			fs = append(fs, ggmlFormat(t.Name(), t.Type.String()))
		}
	}
	return append(fs,
		Format{Name: "bf16", Elem: ElemBF16, Bits: 16},
		Format{Name: "f16", Elem: ElemF16, Bits: 16},
	)
}

// Formats returns every registered format, in registry order (the order
// the job-file schema lists them).
func Formats() []Format { return formats() }

// Names returns the registered format names, sorted.
func Names() []string {
	var n []string
	for _, f := range formats() {
		n = append(n, f.Name)
	}
	sort.Strings(n)
	return n
}

// Lookup returns the format registered under name (case-insensitive;
// "int4_sym" is accepted for "int4", "fp16" for "f16"). The error lists the
// known names.
func Lookup(name string) (Format, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	n = strings.TrimSuffix(n, "_sym")
	if n == "fp16" {
		n = "f16"
	}
	for _, f := range formats() {
		if f.Name == n {
			return f, nil
		}
	}
	return Format{}, fmt.Errorf("unknown format %q (known: %s)", name, strings.Join(Names(), ", "))
}
