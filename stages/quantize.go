package stages

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/marlin-llm/marlin/export/llamacpp"
	"github.com/marlin-llm/marlin/pipeline"
	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/quant/bpw"
	"github.com/marlin-llm/marlin/quant/calib"
	"github.com/marlin-llm/marlin/quant/gptq"
	"github.com/marlin-llm/marlin/tensor"
)

// QuantSpec is one set of quantization settings: the `default:` block of the
// quantize stage and the settings part of each rule. In a rule, only the
// fields it sets override the default.
type QuantSpec struct {
	// Format is a quant format name (quant.Names: fp4, mxfp4, nvfp4, int4,
	// int4_asym, int3, int2, nf4, nf3, fp8_e4m3, fp8_e5m2, int8, bf16, f16;
	// the GGML block types of the GGUF-type registry, ggml.Types with
	// Format set, which pack gguf writes unchanged) or "skip"
	// (keep the tensor exactly as it came).
	// Its schema description lists quant.Formats (quantize_schema.go).
	Format string `yaml:"format,omitempty" json:"format,omitempty"`
	// GroupSize overrides the format's group size (0: one group per row).
	// MXFP4 (32) and NVFP4 (16) have fixed block sizes.
	GroupSize *int `yaml:"group_size,omitempty" json:"group_size,omitempty" jsonschema:"minimum=0,description=weights per scale group along the input dim (0: per row)"`
	// Scale overrides the scale encoding of formats with a float scale.
	Scale string `yaml:"scale,omitempty" json:"scale,omitempty" jsonschema:"enum=f16,enum=bf16,enum=f32,description=scale encoding override for fp4/int/nf/fp8 formats"`
	// Method is rtn (round to nearest), gptq or mr-gptq.
	// Its schema enum and description come from quant.Methods
	// (quantize_schema.go).
	Method string `yaml:"method,omitempty" json:"method,omitempty"`
	// ScaleSearch searches clipping ratios per group for the least MSE.
	ScaleSearch *bool `yaml:"scale_search,omitempty" json:"scale_search,omitempty" jsonschema:"description=search clipping ratios per group for the least squared error (default false; mr-gptq always searches)"`
	// ClipRatios overrides the scale-search grid (each in (0, 1]).
	ClipRatios []float32 `yaml:"clip_ratios,omitempty" json:"clip_ratios,omitempty"`
	// ActOrder (GPTQ) quantizes columns in decreasing Hessian-diagonal order;
	// groups stay static and contiguous (no g_idx).
	ActOrder *bool `yaml:"actorder,omitempty" json:"actorder,omitempty" jsonschema:"description=gptq: quantize columns in decreasing Hessian-diagonal order; groups stay contiguous (default false; mr-gptq always does)"`
	// Damp (GPTQ) is the relative dampening added to the Hessian diagonal.
	Damp *float64 `yaml:"damp,omitempty" json:"damp,omitempty" jsonschema:"minimum=0"`
	// BlockSize (GPTQ) is the lazy-batch column block.
	BlockSize *int `yaml:"block_size,omitempty" json:"block_size,omitempty" jsonschema:"minimum=1"`
	// BlockActOrder (gptq on GGML block formats, without actorder) orders
	// the columns by decreasing Hessian diagonal inside each block; blocks
	// are fitted as GPTQ reaches them.
	BlockActOrder *bool `yaml:"block_actorder,omitempty" json:"block_actorder,omitempty" jsonschema:"description=gptq on GGML block formats without actorder: quantize each block's columns in decreasing Hessian-diagonal order (blocks in order and each fitted on the updated weights when GPTQ reaches it) (default false)"`
	// Refit (gptq on GGML block formats) re-solves each row's fp16 block
	// scales after GPTQ with the codes fixed, minimising the row's error
	// under the full Hessian with GPTQ's dampening, where that lowers it.
	Refit *bool `yaml:"refit,omitempty" json:"refit,omitempty" jsonschema:"description=gptq on GGML block formats: after GPTQ re-solve each row's fp16 block scales with the codes fixed minimising the row's error under the full dampened Hessian; a row keeps them only where that error drops (default false)"`
	// NonFinite is error (default: a NaN/Inf weight fails the task, naming
	// tensor and index) or pass (quantize anyway; see quant.NonFinitePass).
	NonFinite string `yaml:"nonfinite,omitempty" json:"nonfinite,omitempty" jsonschema:"enum=error,enum=pass,description=NaN/Inf weights: error (default) fails the task naming tensor and index; pass quantizes anyway with scales fitted on the finite weights (an MXFP4 block holding NaN/Inf becomes NaN; FP8 keeps NaN; other grids saturate Inf and encode NaN as zero)"`
}

// QuantRule applies settings to the tensors whose names match a glob.
type QuantRule struct {
	// Match is a path.Match glob on tensor names ("*.mlp.gate.weight").
	Match     string `yaml:"match" json:"match" jsonschema:"required,description=glob on tensor names (path.Match syntax)"`
	QuantSpec `yaml:",inline" json:",inline"`
}

// QuantizeConfig configures the quantize stage.
type QuantizeConfig struct {
	// Default applies to every 2-D tensor no rule matches.
	Default QuantSpec `yaml:"default" json:"default" jsonschema:"description=settings for every tensor no rule matches; rules override its fields (default format mxfp4 with method rtn)"`
	// Rules are tried in order; the first whose glob matches a tensor name
	// wins and its set fields override Default. `format: skip` keeps the
	// tensor as it is; `format: bf16` keeps it as bfloat16.
	Rules []QuantRule `yaml:"rules,omitempty" json:"rules,omitempty" jsonschema:"description=per-tensor overrides tried in order; the first whose match glob matches a tensor name wins and its set fields override default"`
	// Report, when set, adds a task that writes every tensor's report and
	// the model summary (average bits per weight, formats chosen, average
	// and worst cosine) as JSON to this path in the output directory.
	Report string `yaml:"report,omitempty" json:"report,omitempty" jsonschema:"description=JSON report file in the output directory (per-tensor reports and the model summary)"`
	// Imatrix, when set with a calibrate stage upstream, adds a task that
	// writes the calibration's importance matrix (the Hessian diagonals)
	// in llama-imatrix's GGUF format to this path, for llama-quantize
	// --imatrix.
	Imatrix string `yaml:"imatrix,omitempty" json:"imatrix,omitempty" jsonschema:"description=GGUF file in the output directory for the importance matrix (the Hessian diagonals) in llama-imatrix's format; needs a calibrate stage upstream and Hessian methods"`
	// GGUFRecipe, when set, gives every tensor the format of its GGUF type
	// in that llama.cpp recipe (llamacpp.Recipes: llama-quantize's
	// mixtures such as q4_k_m, q3_k_m, q2_k, iq4_xs, or a pure type), so
	// that GPTQ runs on each tensor's own grid; rules still override it.
	// It needs a calibrate stage upstream (whose config.json says which
	// tensor is which). A gguf pack stage downstream takes the recipe as
	// its gguf_type unless it sets one. Its schema enum is written by
	// JSONSchemaExtend.
	GGUFRecipe string `yaml:"gguf_recipe,omitempty" json:"gguf_recipe,omitempty"`
	// TargetBPW, when > 0, chooses each quantized 2-D tensor's format
	// among BPWTypes so that the average bits per weight is at most it,
	// minimising the predicted output error (quant/bpw; importance from a
	// float calibration pass of its own, quantize_bpw.go). Routed experts
	// stacked into one GGUF tensor share a format; rules that set a format
	// keep it (and count in the average); tensors no calibrated Linear
	// reads get q6_k (q8_0 where its blocks do not fit). It needs a
	// calibrate stage upstream; the report lists the choice.
	TargetBPW float64 `yaml:"target_bpw,omitempty" json:"target_bpw,omitempty" jsonschema:"minimum=0,description=average bits per weight over the quantized 2-D tensors: each tensor's format is chosen among bpw_types minimising the predicted output error (Hessian-diagonal weighted and relative to the tensor's output energy) from a float calibration pass; routed experts of one layer share a format; rules that set a format keep it; needs a calibrate stage upstream"`
	// BPWTypes are target_bpw's candidate formats (default
	// bpw.DefaultCandidates).
	BPWTypes []string `yaml:"bpw_types,omitempty" json:"bpw_types,omitempty" jsonschema:"description=target_bpw's candidate formats (default q2_k q3_k iq4_xs q4_k q5_k q6_k q8_0 q4_0 q5_0 q5_1)"`

	// recipeFormats are GGUFRecipe's formats by tensor name, set when the
	// stage is planned (quantize_recipe.go).
	recipeFormats map[string]string
}

// ResolvedQuant is the effective setting for one tensor.
type ResolvedQuant struct {
	Skip        bool
	Format      quant.Format
	Method      string
	ScaleSearch bool
	ClipRatios  []float32
	ActOrder    bool
	BlockAct    bool
	Refit       bool
	Damp        float64
	BlockSize   int
	NonFinite   quant.NonFinite
	// Rule is the index of the matching rule, -1 for the default.
	Rule int
}

// Quantization methods (the registry is quant.Methods).
const (
	MethodRTN    = quant.MethodRTN
	MethodGPTQ   = quant.MethodGPTQ
	MethodMRGPTQ = quant.MethodMRGPTQ
)

func newQuantizeConfig() *QuantizeConfig {
	return &QuantizeConfig{Default: QuantSpec{Format: "mxfp4", Method: MethodRTN}}
}

// Validate checks formats, group sizes, methods and globs; errors name the
// field (`rules[2].format: unknown format ...`).
func (c *QuantizeConfig) Validate() error {
	var errs []error
	if c.Default.Format == "" {
		errs = append(errs, &pipeline.FieldError{Field: "default.format", Err: errors.New("required")})
	}
	if _, err := resolve(QuantSpec{}, c.Default, -1); err != nil {
		errs = append(errs, prefixField("default", err))
	}
	for i, r := range c.Rules {
		p := fmt.Sprintf("rules[%d]", i)
		if r.Match == "" {
			errs = append(errs, &pipeline.FieldError{Field: p + ".match", Err: errors.New("required")})
		} else if err := pipeline.CheckGlob(r.Match); err != nil {
			errs = append(errs, &pipeline.FieldError{Field: p + ".match", Err: err})
		}
		if _, err := resolve(c.Default, r.QuantSpec, i); err != nil {
			errs = append(errs, prefixField(p, err))
		}
	}
	if c.Report != "" {
		if err := pipeline.CheckOutPath(c.Report); err != nil {
			errs = append(errs, &pipeline.FieldError{Field: "report", Err: err})
		}
	}
	if c.Imatrix != "" {
		if err := pipeline.CheckOutPath(c.Imatrix); err != nil {
			errs = append(errs, &pipeline.FieldError{Field: "imatrix", Err: err})
		}
	}
	if c.GGUFRecipe != "" {
		if err := llamacpp.ValidateRecipe(c.GGUFRecipe, nil); err != nil {
			errs = append(errs, &pipeline.FieldError{Field: "gguf_recipe", Err: err})
		}
	}
	errs = append(errs, c.validateBPW()...)
	if len(errs) == 1 {
		return errs[0]
	}
	if len(errs) > 1 {
		var list pipeline.ErrorList
		list = append(list, errs...)
		return list
	}
	return nil
}

func prefixField(prefix string, err error) error {
	var fe *pipeline.FieldError
	if errors.As(err, &fe) {
		return &pipeline.FieldError{Field: prefix + "." + fe.Field, Err: fe.Err}
	}
	return &pipeline.FieldError{Field: prefix, Err: err}
}

// Resolve returns the settings for tensor name: the first matching rule's
// fields over the default, whose format is the gguf_recipe's for this
// tensor where the recipe gives one.
func (c *QuantizeConfig) Resolve(name string) (ResolvedQuant, error) {
	def := c.Default
	if f, ok := c.recipeFormats[name]; ok {
		def.Format = f
	}
	for i, r := range c.Rules {
		ok, err := path.Match(r.Match, name)
		if err != nil {
			return ResolvedQuant{}, prefixField(fmt.Sprintf("rules[%d].match", i), err)
		}
		if ok {
			rq, err := resolve(def, r.QuantSpec, i)
			if err != nil {
				return rq, prefixField(fmt.Sprintf("rules[%d]", i), err)
			}
			return rq, nil
		}
	}
	rq, err := resolve(QuantSpec{}, def, -1)
	if err != nil {
		return rq, prefixField("default", err)
	}
	return rq, nil
}

// resolve merges over onto base and checks the result.
func resolve(base, over QuantSpec, rule int) (ResolvedQuant, error) {
	s := base
	if over.Format != "" {
		s.Format = over.Format
	}
	if over.GroupSize != nil {
		s.GroupSize = over.GroupSize
	}
	if over.Scale != "" {
		s.Scale = over.Scale
	}
	if over.Method != "" {
		s.Method = over.Method
	}
	if over.ScaleSearch != nil {
		s.ScaleSearch = over.ScaleSearch
	}
	if over.ClipRatios != nil {
		s.ClipRatios = over.ClipRatios
	}
	if over.ActOrder != nil {
		s.ActOrder = over.ActOrder
	}
	if over.Damp != nil {
		s.Damp = over.Damp
	}
	if over.Refit != nil {
		s.Refit = over.Refit
	}
	if over.BlockActOrder != nil {
		s.BlockActOrder = over.BlockActOrder
	}
	if over.BlockSize != nil {
		s.BlockSize = over.BlockSize
	}
	if over.NonFinite != "" {
		s.NonFinite = over.NonFinite
	}
	rq := ResolvedQuant{Rule: rule, Method: s.Method, Damp: gptq.DefaultPercDamp, BlockSize: gptq.DefaultBlockSize}
	if rq.Method == "" {
		rq.Method = MethodRTN
	}
	if _, err := quant.LookupMethod(rq.Method); err != nil {
		return rq, &pipeline.FieldError{Field: "method", Err: err}
	}
	if strings.EqualFold(s.Format, "skip") {
		rq.Skip = true
		return rq, nil
	}
	f, err := quant.Lookup(s.Format)
	if err != nil {
		return rq, &pipeline.FieldError{Field: "format", Err: err}
	}
	if s.GroupSize != nil && f.Quantized() {
		if f, err = f.WithGroupSize(*s.GroupSize); err != nil {
			return rq, &pipeline.FieldError{Field: "group_size", Err: err}
		}
	}
	if s.Scale != "" && f.Quantized() {
		st, err := quant.ParseScaleType(s.Scale)
		if err == nil {
			f, err = f.WithScale(st)
		}
		if err != nil {
			return rq, &pipeline.FieldError{Field: "scale", Err: err}
		}
	}
	rq.Format = f
	if s.ScaleSearch != nil {
		rq.ScaleSearch = *s.ScaleSearch
	}
	for _, r := range s.ClipRatios {
		if !(r > 0 && r <= 1) {
			return rq, &pipeline.FieldError{Field: "clip_ratios", Err: fmt.Errorf("ratio %v outside (0, 1]", r)}
		}
	}
	rq.ClipRatios = s.ClipRatios
	if s.ActOrder != nil {
		rq.ActOrder = *s.ActOrder
	}
	if s.Refit != nil {
		rq.Refit = *s.Refit
	}
	if s.BlockActOrder != nil {
		rq.BlockAct = *s.BlockActOrder
	}
	if s.Damp != nil {
		if *s.Damp < 0 {
			return rq, &pipeline.FieldError{Field: "damp", Err: fmt.Errorf("must be >= 0, got %v", *s.Damp)}
		}
		rq.Damp = *s.Damp
	}
	if s.BlockSize != nil {
		if *s.BlockSize < 1 {
			return rq, &pipeline.FieldError{Field: "block_size", Err: fmt.Errorf("must be >= 1, got %d", *s.BlockSize)}
		}
		rq.BlockSize = *s.BlockSize
	}
	switch s.NonFinite {
	case "", "error":
	case "pass":
		rq.NonFinite = quant.NonFinitePass
	default:
		return rq, &pipeline.FieldError{Field: "nonfinite", Err: fmt.Errorf("must be error or pass, got %q", s.NonFinite)}
	}
	return rq, nil
}

// QuantizeKind is the "quantize" stage kind.
func QuantizeKind() pipeline.Kind {
	return pipeline.Kind{
		Name:      "quantize",
		Doc:       "quantize 2-D weights (one task per upstream tensor) with per-tensor glob rules; outputs packed tensors (quant.Packed.ToTensors) and a per-tensor error report",
		NewConfig: func() any { return newQuantizeConfig() },
		New: func(cfg any) (pipeline.Stage, error) {
			c, ok := cfg.(*QuantizeConfig)
			if !ok {
				return nil, fmt.Errorf("quantize: config is %T", cfg)
			}
			if err := c.Validate(); err != nil {
				return nil, fmt.Errorf("quantize: %w", err)
			}
			return &quantizeStage{cfg: *c}, nil
		},
	}
}

type quantizeStage struct {
	cfg QuantizeConfig
	// imatrix: the gguf_recipe's tensors are quantized with importance
	// weights (Hessian methods), set with cfg.recipeFormats.
	imatrix bool
	// bpw is the target_bpw allocation (quantize_bpw.go), guarded by
	// bpwMu.
	bpwMu sync.Mutex
	bpw   bpwAllocation
}

// Plan makes one task per upstream task (a load task holds one tensor),
// keyed like it. Settings are resolved from the key (the tensor name) and
// recorded in the task Meta; at run time each tensor of the upstream output
// is resolved by its own name.
func (s *quantizeStage) Plan(ctx context.Context, pc *pipeline.PlanContext) ([]*pipeline.Task, error) {
	if len(pc.Inputs) == 0 {
		return nil, errors.New("quantize: needs an upstream stage that produces tensors (load)")
	}
	var tasks []*pipeline.Task
	seen := map[string]bool{}
	if calStage, cal := calibrationTask(pc.Inputs); cal != nil {
		ts, err := s.planLayers(pc, calStage, cal) // layerwise.go
		if err != nil {
			return nil, err
		}
		tasks = ts
		for _, t := range ts {
			seen[t.Key] = true
		}
	}
	if s.cfg.GGUFRecipe != "" && len(tasks) == 0 {
		return nil, errors.New("quantize: gguf_recipe needs a calibrate stage upstream (its config.json says which tensor is which); without one, set the recipe as the gguf pack stage's gguf_type")
	}
	if s.bpwPlanned() && len(tasks) == 0 {
		return nil, errors.New("quantize: target_bpw needs a calibrate stage upstream (the importance of each tensor)")
	}
	var names []string // every tensor name, for unmatched-rule warnings
	for _, t := range tasks {
		if !isInternal(t.Meta) {
			names = append(names, taskTensors(t)...)
		}
	}
	for _, in := range pc.Inputs {
		if len(tasks) > 0 {
			break // layer mode planned every tensor
		}
		for _, ut := range in.Tasks {
			if isInternal(ut.Meta) {
				continue // a calibration run, not a tensor (see calibrate.go)
			}
			names = append(names, ut.Key)
			names = append(names, groupNames(ut.Meta)...)
			if seen[ut.Key] {
				return nil, fmt.Errorf("quantize: task key %q produced by two upstream stages", ut.Key)
			}
			seen[ut.Key] = true
			rq, err := s.cfg.Resolve(ut.Key)
			if err != nil {
				return nil, fmt.Errorf("quantize: %s: %w", ut.Key, err)
			}
			if err := checkMethodPlan(rq, ut); err != nil { // quantize_gptq.go
				return nil, fmt.Errorf("quantize: %s: %w", ut.Key, err)
			}
			inBytes := max(taskBytes(ut.Meta), 0)
			meta := map[string]string{}
			for k, v := range ut.Meta {
				meta[k] = v
			}
			if rq.Skip {
				meta[quant.MetaFormat] = "skip"
			} else {
				meta[quant.MetaFormat] = rq.Format.String()
				meta[quant.MetaMethod] = rq.Method
			}
			ref := pipeline.TaskRef{Stage: in.ID, Key: ut.Key}
			tasks = append(tasks, &pipeline.Task{
				Key:      ut.Key,
				Needs:    []pipeline.TaskRef{ref},
				EstBytes: 3*inBytes + 1<<20, // input + float32 row scratch + packed output
				Meta:     meta,
				Run:      s.run(ref),
			})
		}
	}
	s.warnUnmatchedRules(pc, names)
	if s.cfg.Report != "" {
		if seen[quantReportKey] {
			return nil, fmt.Errorf("quantize: an upstream task is named %q, which the report task needs", quantReportKey)
		}
		var refs []pipeline.TaskRef
		for _, t := range tasks {
			if !isInternal(t.Meta) || t.Key == bpwKey { // not activations
				refs = append(refs, pipeline.TaskRef{Stage: pc.StageID, Key: t.Key})
			}
		}
		// The task carries no model tensors: tensor-per-task downstream
		// stages skip it.
		tasks = append(tasks, &pipeline.Task{Key: quantReportKey, Needs: refs, EstBytes: 1 << 20,
			Meta: map[string]string{MetaInternal: "true"}, Run: s.runReport(refs)})
	}
	if s.cfg.Imatrix != "" {
		if seen[imatrixKey] {
			return nil, fmt.Errorf("quantize: an upstream task is named %q, which the imatrix task needs", imatrixKey)
		}
		var refs []pipeline.TaskRef
		for _, t := range tasks {
			if strings.HasPrefix(t.Key, layerKeyPrefix) {
				refs = append(refs, pipeline.TaskRef{Stage: pc.StageID, Key: t.Key})
			}
		}
		if len(refs) == 0 {
			return nil, errors.New("quantize: imatrix needs calibrated layer tasks (a calibrate stage upstream and gptq/mr-gptq)")
		}
		tasks = append(tasks, &pipeline.Task{Key: imatrixKey, Needs: refs, EstBytes: 1 << 20,
			Meta: map[string]string{MetaInternal: "true"}, Run: s.runImatrix(refs, "marlin calibration")})
	}
	return tasks, nil
}

// warnUnmatchedRules logs a warning for every rule whose glob matches none
// of the tensor names: a typo there silently quantizes what the rule meant
// to keep.
func (s *quantizeStage) warnUnmatchedRules(pc *pipeline.PlanContext, names []string) {
	if pc.Log == nil {
		return
	}
	for i, r := range s.cfg.Rules {
		if !slices.ContainsFunc(names, func(n string) bool { ok, _ := path.Match(r.Match, n); return ok }) {
			pc.Log.Warn(fmt.Sprintf("quantize: rules[%d] matches no tensor", i), "rule", i, "match", r.Match, "tensors", len(names))
		}
	}
}

// quantReportKey is the key of the report task.
const quantReportKey = "quantize-report"

// QuantizeReport is the JSON document of the report task.
type QuantizeReport struct {
	Summary quant.Summary  `json:"summary"`
	Tensors []quant.Report `json:"tensors"`
	// Experts lists every routed expert projection's calibration: tokens
	// routed to it and the policy applied (own, shrunk, pooled, rtn).
	Experts []calib.ExpertCoverage `json:"experts,omitempty"`
	// Layers is each layer task's time split (layer-streamed mode).
	Layers []LayerStats `json:"layers,omitempty"`
	// TargetBPW is the target_bpw allocation: the average reached, the
	// predicted error and the format chosen per tensor group.
	TargetBPW *bpw.Result `json:"target_bpw,omitempty"`
}

// policies counts the routed-expert projections per calibration policy.
func (r *QuantizeReport) policies() map[string]int {
	p := map[string]int{}
	for _, e := range r.Experts {
		p[e.Policy]++
	}
	return p
}

// LayerStats is one layer task's measurements: seconds spent building the
// layer, in calibration passes and in quantization, and the passes run.
type LayerStats struct {
	Task  string             `json:"task"`
	Stats map[string]float64 `json:"stats"`
}

func (s *quantizeStage) runReport(refs []pipeline.TaskRef) func(context.Context, *pipeline.TaskEnv) (*pipeline.Output, error) {
	return func(ctx context.Context, env *pipeline.TaskEnv) (*pipeline.Output, error) {
		var doc QuantizeReport
		for i, r := range refs {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			o, err := env.Input(r)
			if err != nil {
				return nil, fmt.Errorf("quantize report: %w", err)
			}
			reps, err := reportsOf(o.Meta)
			if err != nil {
				return nil, fmt.Errorf("quantize report: %s: %w", r.Key, err)
			}
			doc.Tensors = append(doc.Tensors, reps...)
			cov, err := expertsOf(o.Meta)
			if err != nil {
				return nil, fmt.Errorf("quantize report: %s: %w", r.Key, err)
			}
			doc.Experts = append(doc.Experts, cov...)
			if strings.HasPrefix(r.Key, layerKeyPrefix) {
				doc.Layers = append(doc.Layers, LayerStats{Task: r.Key, Stats: o.Stats})
			}
			if r.Key == bpwKey {
				if doc.TargetBPW, err = bpwResultOf(o.Meta); err != nil {
					return nil, fmt.Errorf("quantize report: %w", err)
				}
			}
			if env.Progress != nil {
				env.Progress(int64(i+1), int64(len(refs)))
			}
		}
		doc.Summary = quant.Summarize(doc.Tensors)
		data, err := json.MarshalIndent(doc, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("quantize report: %w", err)
		}
		if err := env.WriteArtifact(s.cfg.Report, append(data, '\n')); err != nil {
			return nil, fmt.Errorf("quantize report: %w", err)
		}
		sm := doc.Summary
		if env.Log != nil {
			env.Log.Info("quantize summary", "tensors", sm.Tensors, "bits_per_weight", sm.BitsPerWeight, "avg_cosine", sm.AvgCosine, "min_cosine", sm.MinCosine, "worst", sm.MinCosineTensor)
		}
		return &pipeline.Output{Meta: map[string]string{
			"summary.tensors":           strconv.Itoa(sm.Tensors),
			"summary.weights":           strconv.FormatInt(sm.Weights, 10),
			"summary.bits_per_weight":   strconv.FormatFloat(sm.BitsPerWeight, 'g', 8, 64),
			"summary.avg_cosine":        strconv.FormatFloat(sm.AvgCosine, 'g', 8, 64),
			"summary.min_cosine":        strconv.FormatFloat(sm.MinCosine, 'g', 8, 64),
			"summary.min_cosine_tensor": sm.MinCosineTensor,
		}}, nil
	}
}

func (s *quantizeStage) run(ref pipeline.TaskRef) func(context.Context, *pipeline.TaskEnv) (*pipeline.Output, error) {
	return func(ctx context.Context, env *pipeline.TaskEnv) (*pipeline.Output, error) {
		in, err := env.Input(ref)
		if err != nil {
			return nil, fmt.Errorf("quantize %s: %w", ref.Key, err)
		}
		out := &pipeline.Output{Meta: map[string]string{}}
		var reports []quant.Report
		for i, t := range in.Tensors {
			ts, rep, err := s.quantizeTensor(ctx, t, nil)
			if err != nil {
				return nil, fmt.Errorf("quantize %s: %w", ref.Key, err)
			}
			out.Tensors = append(out.Tensors, ts...)
			if rep != nil {
				reports = append(reports, *rep)
				if env.Log != nil {
					env.Log.Debug("quantized", "tensor", rep.Name, "format", rep.Format, "cosine", rep.Cosine, "sqnr_db", rep.SQNRdB, "bpw", rep.BitsPerWeight)
				}
			}
			if env.Progress != nil {
				env.Progress(int64(i+1), int64(len(in.Tensors)))
			}
		}
		if err := setReports(out, reports); err != nil {
			return nil, fmt.Errorf("quantize %s: %w", ref.Key, err)
		}
		return out, nil
	}
}

// QuantizeTensor applies the configuration to one tensor: skipped and
// non-2-D tensors come back unchanged (nil report); others are quantized
// with the resolved settings and returned as quant.Packed.ToTensors with
// MetaMethod and MetaShape, plus their error report.
func (s *quantizeStage) QuantizeTensor(ctx context.Context, t *tensor.Tensor) ([]*tensor.Tensor, *quant.Report, error) {
	return s.quantizeTensor(ctx, t, nil)
}

// quantizeTensor is QuantizeTensor with the weight's Hessian (nil when
// calibration gave none) for the gptq and mr-gptq methods.
func (s *quantizeStage) quantizeTensor(ctx context.Context, t *tensor.Tensor, hessian *gptq.Hessian) ([]*tensor.Tensor, *quant.Report, error) {
	rq, err := s.cfg.Resolve(t.Name)
	if err != nil {
		return nil, nil, err
	}
	return s.quantizeResolved(ctx, t, hessian, rq)
}

// quantizeResolved is quantizeTensor with the settings already resolved
// (the layer task falls back to RTN for experts without enough tokens).
func (s *quantizeStage) quantizeResolved(ctx context.Context, t *tensor.Tensor, hessian *gptq.Hessian, rq ResolvedQuant) ([]*tensor.Tensor, *quant.Report, error) {
	if rq.Skip || len(t.Shape) != 2 {
		return []*tensor.Tensor{t}, nil, nil
	}
	from := ""
	if f, fell, err := quant.RowFallback(rq.Format, t.Shape[1]); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", t.Name, err)
	} else if fell {
		// As llama-quantize does: rows that do not fill the type's blocks
		// take its fallback type (recorded in the tensor's Meta).
		from = rq.Format.Name
		rq.Format = f
		if !f.Quantized() {
			rq.Method = MethodRTN
		}
	}
	ts, rep, err := s.quantizeRows(ctx, t, hessian, rq)
	if err == nil && from != "" {
		for _, q := range ts {
			if q.Meta == nil {
				q.Meta = map[string]string{}
			}
			q.Meta[metaFormatFallback] = from
		}
	}
	return ts, rep, err
}

// quantizeRows is quantizeResolved once the format fits the rows.
func (s *quantizeStage) quantizeRows(ctx context.Context, t *tensor.Tensor, hessian *gptq.Hessian, rq ResolvedQuant) ([]*tensor.Tensor, *quant.Report, error) {
	if rq.needsHessian() && rq.Format.Quantized() {
		ts, rep, err := quantizeWithHessian(ctx, t, hessian, rq) // quantize_gptq.go
		if !errors.Is(err, errNoLinear) {
			return ts, rep, err
		}
		rq.Method = MethodRTN // an embedding: no Hessian by design
	}
	opts := &quant.Options{Name: t.Name, ScaleSearch: rq.ScaleSearch, ClipRatios: rq.ClipRatios, NonFinite: rq.NonFinite}
	p, err := quant.QuantizeTensor(ctx, t, rq.Format, opts)
	if err != nil {
		return nil, nil, err
	}
	rep, err := quant.MeasureTensor(t, p) // row by row: no float32 copy of the tensor
	if err != nil {
		return nil, nil, err
	}
	extra := map[string]string{quant.MetaMethod: rq.Method, quant.MetaShape: quant.FormatShape(t.Shape), metaSourceDType: t.DType.String()}
	if f := t.Meta[metaCalibFallback]; f != "" {
		extra[metaCalibFallback] = f
	}
	if rq.ScaleSearch {
		extra[metaScaleSearch] = "true"
	}
	return p.ToTensors(t.Name, extra), &rep, nil
}
