// Package ct converts quantized weights (quant.Packed) to the safetensors
// layouts other runtimes load: compressed-tensors, as llm-compressor writes
// and vLLM reads (nvfp4-pack-quantized, mxfp4-pack-quantized,
// pack-quantized INT2/3/4/8, float-quantized FP8), and GPTQ's
// qweight/qzeros/scales/g_idx (AutoGPTQ's v1 checkpoint format).
//
// The conversions are lossless re-packings of the same codes and scales:
//
//   - NVFP4: weight_packed U8 [out, in/2] is quant's nibble stream (even
//     column in the low nibble, sign in bit 3), weight_scale F8_E4M3
//     [out, in/16] the block scales, weight_global_scale F32 [1] the
//     reciprocal of quant's tensor scale (compressed-tensors dequantizes
//     e2m1 · scale / global_scale, so values agree with quant's
//     e2m1 · (scale · tensor_scale) to within float32 rounding of the two
//     products, ≤ 2 ulp).
//   - MXFP4: weight_packed as above, weight_scale U8 [out, in/32] the E8M0
//     exponents (2^(s−127)).
//   - INT (pack-quantized): weight_packed I32 [out, ceil(in/(32/b))] with
//     column i·k+j at bits b·j of word i, values stored offset by 2^(b−1)
//     (which is quant's unsigned code); weight_scale [out, groups] in the
//     scale dtype; weight_zero_point I32 [ceil(out/(32/b)), groups] packed
//     along the output dimension (asymmetric only); weight_g_idx I32 [in]
//     for act-order; weight_shape I32 [2].
//   - FP8 E4M3 per channel (float-quantized): weight F8_E4M3 [out, in],
//     weight_scale F32 [out, 1].
//
// The package is hand-written: the formats are small and fixed, and no Go
// library writes them.
package ct

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/tensor"
)

// Compression formats (config.json quantization_config.format).
const (
	FormatNVFP4 = "nvfp4-pack-quantized"
	FormatMXFP4 = "mxfp4-pack-quantized"
	FormatPack  = "pack-quantized"
	FormatFloat = "float-quantized"
)

// Scheme describes how one weight was quantized, as a compressed-tensors
// config group's "weights" entry plus the group's format.
type Scheme struct {
	Format     string
	NumBits    int
	Type       string // "int" or "float"
	Strategy   string // "group", "channel", "tensor", "tensor_group"
	GroupSize  int    // 0 for channel
	Symmetric  bool
	ActOrder   bool
	ScaleDType string // "torch.uint8" for MXFP4, "" otherwise
}

// key identifies a scheme for grouping.
func (s Scheme) key() string { return fmt.Sprintf("%+v", s) }

// moduleName strips ".weight" from a weight name.
func moduleName(weight string) (string, error) {
	m, ok := strings.CutSuffix(weight, ".weight")
	if !ok || m == "" {
		return "", fmt.Errorf("ct: %q is not a module weight (want <module>.weight)", weight)
	}
	return m, nil
}

// Tensors converts the packed weight called name ("<module>.weight") to
// compressed-tensors tensors. Unquantized formats (bf16/f16) come back as
// the plain weight with a zero Scheme.
func Tensors(name string, p *quant.Packed) ([]*tensor.Tensor, Scheme, error) {
	if err := p.Validate(); err != nil {
		return nil, Scheme{}, fmt.Errorf("ct: %s: %w", name, err)
	}
	f := p.Format
	if !f.Quantized() {
		dt := tensor.BF16
		if f.Elem == quant.ElemF16 {
			dt = tensor.F16
		}
		return []*tensor.Tensor{{Name: name, DType: dt, Shape: []int{p.Rows, p.Cols}, Data: p.Codes}}, Scheme{}, nil
	}
	mod, err := moduleName(name)
	if err != nil {
		return nil, Scheme{}, err
	}
	fail := func(format string, a ...any) ([]*tensor.Tensor, Scheme, error) {
		return nil, Scheme{}, fmt.Errorf("ct: %s (%s): %s", name, f, fmt.Sprintf(format, a...))
	}
	if p.GIdx != nil && f.Elem != quant.ElemInt {
		return fail("act-order (g_idx) is only stored for integer formats")
	}
	switch {
	case f.Name == "nvfp4" || f.Name == "mxfp4":
		if p.Cols%2 != 0 || p.Cols%f.GroupSize != 0 {
			return fail("input dimension %d is not a multiple of the block size %d", p.Cols, f.GroupSize)
		}
		out := []*tensor.Tensor{
			{Name: mod + ".weight_packed", DType: tensor.U8, Shape: []int{p.Rows, p.Cols / 2}, Data: p.Codes},
		}
		s := Scheme{NumBits: 4, Type: "float", GroupSize: f.GroupSize, Symmetric: true}
		if f.Name == "nvfp4" {
			out = append(out, &tensor.Tensor{Name: mod + ".weight_scale", DType: tensor.F8E4M3, Shape: []int{p.Rows, p.Groups()}, Data: p.Scales})
			g := make([]byte, 4)
			binary.LittleEndian.PutUint32(g, math.Float32bits(1/p.TensorScale))
			out = append(out, &tensor.Tensor{Name: mod + ".weight_global_scale", DType: tensor.F32, Shape: []int{1}, Data: g})
			s.Format, s.Strategy = FormatNVFP4, "tensor_group"
		} else {
			out = append(out, &tensor.Tensor{Name: mod + ".weight_scale", DType: tensor.U8, Shape: []int{p.Rows, p.Groups()}, Data: p.Scales})
			s.Format, s.Strategy, s.ScaleDType = FormatMXFP4, "group", "torch.uint8"
		}
		return out, s, nil
	case f.Elem == quant.ElemInt:
		if f.Bits > 8 {
			return fail("more than 8 bits")
		}
		if f.GroupSize > 0 && p.Cols%f.Group(p.Cols) != 0 {
			return fail("input dimension %d is not a multiple of the group size %d", p.Cols, f.GroupSize)
		}
		sdt, err := scaleDType(f.Scale)
		if err != nil {
			return fail("%v", err)
		}
		pf := 32 / f.Bits
		packedCols := (p.Cols + pf - 1) / pf
		packed := make([]byte, 4*p.Rows*packedCols)
		for r := 0; r < p.Rows; r++ {
			for c := 0; c < p.Cols; c++ {
				o := 4 * (r*packedCols + c/pf)
				w := binary.LittleEndian.Uint32(packed[o:])
				w |= p.Code(r, c) << (f.Bits * (c % pf))
				binary.LittleEndian.PutUint32(packed[o:], w)
			}
		}
		shape := make([]byte, 8)
		binary.LittleEndian.PutUint32(shape, uint32(p.Rows))
		binary.LittleEndian.PutUint32(shape[4:], uint32(p.Cols))
		out := []*tensor.Tensor{
			{Name: mod + ".weight_packed", DType: tensor.I32, Shape: []int{p.Rows, packedCols}, Data: packed},
			{Name: mod + ".weight_scale", DType: sdt, Shape: []int{p.Rows, p.Groups()}, Data: p.Scales},
			{Name: mod + ".weight_shape", DType: tensor.I32, Shape: []int{2}, Data: shape},
		}
		ng := p.Groups()
		if f.Asym {
			// Zero points: compressed-tensors stores signed zp = z − 2^(b−1)
			// offset back by 2^(b−1), i.e. quant's unsigned zero, packed
			// along the output dimension.
			zr := (p.Rows + pf - 1) / pf
			zp := make([]byte, 4*zr*ng)
			for r := 0; r < p.Rows; r++ {
				for g := 0; g < ng; g++ {
					o := 4 * ((r/pf)*ng + g)
					w := binary.LittleEndian.Uint32(zp[o:])
					w |= uint32(p.Zeros[r*ng+g]) << (f.Bits * (r % pf))
					binary.LittleEndian.PutUint32(zp[o:], w)
				}
			}
			out = append(out, &tensor.Tensor{Name: mod + ".weight_zero_point", DType: tensor.I32, Shape: []int{zr, ng}, Data: zp})
		}
		s := Scheme{Format: FormatPack, NumBits: f.Bits, Type: "int", Strategy: "group", GroupSize: f.GroupSize, Symmetric: !f.Asym}
		if f.GroupSize == 0 || f.GroupSize >= p.Cols {
			s.Strategy, s.GroupSize = "channel", 0
		}
		if p.GIdx != nil {
			gi := make([]byte, 4*p.Cols)
			for c := 0; c < p.Cols; c++ {
				binary.LittleEndian.PutUint32(gi[4*c:], uint32(p.GroupOf(c)))
			}
			out = append(out, &tensor.Tensor{Name: mod + ".weight_g_idx", DType: tensor.I32, Shape: []int{p.Cols}, Data: gi})
			s.ActOrder = true
		}
		return out, s, nil
	case f.Elem == quant.ElemE4M3 && f.PerTensor && f.Scale == quant.ScaleF32:
		// One scale (every row holds the same, Packed.Validate checks).
		return []*tensor.Tensor{
			{Name: mod + ".weight", DType: tensor.F8E4M3, Shape: []int{p.Rows, p.Cols}, Data: p.Codes},
			{Name: mod + ".weight_scale", DType: tensor.F32, Shape: []int{1}, Data: p.Scales[:4]},
		}, Scheme{Format: FormatFloat, NumBits: 8, Type: "float", Strategy: "tensor", Symmetric: true}, nil
	case f.Elem == quant.ElemE4M3 && (f.GroupSize == 0 || f.GroupSize >= p.Cols) && f.Scale == quant.ScaleF32:
		return []*tensor.Tensor{
			{Name: mod + ".weight", DType: tensor.F8E4M3, Shape: []int{p.Rows, p.Cols}, Data: p.Codes},
			{Name: mod + ".weight_scale", DType: tensor.F32, Shape: []int{p.Rows, 1}, Data: p.Scales},
		}, Scheme{Format: FormatFloat, NumBits: 8, Type: "float", Strategy: "channel", Symmetric: true}, nil
	}
	return fail("no compressed-tensors layout (supported: nvfp4, mxfp4, int2..int8 sym/asym, fp8_e4m3 per channel or per tensor)")
}

func scaleDType(s quant.ScaleType) (tensor.DType, error) {
	switch s {
	case quant.ScaleF16:
		return tensor.F16, nil
	case quant.ScaleBF16:
		return tensor.BF16, nil
	case quant.ScaleF32:
		return tensor.F32, nil
	}
	return tensor.Invalid, fmt.Errorf("scale type %s has no compressed-tensors dtype", s)
}

// QuantizationConfig builds config.json's "quantization_config" for the
// given module → scheme assignment; ignore lists the Linear modules left
// unquantized (e.g. lm_head). Each distinct scheme becomes one config
// group whose targets are its module names.
func QuantizationConfig(schemes map[string]Scheme, ignore []string) (map[string]any, error) {
	byKey := map[string][]string{}
	keyScheme := map[string]Scheme{}
	for mod, s := range schemes {
		byKey[s.key()] = append(byKey[s.key()], mod)
		keyScheme[s.key()] = s
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	groups := map[string]any{}
	format := ""
	for i, k := range keys {
		s := keyScheme[k]
		mods := byKey[k]
		sort.Strings(mods)
		w := map[string]any{
			"num_bits":  s.NumBits,
			"type":      s.Type,
			"strategy":  s.Strategy,
			"symmetric": s.Symmetric,
			"dynamic":   false,
			"observer":  "minmax",
		}
		if s.GroupSize > 0 {
			w["group_size"] = s.GroupSize
		} else {
			w["group_size"] = nil
		}
		if s.ActOrder {
			w["actorder"] = "group"
		} else {
			w["actorder"] = nil
		}
		if s.ScaleDType != "" {
			w["scale_dtype"] = s.ScaleDType
		}
		groups[fmt.Sprintf("group_%d", i)] = map[string]any{
			"targets":            mods,
			"weights":            w,
			"input_activations":  nil,
			"output_activations": nil,
			"format":             s.Format,
		}
		if format == "" {
			format = s.Format
		} else if format != s.Format {
			format = "mixed-precision"
		}
	}
	if len(groups) == 0 {
		return nil, fmt.Errorf("ct: no quantized weights")
	}
	sort.Strings(ignore)
	return map[string]any{
		"quant_method":        "compressed-tensors",
		"format":              format,
		"quantization_status": "compressed",
		"config_groups":       groups,
		"ignore":              append([]string{}, ignore...),
		"kv_cache_scheme":     nil,
	}, nil
}
