package arch

import (
	"context"
	"fmt"
	"slices"

	"github.com/marlin-llm/marlin/kernels"
	"github.com/marlin-llm/marlin/model/hfconfig"
	"github.com/marlin-llm/marlin/tensor"
)

// Layer is one decoder layer built on its own, without the rest of the
// model: what a layer-streamed pass (calibration, quantization, validation
// of a model larger than memory) holds at a time. Its weights are F32
// copies (or views, with Options.Lazy) of the tensors its source served.
type Layer struct {
	cfg   *hfconfig.Config
	b     kernels.Backend
	d     *DecoderLayer
	projs []*Proj
}

// BuildLayer builds decoder layer l of the model cfg describes from src,
// which needs to serve only that layer's tensors ("model.layers.<l>.*").
func BuildLayer(cfg *hfconfig.Config, src TensorSource, l int, opts Options) (*Layer, error) {
	if l < 0 || l >= cfg.NumLayers {
		return nil, fmt.Errorf("arch: layer %d of %d", l, cfg.NumLayers)
	}
	bld, b, err := builderFor(cfg, opts)
	if err != nil {
		return nil, err
	}
	w := &weights{src: src, lazy: opts.Lazy, used: map[string]bool{}}
	d, err := bld(cfg, w, l)
	if err == nil {
		err = w.err()
	}
	if err != nil {
		return nil, fmt.Errorf("arch: %s layer %d: %w", cfg.ModelType, l, err)
	}
	return &Layer{cfg: cfg, b: b, d: d, projs: d.projs()}, nil
}

// Index is the layer's index in the model.
func (ly *Layer) Index() int { return ly.d.index }

// Hidden is the width of the residual stream the layer reads and writes.
func (ly *Layer) Hidden() int { return ly.cfg.HiddenSize }

// Backend returns the backend the layer runs on.
func (ly *Layer) Backend() kernels.Backend { return ly.b }

// Projs lists the layer's Linear slots in execution order (the same order
// as Model.LayerProjs).
func (ly *Layer) Projs() []*Proj { return append([]*Proj(nil), ly.projs...) }

// Forward runs the layer on the hidden states h (tokens×hidden) in place,
// exactly as Model.Layer runs the same layer of a whole model.
func (ly *Layer) Forward(ctx context.Context, h []float32, batch Batch, hooks *Hooks) error {
	if batch.Seqs <= 0 || batch.Len <= 0 || len(h) != batch.Tokens()*ly.cfg.HiddenSize {
		return fmt.Errorf("arch: hidden states of %d floats for %d×%d tokens of %d", len(h), batch.Seqs, batch.Len, ly.cfg.HiddenSize)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	rc := &run{ctx: ctx, b: ly.b, hooks: hooks, batch: batch, hidden: ly.cfg.HiddenSize, theta: ly.cfg.Rope.Theta, flops: hooks.flops(),
		inputsOnly: hooks != nil && hooks.InputsOnly}
	if err := ly.d.forward(rc, h); err != nil {
		return fmt.Errorf("arch: layer %d: %w", ly.d.index, err)
	}
	return nil
}

// DecoderLayer returns decoder layer l of the model as a Layer sharing the
// model's weights (nil when l is out of range).
func (m *Model) DecoderLayer(l int) *Layer {
	if l < 0 || l >= len(m.layers) {
		return nil
	}
	d := m.layers[l]
	return &Layer{cfg: m.cfg, b: m.b, d: d, projs: d.projs()}
}

// ProjShape is one projection of a decoder layer as the shapes of its
// checkpoint's tensors describe it: what planning memory needs (which
// projections share an input, hence a Hessian) without reading a weight.
type ProjShape struct {
	Name     string // checkpoint name without ".weight"
	InputKey string // see Proj.InputKey
	Out, In  int
	Expert   int // routed expert index, -1 outside routed experts
}

// LayerProjShapes lists the projections of decoder layer l in execution
// order, as BuildLayer would build them, from tensor shapes alone: shape
// returns a tensor's shape, or false when the checkpoint lacks it. The
// same builder runs, on weights without data, so a missing or misshapen
// tensor fails as it would in BuildLayer.
func LayerProjShapes(cfg *hfconfig.Config, shape func(name string) ([]int, bool), l int) ([]ProjShape, error) {
	if l < 0 || l >= cfg.NumLayers {
		return nil, fmt.Errorf("arch: layer %d of %d", l, cfg.NumLayers)
	}
	bld, err := builderOf(cfg)
	if err != nil {
		return nil, err
	}
	w := &weights{src: shapeSource(shape), shapesOnly: true, used: map[string]bool{}}
	d, err := bld(cfg, w, l)
	if err == nil {
		err = w.err()
	}
	if err != nil {
		return nil, fmt.Errorf("arch: %s layer %d: %w", cfg.ModelType, l, err)
	}
	projs := d.projs()
	out := make([]ProjShape, len(projs))
	for i, p := range projs {
		o, in := p.lin.Dims()
		out[i] = ProjShape{Name: p.name, InputKey: p.InputKey(), Out: o, In: in, Expert: p.expert}
	}
	return out, nil
}

// shapeSource serves tensors without data, of the shapes a function gives.
type shapeSource func(name string) ([]int, bool)

// Tensor implements TensorSource.
func (s shapeSource) Tensor(name string) (*tensor.Tensor, error) {
	sh, ok := s(name)
	if !ok {
		return nil, fmt.Errorf("missing tensor %s", name)
	}
	return &tensor.Tensor{Name: name, DType: tensor.F32, Shape: slices.Clone(sh)}, nil
}
