// Package qmodel runs a marlin native packed checkpoint (model/native) as
// an arch.Model: every packed projection becomes an arch.Quantized Linear,
// so inference reads the 4-bit (or 2/3/8-bit) codes through the backend's
// fused dequant-GEMM/GEMV and never holds an F32 copy of those weights.
// Tensors kept in BF16/F16/F32 (norms, embeddings, a BF16 lm_head) are
// converted to F32 as the default arch.Load does.
//
// The same loader with Options.Dequantize builds the F32 model of the
// dequantized weights, which is the reference the quantized path must
// reproduce (validate, benchmark).
package qmodel

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/marlin-llm/marlin/kernels"
	"github.com/marlin-llm/marlin/model/arch"
	"github.com/marlin-llm/marlin/model/hfconfig"
	"github.com/marlin-llm/marlin/model/native"
	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/quant/hadamard"
	"github.com/marlin-llm/marlin/tensor"
)

// Options configures Load.
type Options struct {
	// Backend runs the math; nil opens kernels "auto".
	Backend kernels.Backend
	// Dequantize builds dense F32 weights from the packed ones instead of
	// running the packed weights through DequantGEMM.
	Dequantize bool
}

// Model is a loaded packed model. Close releases the mapped checkpoint.
type Model struct {
	*arch.Model
	nat *native.Model
	// Packed counts the projections that run from packed weights.
	Packed int
	// Formats counts packed projections per format name.
	Formats map[string]int
}

// Close releases the checkpoint files; the model must not be used after.
func (m *Model) Close() error {
	if m.nat == nil {
		return nil
	}
	err := m.nat.Close()
	m.nat = nil
	return err
}

// Load opens the native checkpoint in dir (with its config.json, which
// `pack` writes when given `model:`) and builds the model.
func Load(dir string, opts Options) (*Model, error) {
	cfg, err := hfconfig.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("qmodel: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, native.ManifestFile)); err != nil {
		return nil, fmt.Errorf("qmodel: %s is not a marlin native packed checkpoint: %w", dir, err)
	}
	nat, err := native.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("qmodel: %w", err)
	}
	m, err := build(cfg, nat, opts)
	if err != nil {
		nat.Close()
		return nil, fmt.Errorf("qmodel: %s: %w", dir, err)
	}
	return m, nil
}

// source feeds arch.Build: packed weights appear as zero BF16 placeholders
// of their logical shape (all sharing one zero buffer; they are replaced
// before the model runs), except embeddings, which are dequantized since
// a lookup is no GEMM.
type source struct {
	nat   *native.Model
	zero  []byte
	embed string // the embeddings' name (hfconfig.Config.EmbedName)
}

// Names lists the checkpoint's logical tensors, so that arch.Build refuses
// a packed model holding tensors its config.json does not use.
func (s *source) Names() []string { return s.nat.Names() }

func (s *source) Tensor(name string) (*tensor.Tensor, error) {
	if !s.nat.IsPacked(name) {
		return s.nat.Tensor(name)
	}
	p, err := s.nat.Packed(name)
	if err != nil {
		return nil, err
	}
	if name == s.embed {
		v := make([]float32, p.Rows*p.Cols)
		p.Dequantize(v)
		return tensor.FromFloat32(name, tensor.F32, []int{p.Rows, p.Cols}, v)
	}
	n := 2 * p.Rows * p.Cols
	if len(s.zero) < n {
		s.zero = make([]byte, n)
	}
	return &tensor.Tensor{Name: name, DType: tensor.BF16, Shape: []int{p.Rows, p.Cols}, Data: s.zero[:n]}, nil
}

func build(cfg *hfconfig.Config, nat *native.Model, opts Options) (*Model, error) {
	src := &source{nat: nat, embed: cfg.EmbedName()}
	am, err := arch.Build(cfg, src, arch.Options{Backend: opts.Backend, Lazy: true})
	if err != nil {
		return nil, err
	}
	m := &Model{Model: am, nat: nat, Formats: map[string]int{}}
	for _, p := range am.Projs() {
		name := p.Name() + ".weight"
		var lin arch.Linear
		if nat.IsPacked(name) {
			t, err := nat.Tensor(name)
			if err != nil {
				return nil, err
			}
			pk, err := nat.Packed(name)
			if err != nil {
				return nil, err
			}
			if opts.Dequantize {
				lin, err = dense(pk)
			} else {
				lin, err = arch.NewQuantized(pk, nil)
				m.Packed++
				m.Formats[pk.Format.String()]++
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			if t.Meta[hadamard.MetaInputPlacement] == hadamard.PlacementOnline {
				// MR-GPTQ codes in a rotated input basis (W·Rᵀ): rotate
				// the activations at run time, x → R·x
				r, err := hadamard.Parse(t.Meta[hadamard.MetaInput], pk.Cols)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", name, err)
				}
				lin = &onlineRotated{Linear: lin, r: r}
			}
		} else if lz, ok := p.Linear().(*arch.Lazy); ok {
			out, in := lz.Dims()
			w := lz.Weight()
			if w == nil {
				return nil, fmt.Errorf("%s: weight holds non-finite values", name)
			}
			if lin, err = arch.NewDense(out, in, w, nil); err != nil {
				return nil, err
			}
		} else {
			continue
		}
		if err := p.Set(lin); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func dense(p *quant.Packed) (*arch.Dense, error) {
	w := make([]float32, p.Rows*p.Cols)
	p.Dequantize(w)
	return arch.NewDense(p.Rows, p.Cols, w, nil)
}

// onlineRotated applies an input rotation R to the activations before a
// Linear whose weights were stored as W·Rᵀ (MR-GPTQ's o_proj/down_proj):
// per row, (R·x)ᵀ·(W·Rᵀ)ᵀ = xᵀ·Rᵀ·R·Wᵀ = xᵀ·Wᵀ since R is orthogonal.
type onlineRotated struct {
	arch.Linear
	r *hadamard.Rotation
}

// Base returns the wrapped Linear.
func (o *onlineRotated) Base() arch.Linear { return o.Linear }

// Forward implements arch.Linear.
func (o *onlineRotated) Forward(b kernels.Backend, x []float32, rows int, y []float32) error {
	_, in := o.Dims()
	xr := append([]float32(nil), x[:rows*in]...)
	if err := o.r.Apply(xr, rows); err != nil {
		return err
	}
	return o.Linear.Forward(b, xr, rows, y)
}
