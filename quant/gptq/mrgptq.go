package gptq

import (
	"context"
	"fmt"

	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/quant/hadamard"
)

// MROptions returns the MR-GPTQ settings of Egiazarian et al. 2025
// ("Bridging the gap between promise and performance for microscaling
// FP4"): act-order with static groups (columns are visited by decreasing
// Hessian diagonal, but groups stay contiguous so the FP4 kernels need no
// g_idx) and a per-group scale search over clipping ratios, on top of the
// block rotation QuantizeMR applies.
func MROptions() Options {
	return Options{ActOrder: true, StaticGroups: true, ClipRatios: DefaultClipRatios()}
}

// MRResult is an MR-GPTQ quantized layer.
type MRResult struct {
	// Packed holds the rotated weight W·Rᵀ quantized (Meta should record
	// Rotation.Spec() under hadamard.MetaInput).
	Packed *quant.Packed
	// Result is the GPTQ result in the rotated basis (Q = dequantized
	// W·Rᵀ; Err is measured with R·H·Rᵀ, which equals the error of Q·R in
	// the original basis since R is orthogonal).
	Result *Result
	// Rotation is R: the activations must be rotated x → R·x (online), or
	// the dequantized weight un-rotated (Q·R) where that is not possible.
	Rotation *hadamard.Rotation
}

// QuantizeMR runs MR-GPTQ on the float32 weight w (rows×cols) with the
// Hessian h of its unrotated inputs: the input dimension is rotated by a
// block-diagonal Hadamard transform whose block is the format's group size
// (seed selects optional random signs, 0 for none), the Hessian is
// conjugated accordingly (H' = R·H·Rᵀ, no re-calibration needed) and GPTQ
// runs on the rotated weight with opt (use MROptions for the paper's
// settings).
func QuantizeMR(ctx context.Context, w []float32, rows, cols int, h []float64, f quant.Format, seed uint64, opt Options) (*MRResult, error) {
	if len(w) != rows*cols || rows <= 0 || cols <= 0 {
		return nil, fmt.Errorf("gptq: mr-gptq: weight has %d values for %dx%d", len(w), rows, cols)
	}
	rot, err := hadamard.New(cols, f.Group(cols), seed)
	if err != nil {
		return nil, fmt.Errorf("gptq: mr-gptq: %w", err)
	}
	wr := append([]float32(nil), w...)
	if err := rot.Apply(wr, rows); err != nil {
		return nil, fmt.Errorf("gptq: mr-gptq: %w", err)
	}
	hr, err := rot.ConjugateSym(h)
	if err != nil {
		return nil, fmt.Errorf("gptq: mr-gptq: %w", err)
	}
	p, res, err := QuantizeFormat(ctx, wr, rows, cols, hr, f, opt)
	if err != nil {
		return nil, fmt.Errorf("gptq: mr-gptq: %w", err)
	}
	return &MRResult{Packed: p, Result: res, Rotation: rot}, nil
}

// Unrotate returns the effective weight of an MR-GPTQ result in the
// original basis, Q·R (rows×cols), for runtimes that do not rotate
// activations online.
func (m *MRResult) Unrotate() ([]float32, error) {
	q := append([]float32(nil), m.Result.Q...)
	if err := m.Rotation.ApplyT(q, m.Result.Rows); err != nil {
		return nil, err
	}
	return q, nil
}
