package stages

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/marlin-llm/marlin/export/llamacpp"
	"github.com/marlin-llm/marlin/model/arch"
	"github.com/marlin-llm/marlin/pipeline"
	"github.com/marlin-llm/marlin/quant/bpw"
	"github.com/marlin-llm/marlin/quant/calib"
	"github.com/marlin-llm/marlin/quant/gptq"
	"github.com/marlin-llm/marlin/tensor"
)

// bpwKey is the key of the target_bpw allocation task; metaBPW is its
// output Meta key (the bpw.Result as JSON).
const (
	bpwKey  = "quantize-bpw"
	metaBPW = "quant.bpw"
)

// bpwAllocation is the target_bpw allocation task's reference and, once a
// task has read it (loadBPW), its result.
type bpwAllocation struct {
	ref pipeline.TaskRef
	res *bpw.Result
}

// bpwPlanned reports whether the target_bpw allocation applies.
func (s *quantizeStage) bpwPlanned() bool { return s.cfg.TargetBPW > 0 }

// loadBPW reads the allocation task's result (once per run) and makes its
// formats the per-tensor default formats. A no-op without target_bpw.
// Every task that resolves formats at run time calls it first: the lock
// orders the one write before all their reads.
func (s *quantizeStage) loadBPW(env *pipeline.TaskEnv) error {
	if !s.bpwPlanned() {
		return nil
	}
	s.bpwMu.Lock()
	defer s.bpwMu.Unlock()
	if s.bpw.res != nil {
		return nil
	}
	o, err := env.Input(s.bpw.ref)
	if err != nil {
		return fmt.Errorf("target_bpw: %w", err)
	}
	res, err := bpwResultOf(o.Meta)
	if err != nil {
		return err
	}
	s.bpw.res = res
	s.cfg.recipeFormats = res.Formats
	return nil
}

func bpwResultOf(meta map[string]string) (*bpw.Result, error) {
	js, ok := meta[metaBPW]
	if !ok {
		return nil, errors.New("target_bpw: the allocation task's output has no result")
	}
	var r bpw.Result
	if err := json.Unmarshal([]byte(js), &r); err != nil {
		return nil, fmt.Errorf("target_bpw: %w", err)
	}
	return &r, nil
}

// bpwGroup is the group of a tensor in the allocation: its llama.cpp name
// (routed experts stacked into one GGUF tensor share a type), else its
// own name.
func bpwGroup(name string) string {
	if g, _, ok := llamacpp.GGUFName(name); ok {
		return g
	}
	return name
}

// runBPW is the allocation task: one float forward pass over the
// calibration windows, layer by layer (each layer's weights loaded in
// turn), taking each Linear's Hessian diagonal as its importance; every
// quantized 2-D tensor's candidates are predicted (bpw.Planner), and the
// formats chosen for target_bpw.
func (lp *layerPlan) runBPW() func(context.Context, *pipeline.TaskEnv) (*pipeline.Output, error) {
	return func(ctx context.Context, env *pipeline.TaskEnv) (*pipeline.Output, error) {
		fail := func(err error) (*pipeline.Output, error) { return nil, fmt.Errorf("target_bpw: %w", err) }
		c := lp.s.cfg
		pl, err := bpw.NewPlanner(bpw.PlannerOptions{Candidates: c.BPWTypes})
		if err != nil {
			return fail(err)
		}
		// Which tensors the allocation chooses for: 2-D, quantized, and
		// no rule setting their format (those count at that format).
		type entry struct {
			choose bool
			format string
		}
		entries := map[string]entry{}
		for _, n := range lp.ix.names {
			sh, ok := taskShape(lp.ix.metas[n])
			if ok && len(sh) != 2 {
				continue
			}
			rq, err := c.Resolve(n)
			if err != nil {
				return fail(err)
			}
			if rq.Skip || !rq.Format.Quantized() {
				continue
			}
			if rq.Rule >= 0 && c.Rules[rq.Rule].Format != "" {
				entries[n] = entry{format: rq.Format.Name}
				continue
			}
			entries[n] = entry{choose: true}
		}
		src := &upstreamTensors{env: env, ix: lp.ix}
		add := func(ctx context.Context, name string, diag []float64) error {
			e, ok := entries[name]
			if !ok {
				return nil
			}
			delete(entries, name)
			t, err := src.Tensor(name)
			if err != nil {
				return err
			}
			if len(t.Shape) != 2 {
				return nil
			}
			w, err := tensor.ToFloat32(t)
			if err != nil {
				return err
			}
			if !e.choose {
				return pl.AddFixed(name, bpwGroup(name), t.Shape[0], t.Shape[1], e.format)
			}
			return pl.Add(ctx, name, bpwGroup(name), w, t.Shape[0], t.Shape[1], diag)
		}
		a, err := lp.embed(env)
		if err != nil {
			return fail(err)
		}
		b, err := lp.openBackend()
		if err != nil {
			return fail(err)
		}
		for l := 0; l < lp.cfg.NumLayers; l++ {
			ly, err := arch.BuildLayer(lp.cfg, src, l, arch.Options{Backend: b})
			if err != nil {
				return fail(err)
			}
			fn := func(ctx context.Context, ps []*arch.Proj, hess map[string]*gptq.Hessian) error {
				for _, p := range ps {
					var diag []float64
					if h := hess[p.Name()]; h != nil {
						diag = h.Diag()
					} else {
						// an expert no token reached: plain squared error
						_, cols := p.Linear().Dims()
						diag = make([]float64, cols)
						for i := range diag {
							diag[i] = 1
						}
					}
					if err := add(ctx, p.Name()+".weight", diag); err != nil {
						return err
					}
				}
				return nil
			}
			opts := a.opts(lp.prec)
			opts.AllExperts = lp.allExperts
			opts.ShrinkExperts = lp.shrinkExperts
			if _, err := calib.Layer(ctx, ly, a.h, a.n, opts, nil, fn); err != nil {
				return fail(err)
			}
			if err := calib.Advance(ctx, ly, a.h, a.n, opts); err != nil {
				return fail(err)
			}
			if env.Progress != nil {
				env.Progress(int64(l+1), int64(lp.cfg.NumLayers))
			}
		}
		a = nil
		// Tensors no calibrated Linear reads (embeddings, lm_head): the
		// planner's fixed format.
		for _, n := range lp.ix.names {
			if _, ok := entries[n]; ok {
				if err := add(ctx, n, nil); err != nil {
					return fail(err)
				}
			}
		}
		res, err := pl.Allocate(c.TargetBPW)
		if err != nil {
			return fail(err)
		}
		js, err := json.Marshal(res)
		if err != nil {
			return fail(err)
		}
		if env.Log != nil {
			env.Log.Info("target_bpw: formats chosen", "target", c.TargetBPW, "bpw", fmt.Sprintf("%.4f", res.BPW),
				"predicted_error", fmt.Sprintf("%.5g", res.Err), "groups", len(res.Groups))
		}
		return &pipeline.Output{Meta: map[string]string{metaBPW: string(js)}, Stats: map[string]float64{"bpw": res.BPW}}, nil
	}
}

// validateBPW checks target_bpw and bpw_types.
func (c *QuantizeConfig) validateBPW() []error {
	var errs []error
	if c.TargetBPW < 0 || math.IsNaN(c.TargetBPW) || math.IsInf(c.TargetBPW, 0) {
		errs = append(errs, &pipeline.FieldError{Field: "target_bpw", Err: fmt.Errorf("must be > 0, got %v", c.TargetBPW)})
	}
	if len(c.BPWTypes) > 0 && c.TargetBPW == 0 {
		errs = append(errs, &pipeline.FieldError{Field: "bpw_types", Err: errors.New("needs target_bpw")})
	}
	if len(c.BPWTypes) > 0 {
		if _, err := bpw.NewPlanner(bpw.PlannerOptions{Candidates: c.BPWTypes}); err != nil {
			errs = append(errs, &pipeline.FieldError{Field: "bpw_types", Err: err})
		}
	}
	if c.TargetBPW > 0 && c.GGUFRecipe != "" {
		errs = append(errs, &pipeline.FieldError{Field: "target_bpw", Err: errors.New("gguf_recipe and target_bpw both choose the formats: set one")})
	}
	return errs
}
