package calib

import (
	"runtime"

	"context"
	"fmt"
	"golang.org/x/sync/errgroup"
	"strings"

	"github.com/marlin-llm/marlin/model/arch"
	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/quant/gptq"
	"github.com/marlin-llm/marlin/quant/hadamard"
)

// Method is one quantization recipe for a projection.
type Method struct {
	// Name is a quant.Methods name: "rtn", "gptq" or "mr-gptq".
	Name string
	// Format is the target grid.
	Format quant.Format
	// GPTQ are the GPTQ options (MR-GPTQ: gptq.MROptions by default).
	GPTQ gptq.Options
	// ScaleSearch turns on RTN's clipping search (rtn only).
	ScaleSearch bool
	// Seed selects MR-GPTQ's random Hadamard signs (0: none).
	Seed uint64
}

// ProjResult is one quantized projection.
type ProjResult struct {
	Name   string
	Packed *quant.Packed
	// Rotation is the MR-GPTQ input rotation spec ("" for none); the
	// packed weight is W·Rᵀ and the activations need x → R·x.
	Rotation string
	// Err is the layer error tr((W−Q)H(W−Q)ᵀ) (0 for RTN without H).
	Err float64
	// Effective is the dequantized weight in the original basis (what the
	// forward pass runs).
	Effective []float32
}

// Meta returns the tensor Meta entries describing r.
func (r *ProjResult) Meta(method string) map[string]string {
	m := map[string]string{quant.MetaMethod: method}
	if r.Rotation != "" {
		m[hadamard.MetaInput] = r.Rotation
		m[hadamard.MetaInputPlacement] = hadamard.PlacementOnline
	}
	return m
}

// Quantize quantizes the dense weight of p with this method and Hessian h
// (unused by RTN, may be nil) and returns the result without touching p.
func (mt *Method) Quantize(ctx context.Context, p *arch.Proj, h *gptq.Hessian) (*ProjResult, error) {
	wl, ok := p.Linear().(arch.Weighted)
	if !ok {
		return nil, fmt.Errorf("calib: %s: weights are not dense (already quantized?)", p.Name())
	}
	rows, cols := wl.Dims()
	w := wl.Weight()
	res := &ProjResult{Name: p.Name()}
	name := strings.ToLower(mt.Name)
	info, err := quant.LookupMethod(name)
	if err != nil {
		return nil, fmt.Errorf("calib: unknown method %q (known: %s)", mt.Name, strings.Join(quant.MethodNames(), ", "))
	}
	if info.NeedsHessian && h == nil {
		return nil, fmt.Errorf("calib: %s: %s needs a Hessian", p.Name(), name)
	}
	switch name {
	case quant.MethodRTN:
		pk, err := quant.QuantizeContext(ctx, w, rows, cols, mt.Format, &quant.Options{Name: p.Name(), ScaleSearch: mt.ScaleSearch})
		if err != nil {
			return nil, fmt.Errorf("calib: %s: %w", p.Name(), err)
		}
		res.Packed = pk
		res.Effective = make([]float32, rows*cols)
		pk.Dequantize(res.Effective)
	case quant.MethodGPTQ:
		pk, r, err := gptq.QuantizeFormat(ctx, w, rows, cols, h.Matrix(), mt.Format, mt.GPTQ)
		if err != nil {
			return nil, fmt.Errorf("calib: %s: %w", p.Name(), err)
		}
		res.Packed, res.Err, res.Effective = pk, r.Err, r.Q
	case quant.MethodMRGPTQ:
		r, err := gptq.QuantizeMR(ctx, w, rows, cols, h.Matrix(), mt.Format, mt.Seed, mt.GPTQ)
		if err != nil {
			return nil, fmt.Errorf("calib: %s: %w", p.Name(), err)
		}
		eff, err := r.Unrotate()
		if err != nil {
			return nil, fmt.Errorf("calib: %s: %w", p.Name(), err)
		}
		res.Packed, res.Err, res.Effective, res.Rotation = r.Packed, r.Result.Err, eff, r.Rotation.Spec()
	default:
		return nil, fmt.Errorf("calib: method %q has no implementation here", name)
	}
	return res, nil
}

// Apply quantizes p and swaps its Linear for the dequantized effective
// weight (bias kept), so later forward passes see the quantized layer.
func (mt *Method) Apply(ctx context.Context, p *arch.Proj, h *gptq.Hessian) (*ProjResult, error) {
	res, err := mt.Quantize(ctx, p, h)
	if err != nil {
		return nil, err
	}
	rows, cols := p.Linear().Dims()
	var bias []float32
	if d, ok := p.Linear().(*arch.Dense); ok {
		bias = d.Bias()
	}
	d, err := arch.NewDense(rows, cols, res.Effective, bias)
	if err != nil {
		return nil, err
	}
	if err := p.Set(d); err != nil {
		return nil, err
	}
	return res, nil
}

// ApplyAll applies mt to every projection of ps (in parallel, at most
// workers at a time; ≤ 0 means GOMAXPROCS) with its Hessian from hess.
func (mt *Method) ApplyAll(ctx context.Context, ps []*arch.Proj, hess map[string]*gptq.Hessian, workers int) ([]*ProjResult, error) {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	out := make([]*ProjResult, len(ps))
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	for i, p := range ps {
		g.Go(func() error {
			r, err := mt.Apply(ctx, p, hess[p.Name()])
			out[i] = r
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}
