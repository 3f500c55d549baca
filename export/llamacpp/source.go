package llamacpp

import (
	"fmt"

	"github.com/marlin-llm/marlin/model/gguf"
	"github.com/marlin-llm/marlin/model/hfconfig"
	"github.com/marlin-llm/marlin/tensor"
)

// GGUFSource reads a GGUF file this package wrote (or llama-quantize made
// from one) back as Hugging Face tensors in F32, through model/gguf's
// dequantization (llama.cpp's dequantize_row_*): stacked experts are cut
// apart again and MLA's attn_k_b / attn_v_b reassembled into kv_b_proj.
// It is an arch.TensorSource, so the model llama.cpp runs can be scored
// with marlin's own forward pass.
type GGUFSource struct {
	f   *gguf.File
	cfg *hfconfig.Config
}

// OpenGGUFSource opens path for the model described by cfg.
func OpenGGUFSource(path string, cfg *hfconfig.Config) (*GGUFSource, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	return &GGUFSource{f: f, cfg: cfg}, nil
}

// Close unmaps the file.
func (s *GGUFSource) Close() error { return s.f.Close() }

func (s *GGUFSource) floats(name string) ([]float32, error) {
	if _, ok := s.f.Info(name); !ok {
		return nil, fmt.Errorf("llamacpp: gguf has no tensor %s", name)
	}
	return s.f.Float32(name)
}

// Tensor implements arch.TensorSource.
func (s *GGUFSource) Tensor(name string) (*tensor.Tensor, error) {
	var x []float32
	var shape []int
	var err error
	switch {
	case name == "model.norm.weight":
		x, err = s.floats("output_norm.weight")
	case name == "lm_head.weight":
		gn := "output.weight"
		if _, ok := s.f.Info(gn); !ok {
			gn = "token_embd.weight" // tied
		}
		x, err = s.floats(gn)
		if ti, ok := s.f.Info(gn); ok {
			shape = ti.Shape()
		}
	default:
		if tn, blk, ok := hfLayer(name); ok && tn.Rest == "self_attn.kv_b_proj.weight" {
			return s.kvB(name, blk)
		}
		gn, expert, ok := GGUFName(name)
		if !ok {
			return nil, fmt.Errorf("llamacpp: no llama.cpp tensor for %q", name)
		}
		ti, ok := s.f.Info(gn)
		if !ok {
			return nil, fmt.Errorf("llamacpp: gguf has no tensor %s (for %s)", gn, name)
		}
		x, err = s.f.Float32(gn)
		if err != nil {
			return nil, err
		}
		shape = ti.Shape()
		if expert >= 0 {
			if len(shape) != 3 || expert >= shape[0] {
				return nil, fmt.Errorf("llamacpp: %s: shape %v has no expert %d", gn, shape, expert)
			}
			n := shape[1] * shape[2]
			x, shape = x[expert*n:(expert+1)*n], shape[1:]
		}
	}
	if err != nil {
		return nil, err
	}
	if shape == nil {
		shape = []int{len(x)}
	}
	return tensor.FromFloat32(name, tensor.F32, shape, x)
}

// kvB rebuilds kv_b_proj [heads·(nope+v), r] from attn_k_b (per head
// [r, nope], the transposed nope rows) and attn_v_b (per head [v, r]).
func (s *GGUFSource) kvB(name, blk string) (*tensor.Tensor, error) {
	ml := s.cfg.MLA
	if ml == nil {
		return nil, fmt.Errorf("llamacpp: %s in a model without MLA settings", name)
	}
	h, nope, v, r := s.cfg.NumHeads, ml.QKNopeHeadDim, ml.VHeadDim, ml.KVLoRARank
	kb, err := s.floats(blk + "attn_k_b.weight")
	if err != nil {
		return nil, err
	}
	vb, err := s.floats(blk + "attn_v_b.weight")
	if err != nil {
		return nil, err
	}
	if len(kb) != h*r*nope || len(vb) != h*v*r {
		return nil, fmt.Errorf("llamacpp: %s: k_b has %d values, v_b %d, want %d and %d", name, len(kb), len(vb), h*r*nope, h*v*r)
	}
	kv := make([]float32, h*(nope+v)*r)
	for hh := 0; hh < h; hh++ {
		base := hh * (nope + v)
		for j := 0; j < r; j++ {
			for i := 0; i < nope; i++ {
				kv[(base+i)*r+j] = kb[hh*r*nope+j*nope+i]
			}
		}
		copy(kv[(base+nope)*r:(base+nope+v)*r], vb[hh*v*r:(hh+1)*v*r])
	}
	return tensor.FromFloat32(name, tensor.F32, []int{h * (nope + v), r}, kv)
}
