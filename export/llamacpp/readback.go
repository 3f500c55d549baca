package llamacpp

import (
	"fmt"
	"math"

	"github.com/marlin-llm/marlin/model/gguf"
	"github.com/marlin-llm/marlin/tensor"
)

// ReadBack serves the Hugging Face tensors of a GGUF file this package
// wrote, dequantized to F32: the inverse of the plan's name mapping,
// expert stacking and MLA k_b/v_b split. It lets marlin's own forward pass
// run exactly the weights llama.cpp runs (see TestGoForwardMatchesLlamaCpp).
type ReadBack struct {
	f     *gguf.File
	plan  *Plan
	bySrc map[string][]int // HF name → planned tensors using it
}

// NewReadBack pairs an opened GGUF file with the plan it was written from.
func NewReadBack(f *gguf.File, p *Plan) *ReadBack {
	rb := &ReadBack{f: f, plan: p, bySrc: map[string][]int{}}
	for i, t := range p.Tensors {
		for _, s := range t.Sources {
			rb.bySrc[s] = append(rb.bySrc[s], i)
		}
	}
	return rb
}

// values dequantizes planned tensor i from the file.
func (rb *ReadBack) values(i int) ([]float32, error) {
	t := rb.plan.Tensors[i]
	return rb.f.Float32(t.Name)
}

// Tensor implements arch.TensorSource: the named Hugging Face tensor as
// F32 with its original shape.
func (rb *ReadBack) Tensor(name string) (*tensor.Tensor, error) {
	idx, ok := rb.bySrc[name]
	if !ok {
		if name == "lm_head.weight" {
			// Tied embeddings: llama.cpp uses token_embd.
			return rb.Tensor("model.embed_tokens.weight")
		}
		return nil, fmt.Errorf("llamacpp: readback: no GGUF tensor holds %q", name)
	}
	t := rb.plan.Tensors[idx[0]]
	var out []float32
	var shape []int
	switch t.op {
	case opCopy:
		v, err := rb.values(idx[0])
		if err != nil {
			return nil, err
		}
		out, shape = v, t.SourceShape()
	case opNegExp:
		v, err := rb.values(idx[0])
		if err != nil {
			return nil, err
		}
		for i, a := range v {
			v[i] = float32(math.Log(-float64(a)))
		}
		out, shape = v, t.SourceShape()
	case opStack:
		v, err := rb.values(idx[0])
		if err != nil {
			return nil, err
		}
		e := -1
		for j, s := range t.Sources {
			if s == name {
				e = j
			}
		}
		per := t.Elements() / len(t.Sources)
		out, shape = v[e*per:(e+1)*per], reverse(t.Dims[:len(t.Dims)-1])
	case opKB, opVB:
		if len(idx) != 2 {
			return nil, fmt.Errorf("llamacpp: readback: %s needs both k_b and v_b", name)
		}
		kb, err := rb.values(idx[0])
		if err != nil {
			return nil, err
		}
		vb, err := rb.values(idx[1])
		if err != nil {
			return nil, err
		}
		if rb.plan.Tensors[idx[0]].op == opVB {
			kb, vb = vb, kb
		}
		h, nope, v := t.heads, t.nope, t.v
		r := len(kb) / (h * nope)
		out = make([]float32, h*(nope+v)*r)
		for hh := 0; hh < h; hh++ {
			base := hh * (nope + v)
			for j := 0; j < r; j++ {
				for i := 0; i < nope; i++ {
					out[(base+i)*r+j] = kb[(hh*r+j)*nope+i]
				}
			}
			copy(out[(base+nope)*r:(base+nope+v)*r], vb[hh*v*r:(hh+1)*v*r])
		}
		shape = []int{h * (nope + v), r}
	}
	return tensor.FromFloat32(name, tensor.F32, shape, out)
}
