package stages

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/marlin-llm/marlin/kernels"
	"github.com/marlin-llm/marlin/model/arch"
	"github.com/marlin-llm/marlin/model/hfconfig"
	"github.com/marlin-llm/marlin/model/tokenizer"
	"github.com/marlin-llm/marlin/pipeline"
	"github.com/marlin-llm/marlin/quant/calib"
	"github.com/marlin-llm/marlin/quant/gptq"
	"github.com/marlin-llm/marlin/quant/hadamard"
	"github.com/marlin-llm/marlin/tensor"
)

// CalibrateConfig configures the calibrate stage: run calibration text
// through the forward pass of the upstream weights (loaded or rotated) and
// accumulate every Linear's Hessian H = 2XᵀX/n (routed experts: from the
// tokens routed to them; experts with fewer tokens than their input width
// are shrunk towards a pooled Hessian, see package quant/calib; the
// coverage report is in the calibration task's Meta).
type CalibrateConfig struct {
	// Model is the model directory holding config.json and tokenizer.json
	// (weights come from the upstream stage).
	Model string `yaml:"model" json:"model" jsonschema:"required,minLength=1,description=model dir with config.json and tokenizer.json (relative to the job file)"`
	// Text is the calibration text file.
	Text string `yaml:"text" json:"text" jsonschema:"required,minLength=1,description=calibration text (relative to the job file)"`
	// Samples is the number of windows (default 128); fewer are used when
	// the text is shorter, and the report says so.
	Samples int `yaml:"samples,omitempty" json:"samples,omitempty" jsonschema:"minimum=1,description=calibration windows (default 128)"`
	// SeqLen is the window length in tokens (default 256).
	SeqLen int `yaml:"seq_len,omitempty" json:"seq_len,omitempty" jsonschema:"minimum=2,description=tokens per window (default 256)"`
	// Precision of the Hessian accumulation: f32 (default) or f64.
	Precision string `yaml:"precision,omitempty" json:"precision,omitempty" jsonschema:"enum=f32,enum=f64,description=precision of the Hessian accumulation (default f32)"`
	// Sequential calibrates layer L on the outputs of layers < L already
	// quantized with Quant (which must match the quantize stage's
	// settings); true-sequential within each layer.
	Sequential bool `yaml:"sequential,omitempty" json:"sequential,omitempty" jsonschema:"description=calibrate layer L on the outputs of layers before L already quantized with quant (which is then required and must match the quantize stage's settings); true-sequential within each layer (default false)"`
	// Quant is the recipe sequential mode quantizes with (same schema as
	// the quantize stage's with: block).
	Quant *QuantizeConfig `yaml:"quant,omitempty" json:"quant,omitempty" jsonschema:"description=quantization recipe of sequential mode (same fields as the quantize stage's with: block)"`
}

// Validate checks the config.
func (c *CalibrateConfig) Validate() error {
	var errs pipeline.ErrorList
	if strings.TrimSpace(c.Model) == "" {
		errs = append(errs, &pipeline.FieldError{Field: "model", Err: fmt.Errorf("required")})
	}
	if strings.TrimSpace(c.Text) == "" {
		errs = append(errs, &pipeline.FieldError{Field: "text", Err: fmt.Errorf("required")})
	}
	if c.Samples < 0 {
		errs = append(errs, &pipeline.FieldError{Field: "samples", Err: fmt.Errorf("must be >= 1")})
	}
	if c.SeqLen < 0 || c.SeqLen == 1 {
		errs = append(errs, &pipeline.FieldError{Field: "seq_len", Err: fmt.Errorf("must be >= 2")})
	}
	switch c.Precision {
	case "", "f32", "f64":
	default:
		errs = append(errs, &pipeline.FieldError{Field: "precision", Err: fmt.Errorf("must be f32 or f64, got %q", c.Precision)})
	}
	if c.Sequential && c.Quant == nil {
		errs = append(errs, &pipeline.FieldError{Field: "quant", Err: fmt.Errorf("sequential mode needs the quantization recipe")})
	}
	if c.Quant != nil {
		if err := c.Quant.Validate(); err != nil {
			errs = append(errs, prefixField("quant", err))
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// CalibrateKind is the "calibrate" stage kind.
func CalibrateKind() pipeline.Kind {
	return pipeline.Kind{
		Name:      "calibrate",
		Doc:       "run calibration text through the forward pass and attach each Linear's Hessian (per routed expert: routed tokens only) to its weight; optional sequential mode",
		NewConfig: func() any { return &CalibrateConfig{Samples: 128, SeqLen: 256, Precision: "f32"} },
		New: func(cfg any) (pipeline.Stage, error) {
			c, ok := cfg.(*CalibrateConfig)
			if !ok {
				return nil, fmt.Errorf("calibrate: config is %T", cfg)
			}
			if err := c.Validate(); err != nil {
				return nil, fmt.Errorf("calibrate: %w", err)
			}
			if c.Samples == 0 {
				c.Samples = 128
			}
			if c.SeqLen == 0 {
				c.SeqLen = 256
			}
			return &calibrateStage{cfg: *c}, nil
		},
	}
}

type calibrateStage struct{ cfg CalibrateConfig }

// CalibrationKey is the key of the calibrate stage's internal task.
const CalibrationKey = "_calibration"

func (s *calibrateStage) Plan(ctx context.Context, pc *pipeline.PlanContext) ([]*pipeline.Task, error) {
	if len(pc.Inputs) == 0 {
		return nil, fmt.Errorf("calibrate: needs an upstream stage that produces tensors (load or rotate)")
	}
	ix, err := indexTensors(pc.Inputs)
	if err != nil {
		return nil, fmt.Errorf("calibrate: %w", err)
	}
	modelDir := jobPath(pc, s.cfg.Model)
	textPath := jobPath(pc, s.cfg.Text)
	fp, err := fileFingerprint(textPath, 1<<20)
	if err != nil {
		return nil, fmt.Errorf("calibrate: text: %w", err)
	}
	cfgFP, err := fileFingerprint(filepath.Join(modelDir, "config.json"), 1<<20)
	if err != nil {
		return nil, fmt.Errorf("calibrate: model: %w", err)
	}
	if cfg, err := hfconfig.Load(modelDir); err == nil {
		// Layers the config does not declare would never be calibrated
		// (arch.Build refuses them too, but only once the task runs).
		if err := cfg.CheckLayers(ix.names); err != nil {
			return nil, fmt.Errorf("calibrate: %w", err)
		}
	}
	var all []pipeline.TaskRef
	seen := map[pipeline.TaskRef]bool{}
	var est int64 = 64 << 20
	for _, n := range ix.names {
		r := ix.refs[n]
		if !seen[r] {
			seen[r] = true
			all = append(all, r)
		}
		var b int64
		fmt.Sscan(ix.metas[n][MetaBytes], &b)
		est += 2 * b
	}
	run := &pipeline.Task{
		Key: CalibrationKey, Needs: all, EstBytes: est,
		Meta:        map[string]string{MetaInternal: "true"},
		Fingerprint: fp + "; " + cfgFP,
		Run:         s.calibrate(modelDir, textPath, ix),
	}
	tasks := []*pipeline.Task{run}
	self := pipeline.TaskRef{Stage: pc.StageID, Key: CalibrationKey}
	for _, in := range pc.Inputs {
		for _, ut := range in.Tasks {
			if ut.Meta[MetaInternal] == "true" {
				continue
			}
			meta := map[string]string{}
			for k, v := range ut.Meta {
				meta[k] = v
			}
			names := []string{ut.Key}
			if l := ut.Meta[MetaTensors]; l != "" {
				names = strings.Split(l, ",")
			}
			meta[MetaHasHessian] = "none"
			for _, n := range names {
				if isLinearWeight(n) {
					meta[MetaHasHessian] = "true"
				}
			}
			ref := pipeline.TaskRef{Stage: in.ID, Key: ut.Key}
			tasks = append(tasks, &pipeline.Task{
				Key: ut.Key, Needs: []pipeline.TaskRef{ref, self}, EstBytes: 2*ut.EstBytes + 1<<20, Meta: meta,
				Run: func(ctx context.Context, env *pipeline.TaskEnv) (*pipeline.Output, error) {
					in, err := env.Input(ref)
					if err != nil {
						return nil, err
					}
					hs, err := env.Input(self)
					if err != nil {
						return nil, err
					}
					byName := map[string]*tensor.Tensor{}
					for _, h := range hs.Tensors {
						byName[h.Meta["calib.for"]] = h
					}
					out := &pipeline.Output{Meta: map[string]string{}}
					for _, t := range in.Tensors {
						c := *t
						c.Meta = map[string]string{}
						for k, v := range t.Meta {
							c.Meta[k] = v
						}
						c.Meta[MetaHasHessian] = "none"
						out.Tensors = append(out.Tensors, &c)
						if h := byName[t.Name]; h != nil {
							c.Meta[MetaHasHessian] = "true"
							out.Tensors = append(out.Tensors, h)
						} else if isLinearWeight(t.Name) {
							return nil, fmt.Errorf("calibrate: %s: the forward pass never ran this Linear", t.Name)
						}
					}
					return out, nil
				},
			})
		}
	}
	return tasks, nil
}

// isLinearWeight reports whether a tensor name is the weight of a Linear
// the forward pass runs (everything 2-D named *.weight except embeddings
// and norms; the check against the built model happens at run time).
func isLinearWeight(n string) bool {
	if !strings.HasSuffix(n, ".weight") || strings.Contains(n, "norm") || strings.Contains(n, "embed_tokens") {
		return false
	}
	return strings.Contains(n, "_proj") || strings.HasSuffix(n, ".mlp.gate.weight") || n == "lm_head.weight"
}

// upstreamSource serves the upstream tensors to arch.Build.
type upstreamSource struct {
	env *pipeline.TaskEnv
	ix  *tensorIndex
}

// Names lists the upstream tensors, so that arch.Build refuses tensors
// the model does not use.
func (u *upstreamSource) Names() []string { return u.ix.names }

func (u *upstreamSource) Tensor(name string) (*tensor.Tensor, error) {
	ref, ok := u.ix.refs[name]
	if !ok {
		return nil, fmt.Errorf("no upstream tensor %q", name)
	}
	return fetch(u.env, ref, name)
}

func (s *calibrateStage) calibrate(modelDir, textPath string, ix *tensorIndex) func(context.Context, *pipeline.TaskEnv) (*pipeline.Output, error) {
	return func(ctx context.Context, env *pipeline.TaskEnv) (*pipeline.Output, error) {
		cfg, err := hfconfig.Load(modelDir)
		if err != nil {
			return nil, fmt.Errorf("calibrate: %w", err)
		}
		if _, ok := ix.refs["lm_head.weight"]; ok {
			cfg.TieWordEmbeddings = false // the rotate stage unties lm_head
		}
		b, err := kernels.Open("auto", kernels.Options{})
		if err != nil {
			return nil, fmt.Errorf("calibrate: %w", err)
		}
		m, err := arch.Build(cfg, &upstreamSource{env: env, ix: ix}, arch.Options{Backend: b})
		if err != nil {
			return nil, fmt.Errorf("calibrate: %w", err)
		}
		tok, err := tokenizer.Load(filepath.Join(modelDir, "tokenizer.json"))
		if err != nil {
			return nil, fmt.Errorf("calibrate: %w", err)
		}
		text, err := os.ReadFile(textPath)
		if err != nil {
			return nil, fmt.Errorf("calibrate: %w", err)
		}
		ids, err := tok.Encode(string(text))
		if err != nil {
			return nil, fmt.Errorf("calibrate: tokenize %s: %w", textPath, err)
		}
		n := min(s.cfg.Samples, len(ids)/s.cfg.SeqLen)
		if n == 0 {
			return nil, fmt.Errorf("calibrate: %s has %d tokens, less than one window of %d", textPath, len(ids), s.cfg.SeqLen)
		}
		ids = ids[:n*s.cfg.SeqLen]
		prec := gptq.F32
		if s.cfg.Precision == "f64" {
			prec = gptq.F64
		}
		opts := calib.Options{Window: s.cfg.SeqLen, Precision: prec, TrueSequential: true}
		var hess map[string]*gptq.Hessian
		var rep *calib.Report
		if s.cfg.Sequential {
			hess = map[string]*gptq.Hessian{}
			qs := &quantizeStage{cfg: *s.cfg.Quant}
			rep, err = calib.Sequential(ctx, m, ids, opts, func(p *arch.Proj) bool { return p.Layer() >= 0 },
				func(ctx context.Context, ps []*arch.Proj, hs map[string]*gptq.Hessian) error {
					for _, p := range ps {
						hess[p.Name()] = hs[p.Name()]
						wmeta := map[string]string{}
						if tm := ix.metas[p.Name()+".weight"]; tm["rotation.role"] == "reader" {
							wmeta[hadamard.MetaInput] = tm["rotation.spec"]
						}
						if err := qs.applyToProj(ctx, p, hs[p.Name()], wmeta); err != nil {
							return err
						}
					}
					return nil
				})
		} else {
			hess, rep, err = calib.Collect(ctx, m, ids, opts, nil)
		}
		if err != nil {
			return nil, fmt.Errorf("calibrate: %w", err)
		}
		out := &pipeline.Output{Meta: map[string]string{}}
		for _, p := range m.Projs() {
			h := hess[p.Name()]
			if h == nil {
				continue
			}
			wn := p.Name() + ".weight"
			t := h.Tensor(wn + HessianSuffix)
			t.Meta["calib.for"] = wn
			out.Tensors = append(out.Tensors, t)
		}
		summary := map[string]any{"tokens": rep.Tokens, "windows": n, "requested_windows": s.cfg.Samples,
			"seq_len": s.cfg.SeqLen, "sequential": s.cfg.Sequential, "hessians": len(out.Tensors), "experts": rep.Experts, "router_counts": rep.RouterCounts}
		js, err := json.Marshal(summary)
		if err != nil {
			return nil, err
		}
		out.Meta["calib.report"] = string(js)
		policies := map[string]int{}
		for _, e := range rep.Experts {
			policies[e.Policy]++
		}
		if env.Log != nil {
			env.Log.Info("calibrated", "tokens", rep.Tokens, "windows", n, "hessians", len(out.Tensors), "expert_policies", fmt.Sprint(policies))
		}
		return out, nil
	}
}

// applyToProj quantizes one projection with the stage's resolved settings
// for its weight and swaps in the dequantized effective weight (sequential
// calibration). Tensors resolved to skip or a float format stay dense.
func (s *quantizeStage) applyToProj(ctx context.Context, p *arch.Proj, h *gptq.Hessian, wmeta map[string]string) error {
	name := p.Name() + ".weight"
	rq, err := s.cfg.Resolve(name)
	if err != nil {
		return err
	}
	if rq.Skip || !rq.Format.Quantized() {
		return nil
	}
	wl, ok := p.Linear().(arch.Weighted)
	if !ok {
		return fmt.Errorf("calibrate: %s is not dense", p.Name())
	}
	rows, cols := wl.Dims()
	w := wl.Weight()
	var eff []float32
	if rq.Method == MethodRTN || h == nil {
		pk, err := quantizeRTN(ctx, name, w, rows, cols, rq)
		if err != nil {
			return err
		}
		eff = make([]float32, rows*cols)
		pk.Dequantize(eff)
	} else {
		_, e, _, _, err := hessianGPTQ(ctx, name, w, rows, cols, h.Matrix(), wmeta, rq)
		if err != nil {
			return err
		}
		eff = e
	}
	var bias []float32
	if d, ok := p.Linear().(*arch.Dense); ok {
		bias = d.Bias()
	}
	d, err := arch.NewDense(rows, cols, eff, bias)
	if err != nil {
		return err
	}
	return p.Set(d)
}

// jobPath resolves a config path against the job file's directory.
func jobPath(pc *pipeline.PlanContext, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(pc.JobDir, p)
}
