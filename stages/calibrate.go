package stages

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/marlin-llm/marlin/model/hfconfig"
	"github.com/marlin-llm/marlin/model/tokenizer"
	"github.com/marlin-llm/marlin/pipeline"
	"github.com/marlin-llm/marlin/tensor"
)

// CalibrateConfig configures the calibrate stage: the calibration data that
// a downstream quantize stage streams through the model layer by layer
// (see layerwise.go). The stage itself only tokenizes the text; the
// forward passes, Hessians and GPTQ run in the quantize stage's layer
// tasks, so no Hessian is ever stored.
type CalibrateConfig struct {
	// Model is the model directory holding config.json and tokenizer.json
	// (weights come from the upstream stage).
	Model string `yaml:"model" json:"model" jsonschema:"required,minLength=1,description=model dir with config.json and tokenizer.json (relative to the job file)"`
	// Text is the calibration text file.
	Text string `yaml:"text" json:"text" jsonschema:"required,minLength=1,description=calibration text (relative to the job file)"`
	// Samples is the number of windows (default 128); fewer are used when
	// the text is shorter, with a warning in the log and the report.
	Samples int `yaml:"samples,omitempty" json:"samples,omitempty" jsonschema:"minimum=1,description=calibration windows (default 128); a shorter text gives fewer with a warning"`
	// MinSamples fails the stage when the text holds fewer windows.
	MinSamples int `yaml:"min_samples,omitempty" json:"min_samples,omitempty" jsonschema:"minimum=0,description=fail when the text holds fewer windows than this (default 0: any number of at least one; a warning when fewer than samples)"`
	// SeqLen is the window length in tokens (default 256).
	SeqLen int `yaml:"seq_len,omitempty" json:"seq_len,omitempty" jsonschema:"minimum=2,description=tokens per window (default 256)"`
	// Precision of the Hessian accumulation: f32 (default) or f64.
	Precision string `yaml:"precision,omitempty" json:"precision,omitempty" jsonschema:"enum=f32,enum=f64,description=precision of the Hessian accumulation (default f32)"`
	// Sequential (the default) calibrates layer L on the outputs of layers
	// < L already quantized, and each group of a layer's projections
	// (q/k/v, o, gate/up, down) on the outputs of the groups before it
	// (true-sequential), as GPTQ implementations do; false calibrates every
	// layer on the original model's activations.
	Sequential *bool `yaml:"sequential,omitempty" json:"sequential,omitempty" jsonschema:"description=calibrate layer L on the outputs of the already-quantized layers before it and each group of its projections on the outputs of the groups before it (true-sequential); default true; false: on the original model activations"`
	// TrueSequential (the default, with Sequential) calibrates each group
	// of a layer's projections on the outputs of the groups before it,
	// already quantized: one pass through the layer per group. false takes
	// every Hessian of a layer from one pass (llm-compressor's sequential
	// pipeline): fewer forward passes on big layers.
	TrueSequential *bool `yaml:"true_sequential,omitempty" json:"true_sequential,omitempty" jsonschema:"description=with sequential: calibrate each group of a layer's projections (q/k/v then o then gate/up then down) on the outputs of the already-quantized groups before it with one pass per group (default true); false: all of a layer's Hessians from one pass"`
	// AllExperts sends every calibration token through every routed expert
	// for the Hessians only (the layer's output still combines the routed
	// experts), so that no expert lacks calibration data.
	AllExperts bool `yaml:"all_experts,omitempty" json:"all_experts,omitempty" jsonschema:"description=MoE: accumulate every routed expert's Hessians from all tokens (the layer output still uses the routed experts); default false: each expert from its routed tokens"`
	// MinExpertTokens quantizes a routed expert that saw fewer tokens with
	// round-to-nearest instead of GPTQ (0: never; experts below their
	// input width are otherwise shrunk towards the pooled Hessian).
	MinExpertTokens int `yaml:"min_expert_tokens,omitempty" json:"min_expert_tokens,omitempty" jsonschema:"minimum=0,description=MoE: a routed expert that received fewer calibration tokens is quantized with RTN instead of GPTQ (default 0: never; below its input width its Hessian is shrunk towards the pooled one)"`
	// ShrinkExperts mixes every routed expert's Hessian with the pooled
	// one, the pool counting as one input width of tokens
	// (calib.ExpertPolicy).
	ShrinkExperts bool `yaml:"shrink_experts,omitempty" json:"shrink_experts,omitempty" jsonschema:"description=MoE: mix every routed expert's Hessian with the pooled one (the router input for gate/up; all experts' down_proj inputs) as if the pool added one input width of tokens (default false: only experts with fewer tokens than their input width)"`
}

// Calibrate defaults (setDefaults applies them).
const (
	defaultCalibSamples   = 128
	defaultCalibSeqLen    = 256
	defaultCalibPrecision = "f32"
)

// setDefaults fills the settings left at zero with their defaults.
func (c *CalibrateConfig) setDefaults() {
	if c.Samples == 0 {
		c.Samples = defaultCalibSamples
	}
	if c.SeqLen == 0 {
		c.SeqLen = defaultCalibSeqLen
	}
	if c.Precision == "" {
		c.Precision = defaultCalibPrecision
	}
}

// newCalibrateConfig is the config a job's `with:` is decoded into.
func newCalibrateConfig() any {
	c := &CalibrateConfig{}
	c.setDefaults()
	return c
}

// sequential reports the effective Sequential setting.
func (c *CalibrateConfig) sequential() bool { return c.Sequential == nil || *c.Sequential }

// trueSequential reports the effective TrueSequential setting.
func (c *CalibrateConfig) trueSequential() bool {
	return c.sequential() && (c.TrueSequential == nil || *c.TrueSequential)
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
	if c.MinSamples < 0 {
		errs = append(errs, &pipeline.FieldError{Field: "min_samples", Err: fmt.Errorf("must be >= 0")})
	} else if c.Samples > 0 && c.MinSamples > c.Samples {
		errs = append(errs, &pipeline.FieldError{Field: "min_samples", Err: fmt.Errorf("%d is more than the %d samples requested", c.MinSamples, c.Samples)})
	}
	if c.SeqLen < 0 || c.SeqLen == 1 {
		errs = append(errs, &pipeline.FieldError{Field: "seq_len", Err: fmt.Errorf("must be >= 2")})
	}
	if c.TrueSequential != nil && *c.TrueSequential && !c.sequential() {
		errs = append(errs, &pipeline.FieldError{Field: "true_sequential", Err: fmt.Errorf("needs sequential: true")})
	}
	switch c.Precision {
	case "", "f32", "f64":
	default:
		errs = append(errs, &pipeline.FieldError{Field: "precision", Err: fmt.Errorf("must be f32 or f64, got %q", c.Precision)})
	}
	if c.MinExpertTokens < 0 {
		errs = append(errs, &pipeline.FieldError{Field: "min_expert_tokens", Err: fmt.Errorf("must be >= 0")})
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
		Doc:       "calibration data for the quantize stage downstream, which streams it through the model one decoder layer at a time (Hessians per Linear and per routed expert, sequential by default)",
		NewConfig: newCalibrateConfig,
		New: func(cfg any) (pipeline.Stage, error) {
			c, ok := cfg.(*CalibrateConfig)
			if !ok {
				return nil, fmt.Errorf("calibrate: config is %T", cfg)
			}
			if err := c.Validate(); err != nil {
				return nil, fmt.Errorf("calibrate: %w", err)
			}
			c.setDefaults()
			return &calibrateStage{cfg: *c}, nil
		},
		Version: 1,
	}
}

type calibrateStage struct{ cfg CalibrateConfig }

// CalibrationKey is the key of the calibrate stage's one task (the
// tokenized calibration windows).
const CalibrationKey = "_calibration"

// calibIDsName is the tensor of token ids ([windows, seq_len] I32).
const calibIDsName = "calib.ids"

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
	tokFP, err := fileFingerprint(filepath.Join(modelDir, "tokenizer.json"), 1<<20)
	if err != nil {
		return nil, fmt.Errorf("calibrate: model: %w", err)
	}
	if cfg, err := hfconfig.Load(modelDir); err == nil {
		// Layers the config does not declare would never be calibrated.
		if err := cfg.CheckLayers(ix.names); err != nil {
			return nil, fmt.Errorf("calibrate: %w", err)
		}
	}
	fi, err := os.Stat(textPath)
	if err != nil {
		return nil, fmt.Errorf("calibrate: %w", err)
	}
	var ins []string
	for _, in := range pc.Inputs {
		ins = append(ins, in.ID)
	}
	meta := calibMeta{
		Inputs: ins, Model: modelDir, Sequential: s.cfg.sequential(), TrueSequential: s.cfg.trueSequential(), Precision: s.cfg.Precision,
		AllExperts: s.cfg.AllExperts, MinExpertTokens: s.cfg.MinExpertTokens, ShrinkExperts: s.cfg.ShrinkExperts,
		Samples: s.cfg.Samples, SeqLen: s.cfg.SeqLen, TextBytes: fi.Size(),
	}.encode()
	return []*pipeline.Task{{
		Key: CalibrationKey, EstBytes: 16*fi.Size() + 64<<20, Meta: meta,
		Fingerprint: fp + "; " + cfgFP + "; " + tokFP,
		Run:         s.tokenize(modelDir, textPath),
	}}, nil
}

// tokenize reads the calibration text into windows of token ids.
func (s *calibrateStage) tokenize(modelDir, textPath string) func(context.Context, *pipeline.TaskEnv) (*pipeline.Output, error) {
	return func(ctx context.Context, env *pipeline.TaskEnv) (*pipeline.Output, error) {
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
		short, err := s.checkWindows(textPath, len(ids), n, env)
		if err != nil {
			return nil, err
		}
		ids = ids[:n*s.cfg.SeqLen]
		data := make([]byte, 4*len(ids))
		for i, id := range ids {
			binary.LittleEndian.PutUint32(data[4*i:], uint32(id))
		}
		t := &tensor.Tensor{Name: calibIDsName, DType: tensor.I32, Shape: []int{n, s.cfg.SeqLen}, Data: data}
		rep := map[string]any{"tokens": len(ids), "windows": n, "requested_windows": s.cfg.Samples, "seq_len": s.cfg.SeqLen, "sequential": s.cfg.sequential()}
		if short != "" {
			rep["warning"] = short
		}
		js, err := json.Marshal(rep)
		if err != nil {
			return nil, err
		}
		return &pipeline.Output{Tensors: []*tensor.Tensor{t}, Meta: map[string]string{metaCalibReport: string(js)}}, nil
	}
}

// checkWindows compares the n windows the text holds with the samples
// requested: fewer than min_samples is an error, fewer than samples a
// warning (logged, and returned for the report).
func (s *calibrateStage) checkWindows(textPath string, tokens, n int, env *pipeline.TaskEnv) (string, error) {
	if n >= s.cfg.Samples {
		return "", nil
	}
	if n < s.cfg.MinSamples {
		return "", fmt.Errorf("calibrate: %s has %d tokens: %d windows of %d, fewer than min_samples %d", textPath, tokens, n, s.cfg.SeqLen, s.cfg.MinSamples)
	}
	if env.Log != nil {
		env.Log.Warn("calibrate: calibration text shorter than requested", "text", textPath, "tokens", tokens, "windows", n, "requested_windows", s.cfg.Samples, "seq_len", s.cfg.SeqLen)
	}
	return fmt.Sprintf("%s has %d tokens: only %d of the %d requested windows of %d tokens; the Hessians are noisier (set min_samples to make this an error)", textPath, tokens, n, s.cfg.Samples, s.cfg.SeqLen), nil
}

// calibIDs decodes the calibration task's token ids.
func calibIDs(out *pipeline.Output) ([]int32, int, int, error) {
	for _, t := range out.Tensors {
		if t.Name != calibIDsName {
			continue
		}
		if t.DType != tensor.I32 || len(t.Shape) != 2 || len(t.Data) != 4*t.Shape[0]*t.Shape[1] {
			return nil, 0, 0, fmt.Errorf("calibration ids: %s %v", t.DType, t.Shape)
		}
		ids := make([]int32, t.Shape[0]*t.Shape[1])
		for i := range ids {
			ids[i] = int32(binary.LittleEndian.Uint32(t.Data[4*i:]))
		}
		return ids, t.Shape[0], t.Shape[1], nil
	}
	return nil, 0, 0, fmt.Errorf("calibration output has no %s tensor", calibIDsName)
}

// jobPath resolves a config path against the job file's directory.
func jobPath(pc *pipeline.PlanContext, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(pc.JobDir, p)
}
