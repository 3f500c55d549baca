package stages

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/marlin-llm/marlin/pipeline"
	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/quant/gptq"
	"github.com/marlin-llm/marlin/quant/hadamard"
	"github.com/marlin-llm/marlin/tensor"
)

// This file is the quantize stage's hook for the Hessian-based methods
// (gptq, mr-gptq). The layer tasks (layerwise.go) hand each Linear's weight
// and its Hessian (as a tensor "<weight>.hessian", Meta gptq.kind =
// hessian, never stored) to quantizeWithHessian; MetaHasHessian marks what
// has one ("none": not a Linear, so RTN).

// checkMethodPlan fails planning when a Hessian method has no calibrated
// input.
func checkMethodPlan(rq ResolvedQuant, upstream *pipeline.Task) error {
	if rq.Skip || !rq.needsHessian() {
		return nil
	}
	if sh, ok := taskShape(upstream.Meta); ok && len(sh) != 2 {
		return nil // only 2-D tensors are quantized
	}
	switch upstream.Meta[MetaHasHessian] {
	case "true", "none":
		return nil
	default:
		return fmt.Errorf("method %s needs a Hessian: put a calibrate stage between load/rotate and quantize (this tensor's upstream task has none)", rq.Method)
	}
}

// gptqOptions turns resolved settings into GPTQ options. Groups are always
// static (contiguous, no g_idx) so every exporter can store the result
// (GGML blocks are contiguous either way: without act-order they are
// fitted as GPTQ reaches them, quant/gptq.quantizeGGML);
// mr-gptq implies act-order and scale search (Egiazarian et al. 2025).
func gptqOptions(rq ResolvedQuant) gptq.Options {
	o := gptq.Options{ActOrder: rq.ActOrder, StaticGroups: true, PercDamp: rq.Damp, BlockSize: rq.BlockSize, Refit: rq.Refit, BlockActOrder: rq.BlockAct}
	if rq.Method == MethodMRGPTQ {
		o.ActOrder = true
		if !rq.ScaleSearch && len(rq.ClipRatios) == 0 {
			o.ClipRatios = gptq.DefaultClipRatios()
		}
	}
	if rq.ScaleSearch || len(rq.ClipRatios) > 0 {
		o.ClipRatios = gptq.DefaultClipRatios()
		if len(rq.ClipRatios) > 0 {
			o.ClipRatios = o.ClipRatios[:0]
			for _, r := range rq.ClipRatios {
				o.ClipRatios = append(o.ClipRatios, float64(r))
			}
		}
	}
	if o.PercDamp == 0 {
		o.PercDamp = gptq.DefaultPercDamp
	}
	return o
}

// hessianGPTQ runs gptq or mr-gptq on w (rows×cols) with Hessian h. For
// mr-gptq the input is rotated with the format's group as block unless the
// weight's input is already rotated (Meta hadamard.MetaInput, e.g. by the
// rotate stage). It returns the packed result, the effective dequantized
// weight in the weight's own basis (what a forward pass must use), the
// Meta to record and the weights in the packed tensor's basis (w, or W·Rᵀ).
func hessianGPTQ(ctx context.Context, name string, w []float32, rows, cols int, h []float64, wmeta map[string]string, rq ResolvedQuant) (*quant.Packed, []float32, map[string]string, []float32, error) {
	opt := gptqOptions(rq)
	meta := map[string]string{quant.MetaMethod: rq.Method, gptq.MetaActOrder: strconv.FormatBool(opt.ActOrder),
		gptq.MetaDamp: strconv.FormatFloat(opt.PercDamp, 'g', -1, 64), gptq.MetaStaticGroups: "true"}
	if len(opt.ClipRatios) > 0 {
		meta[metaScaleSearch] = "true"
	}
	if rq.Format.Elem == quant.ElemGGML && !opt.ActOrder {
		meta[gptq.MetaStaticGroups] = "false" // GGML blocks fitted as GPTQ reaches them (contiguous all the same)
	}
	if rq.Format.Elem == quant.ElemGGML && opt.BlockActOrder && !opt.ActOrder {
		meta[gptq.MetaActOrder] = "block"
	}
	if rq.Format.Elem == quant.ElemGGML && opt.Refit {
		meta[gptq.MetaRefit] = "true"
	}
	if rq.Method == MethodMRGPTQ && wmeta[hadamard.MetaInput] == "" {
		r, err := gptq.QuantizeMR(ctx, w, rows, cols, h, rq.Format, 0, opt)
		if err != nil {
			return nil, nil, nil, nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		eff, err := r.Unrotate()
		if err != nil {
			return nil, nil, nil, nil, err
		}
		meta[hadamard.MetaInput] = r.Rotation.Spec()
		meta[hadamard.MetaInputPlacement] = hadamard.PlacementOnline
		meta[gptq.MetaErr] = strconv.FormatFloat(r.Result.Err, 'g', 8, 64)
		wr := append([]float32(nil), w...)
		if err := r.Rotation.Apply(wr, rows); err != nil {
			return nil, nil, nil, nil, err
		}
		return r.Packed, eff, meta, wr, nil
	}
	p, res, err := gptq.QuantizeFormat(ctx, w, rows, cols, h, rq.Format, opt)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("tensor %q: %w", name, err)
	}
	meta[gptq.MetaErr] = strconv.FormatFloat(res.Err, 'g', 8, 64)
	return p, res.Q, meta, w, nil
}

// errNoLinear tells the caller to fall back to RTN: the tensor is not the
// weight of a Linear (an embedding), so it has no Hessian by design.
var errNoLinear = errors.New("not a Linear weight: no Hessian")

// quantizeWithHessian is the quantize stage's gptq/mr-gptq path for one
// weight tensor t with its Hessian hs.
func quantizeWithHessian(ctx context.Context, t *tensor.Tensor, hs *gptq.Hessian, rq ResolvedQuant) ([]*tensor.Tensor, *quant.Report, error) {
	if hs == nil && t.Meta[MetaHasHessian] == "none" {
		return nil, nil, errNoLinear
	}
	if hs == nil {
		return nil, nil, fmt.Errorf("tensor %q: method %s needs a Hessian and calibration produced none for it", t.Name, rq.Method)
	}
	if len(t.Shape) != 2 {
		return nil, nil, fmt.Errorf("tensor %q: method %s needs a 2-D weight, shape %v", t.Name, rq.Method, t.Shape)
	}
	rows, cols := t.Shape[0], t.Shape[1]
	if hs.Cols() != cols {
		return nil, nil, fmt.Errorf("tensor %q: Hessian is %dx%d for %d input columns", t.Name, hs.Cols(), hs.Cols(), cols)
	}
	w, err := tensor.ToFloat32(t)
	if err != nil {
		return nil, nil, err
	}
	p, _, meta, basis, err := hessianGPTQ(ctx, t.Name, w, rows, cols, hs.Matrix(), t.Meta, rq)
	if err != nil {
		return nil, nil, err
	}
	rep, err := quant.Measure(t.Name, basis, p)
	if err != nil {
		return nil, nil, err
	}
	meta[quant.MetaShape] = quant.FormatShape(t.Shape)
	meta["quant.source_dtype"] = t.DType.String()
	meta[gptq.MetaSamples] = strconv.FormatInt(hs.Samples(), 10)
	for k, v := range t.Meta {
		if _, ok := meta[k]; !ok && (len(k) > 9 && k[:9] == "rotation.") {
			meta[k] = v
		}
	}
	return p.ToTensors(t.Name, meta), &rep, nil
}
