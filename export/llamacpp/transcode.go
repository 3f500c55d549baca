package llamacpp

import (
	"github.com/marlin-llm/marlin/model/gguf"
	"github.com/marlin-llm/marlin/quant"
)

// Lossless transcoding of marlin's packed weights into GGML blocks: a
// packed weight whose codes and scales a GGML type can hold as they are is
// copied into blocks instead of being dequantized and re-encoded.

// GGMLTypeFor returns the GGML type a packed weight converts to without
// re-quantizing, if any: MXFP4 → MXFP4; symmetric INT4 / INT8 with F16
// scales, groups of 32·k and no act-order → Q4_0 / Q8_0.
func GGMLTypeFor(p *quant.Packed) (gguf.GGMLType, bool) {
	f := p.Format
	if t, ok := f.GGMLType(); ok {
		return t, true // the codes are the blocks
	}
	switch {
	case f.Name == "mxfp4" && f.GroupSize == 32:
		return gguf.TypeMXFP4, p.Cols%32 == 0
	case f.Elem == quant.ElemInt && !f.Asym && f.Scale == quant.ScaleF16 && p.GIdx == nil &&
		f.GroupSize > 0 && f.GroupSize%32 == 0 && p.Cols%f.GroupSize == 0:
		switch f.Bits {
		case 4:
			return gguf.TypeQ4_0, true
		case 8:
			return gguf.TypeQ8_0, true
		}
	}
	return 0, false
}

// TranscodeGGML re-packs p into GGML blocks of typ when GGMLTypeFor allows
// it (ok false otherwise). The values are unchanged: MXFP4 keeps the E8M0
// exponent and the E2M1 codes (ggml's element j low nibble, j+16 high);
// Q4_0/Q8_0 take the F16 group scale as d and the code − 8 / − 128.
func TranscodeGGML(p *quant.Packed, typ gguf.GGMLType) ([]byte, bool) {
	want, ok := GGMLTypeFor(p)
	if !ok || want != typ {
		return nil, false
	}
	if p.Format.Elem == quant.ElemGGML {
		return p.Codes, true
	}
	nb := p.Cols / 32
	var out []byte
	switch typ {
	case gguf.TypeMXFP4:
		out = make([]byte, p.Rows*nb*17)
		for r := 0; r < p.Rows; r++ {
			for b := 0; b < nb; b++ {
				blk := out[(r*nb+b)*17:]
				e := p.Scales[r*p.Groups()+b]
				if e == quant.E8M0NaN {
					return nil, false
				}
				blk[0] = e
				for j := 0; j < 16; j++ {
					blk[1+j] = uint8(p.Code(r, 32*b+j)) | uint8(p.Code(r, 32*b+16+j))<<4
				}
			}
		}
	case gguf.TypeQ4_0:
		out = make([]byte, p.Rows*nb*18)
		for r := 0; r < p.Rows; r++ {
			for b := 0; b < nb; b++ {
				blk := out[(r*nb+b)*18:]
				g := p.GroupOf(32 * b)
				copy(blk[:2], p.Scales[2*(r*p.Groups()+g):])
				for j := 0; j < 16; j++ {
					blk[2+j] = uint8(p.Code(r, 32*b+j)) | uint8(p.Code(r, 32*b+16+j))<<4
				}
			}
		}
	case gguf.TypeQ8_0:
		out = make([]byte, p.Rows*nb*34)
		for r := 0; r < p.Rows; r++ {
			for b := 0; b < nb; b++ {
				blk := out[(r*nb+b)*34:]
				g := p.GroupOf(32 * b)
				copy(blk[:2], p.Scales[2*(r*p.Groups()+g):])
				for j := 0; j < 32; j++ {
					blk[2+j] = uint8(int8(int32(p.Code(r, 32*b+j)) - 128))
				}
			}
		}
	default:
		return nil, false
	}
	return out, true
}
