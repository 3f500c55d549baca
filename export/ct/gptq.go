package ct

import (
	"encoding/binary"
	"fmt"

	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/quant/gptq"
	"github.com/marlin-llm/marlin/tensor"
)

// GPTQConfig is the settings of a GPTQ checkpoint (config.json
// quantization_config with quant_method "gptq"). All weights of a GPTQ
// checkpoint share them.
type GPTQConfig struct {
	Bits      int
	GroupSize int // -1: one group per row
	DescAct   bool
	Sym       bool
}

// Map returns the quantization_config entry.
func (c GPTQConfig) Map() map[string]any {
	return map[string]any{
		"quant_method":      "gptq",
		"bits":              c.Bits,
		"group_size":        c.GroupSize,
		"desc_act":          c.DescAct,
		"sym":               c.Sym,
		"damp_percent":      gptq.DefaultPercDamp,
		"true_sequential":   true,
		"checkpoint_format": "gptq",
	}
}

// GPTQTensors converts an integer Packed weight ("<module>.weight") to
// AutoGPTQ's layout (checkpoint_format "gptq", the v1 format):
//
//	qweight I32 [in/(32/b), out]   input rows packed: word (i, j) holds
//	                               code(out j, in (32/b)·i + k) at bits b·k
//	qzeros  I32 [groups, out/(32/b)] zero point − 1, packed along out
//	scales  F16 [groups, out]
//	g_idx   I32 [in]               group of each input column
//
// so that w[j, i] = scales[g, j] · (code − (qzeros[g, j] + 1)) with
// g = g_idx[i]. Only 2, 4 and 8 bit codes with F16 scales fit.
func GPTQTensors(name string, p *quant.Packed) ([]*tensor.Tensor, GPTQConfig, error) {
	if err := p.Validate(); err != nil {
		return nil, GPTQConfig{}, fmt.Errorf("gptq: %s: %w", name, err)
	}
	f := p.Format
	fail := func(format string, a ...any) ([]*tensor.Tensor, GPTQConfig, error) {
		return nil, GPTQConfig{}, fmt.Errorf("gptq: %s (%s): %s", name, f, fmt.Sprintf(format, a...))
	}
	if f.Elem != quant.ElemInt || (f.Bits != 2 && f.Bits != 4 && f.Bits != 8) {
		return fail("GPTQ checkpoints hold 2, 4 or 8 bit integers")
	}
	if f.Scale != quant.ScaleF16 {
		return fail("GPTQ scales are F16 (quantize with scale: f16)")
	}
	mod, err := moduleName(name)
	if err != nil {
		return nil, GPTQConfig{}, err
	}
	pf := 32 / f.Bits
	if p.Cols%pf != 0 || p.Rows%pf != 0 {
		return fail("shape [%d, %d] is not a multiple of %d", p.Rows, p.Cols, pf)
	}
	ng := p.Groups()
	qweight := make([]byte, 4*(p.Cols/pf)*p.Rows)
	for i := 0; i < p.Cols/pf; i++ {
		for j := 0; j < p.Rows; j++ {
			var w uint32
			for k := 0; k < pf; k++ {
				w |= p.Code(j, pf*i+k) << (f.Bits * k)
			}
			binary.LittleEndian.PutUint32(qweight[4*(i*p.Rows+j):], w)
		}
	}
	mask := uint32(1)<<f.Bits - 1
	qzeros := make([]byte, 4*ng*(p.Rows/pf))
	scales := make([]byte, 2*ng*p.Rows)
	for g := 0; g < ng; g++ {
		for j := 0; j < p.Rows; j++ {
			z := uint32(1) << (f.Bits - 1)
			if f.Asym {
				z = uint32(p.Zeros[j*ng+g])
			}
			o := 4 * (g*(p.Rows/pf) + j/pf)
			w := binary.LittleEndian.Uint32(qzeros[o:])
			w |= ((z - 1) & mask) << (f.Bits * (j % pf))
			binary.LittleEndian.PutUint32(qzeros[o:], w)
			copy(scales[2*(g*p.Rows+j):], p.Scales[2*(j*ng+g):2*(j*ng+g)+2])
		}
	}
	gidx := make([]byte, 4*p.Cols)
	for c := 0; c < p.Cols; c++ {
		binary.LittleEndian.PutUint32(gidx[4*c:], uint32(p.GroupOf(c)))
	}
	gs := f.GroupSize
	if gs == 0 || gs >= p.Cols {
		gs = -1
	}
	return []*tensor.Tensor{
		{Name: mod + ".qweight", DType: tensor.I32, Shape: []int{p.Cols / pf, p.Rows}, Data: qweight},
		{Name: mod + ".qzeros", DType: tensor.I32, Shape: []int{ng, p.Rows / pf}, Data: qzeros},
		{Name: mod + ".scales", DType: tensor.F16, Shape: []int{ng, p.Rows}, Data: scales},
		{Name: mod + ".g_idx", DType: tensor.I32, Shape: []int{p.Cols}, Data: gidx},
	}, GPTQConfig{Bits: f.Bits, GroupSize: gs, DescAct: p.GIdx != nil, Sym: !f.Asym}, nil
}
