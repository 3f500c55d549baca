package stages

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/marlin-llm/marlin/export/llamacpp"
	"github.com/marlin-llm/marlin/kernels"
	"github.com/marlin-llm/marlin/model/arch"
	"github.com/marlin-llm/marlin/model/eval"
	"github.com/marlin-llm/marlin/model/hfconfig"
	"github.com/marlin-llm/marlin/model/native"
	"github.com/marlin-llm/marlin/model/qmodel"
	"github.com/marlin-llm/marlin/model/safetensors"
	"github.com/marlin-llm/marlin/model/tokenizer"
	"github.com/marlin-llm/marlin/pipeline"
	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/report"
)

// ValidateConfig configures the validate stage: the quantized model, run
// from its packed weights (a native checkpoint written by `pack`) through
// the backend's fused dequant kernels, is compared with the unquantized
// model on a text file, and the job's thresholds gate the run.
type ValidateConfig struct {
	// Model is the unquantized Hugging Face model directory (reference
	// weights and tokenizer.json), relative to the job file.
	Model string `yaml:"model" json:"model" jsonschema:"required,description=unquantized model directory (config.json; safetensors; tokenizer.json); relative to the job file"`
	// Packed is the native packed checkpoint directory, relative to the
	// run's output directory (the `out:` of a `pack` stage with format native).
	Packed string `yaml:"packed,omitempty" json:"packed,omitempty" jsonschema:"description=native packed checkpoint directory in the output directory (a pack stage's out); this or gguf is required"`
	// GGUF is a GGUF file in the run's output directory (a pack stage
	// with format gguf): the model is scored as llama.cpp would run it,
	// every tensor read back through the GGML dequantization.
	GGUF string `yaml:"gguf,omitempty" json:"gguf,omitempty" jsonschema:"description=GGUF file in the output directory (a pack stage's out with format gguf) scored instead of a native checkpoint: every tensor read back through the GGML dequantization llama.cpp uses"`
	// Text is the evaluation text file, relative to the job file.
	Text string `yaml:"text" json:"text" jsonschema:"required,description=evaluation text file; relative to the job file"`
	// Window is the tokens per evaluation window (default 128).
	Window int `yaml:"window,omitempty" json:"window,omitempty" jsonschema:"minimum=2,description=tokens per window (default 128)"`
	// Windows is the number of windows (default 8; 0 keeps the default).
	// A text too short for them gives fewer, with a warning in the log and
	// in validate.json.
	Windows int `yaml:"windows,omitempty" json:"windows,omitempty" jsonschema:"minimum=0,description=number of windows (default 8); a shorter text gives fewer with a warning"`
	// MinWindows fails the stage when the text holds fewer windows.
	MinWindows int `yaml:"min_windows,omitempty" json:"min_windows,omitempty" jsonschema:"minimum=0,description=fail when the text holds fewer windows than this (default 0: any number of at least one; a warning when fewer than windows)"`
	// MaxPPLIncrease fails the run when the quantized perplexity exceeds
	// the reference's by more than this: "3%" or a fraction (0.03).
	MaxPPLIncrease string `yaml:"max_ppl_increase,omitempty" json:"max_ppl_increase,omitempty" jsonschema:"description=largest relative perplexity increase: 3% or 0.03"`
	// MaxKL fails the run when the mean KL(ref ‖ quant) in nats exceeds it.
	MaxKL *float64 `yaml:"max_kl,omitempty" json:"max_kl,omitempty" jsonschema:"minimum=0,description=largest mean KL divergence (nats)"`
	// MinTop1 fails the run when top-1 agreement is below it (0..1).
	MinTop1 *float64 `yaml:"min_top1,omitempty" json:"min_top1,omitempty" jsonschema:"minimum=0,maximum=1,description=smallest top-1 agreement"`
	// MinCosine fails the run when any quantized tensor's cosine
	// similarity to its unquantized weights is below it.
	MinCosine *float64 `yaml:"min_cosine,omitempty" json:"min_cosine,omitempty" jsonschema:"minimum=-1,maximum=1,description=smallest per-tensor cosine similarity"`
	// MinSQNR fails the run when any tensor's SQNR (dB) is below it.
	MinSQNR *float64 `yaml:"min_sqnr_db,omitempty" json:"min_sqnr_db,omitempty" jsonschema:"description=smallest per-tensor SQNR in dB"`
	// Out is the JSON result file in the output directory (default validate.json).
	Out string `yaml:"out,omitempty" json:"out,omitempty" jsonschema:"description=JSON result file in the output directory (default validate.json)"`
}

// ParseFraction parses "3%" (= 0.03) or a plain fraction ("0.03").
func ParseFraction(s string) (float64, error) {
	t := strings.TrimSpace(s)
	scale := 1.0
	if strings.HasSuffix(t, "%") {
		t, scale = strings.TrimSpace(strings.TrimSuffix(t, "%")), 0.01
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("want a percentage like 3%% or a fraction like 0.03, got %q", s)
	}
	return v * scale, nil
}

// Validate checks the fields.
func (c *ValidateConfig) Validate() error {
	var errs []error
	for _, f := range []struct{ name, v string }{{"model", c.Model}, {"text", c.Text}} {
		if f.v == "" {
			errs = append(errs, &pipeline.FieldError{Field: f.name, Err: errors.New("required")})
		}
	}
	switch {
	case c.Packed == "" && c.GGUF == "":
		errs = append(errs, &pipeline.FieldError{Field: "packed", Err: errors.New("required (or gguf)")})
	case c.Packed != "" && c.GGUF != "":
		errs = append(errs, &pipeline.FieldError{Field: "gguf", Err: errors.New("give packed or gguf, not both")})
	}
	for _, f := range []struct{ name, v string }{{"packed", c.Packed}, {"gguf", c.GGUF}} {
		if f.v != "" {
			if err := pipeline.CheckOutPath(f.v); err != nil {
				errs = append(errs, &pipeline.FieldError{Field: f.name, Err: err})
			}
		}
	}
	if c.Out != "" {
		if err := pipeline.CheckOutPath(c.Out); err != nil {
			errs = append(errs, &pipeline.FieldError{Field: "out", Err: err})
		}
	}
	if c.Window != 0 && c.Window < 2 {
		errs = append(errs, &pipeline.FieldError{Field: "window", Err: fmt.Errorf("must be at least 2, got %d", c.Window)})
	}
	if c.Windows < 0 {
		errs = append(errs, &pipeline.FieldError{Field: "windows", Err: fmt.Errorf("must not be negative, got %d", c.Windows)})
	}
	if c.MinWindows < 0 {
		errs = append(errs, &pipeline.FieldError{Field: "min_windows", Err: fmt.Errorf("must not be negative, got %d", c.MinWindows)})
	} else if w := cmp.Or(c.Windows, 8); c.MinWindows > w {
		errs = append(errs, &pipeline.FieldError{Field: "min_windows", Err: fmt.Errorf("%d is more than the %d windows requested", c.MinWindows, w)})
	}
	if c.MaxPPLIncrease != "" {
		if _, err := ParseFraction(c.MaxPPLIncrease); err != nil {
			errs = append(errs, &pipeline.FieldError{Field: "max_ppl_increase", Err: err})
		}
	}
	for _, f := range []struct {
		name string
		v    *float64
	}{{"max_kl", c.MaxKL}, {"min_top1", c.MinTop1}, {"min_cosine", c.MinCosine}, {"min_sqnr_db", c.MinSQNR}} {
		if f.v != nil && (math.IsNaN(*f.v) || math.IsInf(*f.v, 0)) {
			errs = append(errs, &pipeline.FieldError{Field: f.name, Err: fmt.Errorf("must be finite")})
		}
	}
	return errors.Join(errs...)
}

// ValidateKind is the "validate" stage kind.
func ValidateKind() pipeline.Kind {
	return pipeline.Kind{
		Name: "validate",
		Doc: "quality gate: per-tensor weight error, perplexity, KL and top-1 agreement of the packed model " +
			"(run through the dequant kernels) against the unquantized model; thresholds fail the run",
		NewConfig: func() any { return &ValidateConfig{Window: 128, Windows: 8} },
		New: func(cfg any) (pipeline.Stage, error) {
			c, ok := cfg.(*ValidateConfig)
			if !ok {
				return nil, fmt.Errorf("validate: config is %T", cfg)
			}
			return &validateStage{cfg: *c}, nil
		},
	}
}

type validateStage struct{ cfg ValidateConfig }

// ValidateKey is the key of the validate stage's one task.
const ValidateKey = "validate"

func (s *validateStage) Plan(ctx context.Context, pc *pipeline.PlanContext) ([]*pipeline.Task, error) {
	if len(pc.Inputs) == 0 {
		return nil, errors.New("validate: needs the pack stage that writes the native checkpoint")
	}
	model, text := jobPath(pc, s.cfg.Model), jobPath(pc, s.cfg.Text)
	fp, err := dirFingerprint(model, "config.json", "tokenizer.json")
	if err != nil {
		return nil, fmt.Errorf("validate: model: %w", err)
	}
	st, err := os.Stat(text)
	if err != nil {
		return nil, fmt.Errorf("validate: text: %w", err)
	}
	fp += fmt.Sprintf(";text:%d:%d", st.Size(), st.ModTime().UnixNano())
	// Needs: every upstream task (the checkpoint is complete when they are
	// done) and the tasks they read (the quantize stage's reports).
	var needs []pipeline.TaskRef
	seen := map[pipeline.TaskRef]bool{}
	addRef := func(r pipeline.TaskRef) {
		if !seen[r] {
			seen[r] = true
			needs = append(needs, r)
		}
	}
	for _, in := range pc.Inputs {
		for _, t := range in.Tasks {
			addRef(pipeline.TaskRef{Stage: in.ID, Key: t.Key})
			for _, r := range t.Needs {
				addRef(r)
			}
		}
	}
	mb, err := safetensorsBytes(model)
	if err != nil {
		return nil, fmt.Errorf("validate: model: %w", err)
	}
	est := 64<<20 + 4*mb
	if cfg, err := hfconfig.Load(model); err == nil && cfg.NumLayers > 0 {
		// Layer by layer (see run): the hidden states of every window for
		// both models, a batch of logits for both, one layer of each model
		// resident (and its F32 conversion), embeddings and lm_head in F32.
		win, n := int64(s.cfg.Window), int64(s.cfg.Windows)
		if win == 0 {
			win = 128
		}
		if n == 0 {
			n = 8
		}
		hd, v := int64(cfg.HiddenSize), int64(cfg.VocabSize)
		perLayer := mb / int64(cfg.NumLayers)
		est = min(est, 256<<20+2*n*win*hd*4+2*4*win*v*4+4*perLayer+3*v*hd*4)
	}
	return []*pipeline.Task{{
		Key:         ValidateKey,
		Needs:       needs,
		EstBytes:    est,
		Fingerprint: fp,
		Meta:        map[string]string{"backend": pc.Resources.Backend},
		Run:         s.run(needs, model, text, pc.Resources.Backend),
	}}, nil
}

// ValidationError is returned when thresholds fail; the run stops with it.
type ValidationError struct{ Failed []report.Check }

func (e *ValidationError) Error() string {
	var msgs []string
	for _, c := range e.Failed {
		msgs = append(msgs, c.Message)
	}
	return "validation failed: " + strings.Join(msgs, "; ")
}

func (s *validateStage) run(needs []pipeline.TaskRef, model, text, backend string) func(context.Context, *pipeline.TaskEnv) (*pipeline.Output, error) {
	return func(ctx context.Context, env *pipeline.TaskEnv) (*pipeline.Output, error) {
		fail := func(err error) (*pipeline.Output, error) { return nil, fmt.Errorf("validate: %w", err) }
		// Per-tensor weight error: the quantize stage's reports (measured
		// against the weights it quantized, rotated ones included).
		var reps []quant.Report
		for _, r := range needs {
			o, err := env.Input(r)
			if err != nil {
				return fail(err)
			}
			rs, err := reportsOf(o.Meta)
			if err != nil {
				return fail(fmt.Errorf("%s/%s: %s: %w", r.Stage, r.Key, metaQuantReports, err))
			}
			reps = append(reps, rs...)
		}
		packed := filepath.Join(env.OutDir, s.cfg.Packed)
		if s.cfg.GGUF != "" {
			packed = filepath.Join(env.OutDir, s.cfg.GGUF)
		}
		if len(reps) == 0 && s.cfg.GGUF == "" {
			var err error
			if reps, err = measurePacked(ctx, packed, model); err != nil {
				return fail(err)
			}
		}
		if backend == "" {
			backend = "auto"
		}
		// Float32 activations everywhere: the scores measure the weights'
		// quantization, independent of how a batch splits over MoE
		// experts (a routed expert seeing fewer than 8 tokens would
		// otherwise take the int8-activation GEMV).
		b, err := kernels.Open(backend, kernels.Options{F32Activations: true})
		if err != nil {
			return fail(err)
		}
		v, err := s.modelMetrics(ctx, b, backend, model, packed, text, env)
		if err != nil {
			return fail(err)
		}
		tensors := report.FromQuant(reps)
		v.Checks = s.checks(v, tensors)
		js, err := json.Marshal(v)
		if err != nil {
			return fail(err)
		}
		out := &pipeline.Output{Meta: map[string]string{report.MetaValidation: string(js)}}
		doc, err := json.MarshalIndent(struct {
			*report.Validation
			Tensors []report.TensorMetric `json:"tensors"`
		}{v, tensors}, "", "  ")
		if err != nil {
			return fail(err)
		}
		name := s.cfg.Out
		if name == "" {
			name = "validate.json"
		}
		if err := env.WriteArtifact(name, append(doc, '\n')); err != nil {
			return fail(err)
		}
		if env.Log != nil {
			env.Log.Info("validate", "ref_ppl", v.RefPPL, "quant_ppl", v.QuantPPL, "ppl_increase", v.PPLIncrease, "kl", v.KL, "top1", v.Top1)
		}
		var failed []report.Check
		for _, c := range v.Checks {
			if !c.Pass {
				failed = append(failed, c)
			}
		}
		if len(failed) > 0 {
			return nil, &ValidationError{Failed: failed}
		}
		return out, nil
	}
}

// modelMetrics runs both models over the text.
func (s *validateStage) modelMetrics(ctx context.Context, b kernels.Backend, backend, model, packed, text string, env *pipeline.TaskEnv) (*report.Validation, error) {
	tok, err := tokenizer.Load(filepath.Join(model, "tokenizer.json"))
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(text)
	if err != nil {
		return nil, err
	}
	if st.Size() > 1<<30 {
		return nil, fmt.Errorf("%s is %d bytes, over the 1 GiB limit", text, st.Size())
	}
	raw, err := os.ReadFile(text)
	if err != nil {
		return nil, err
	}
	ids, err := tok.Encode(string(raw))
	if err != nil {
		return nil, fmt.Errorf("tokenize %s: %w", text, err)
	}
	window, windows := s.cfg.Window, s.cfg.Windows
	if window == 0 {
		window = 128
	}
	if windows == 0 {
		windows = 8
	}
	requested := windows
	var warnings []string
	if n := len(ids) / window; n < windows {
		if n == 0 {
			return nil, fmt.Errorf("%s has %d tokens, fewer than one window of %d", text, len(ids), window)
		}
		if n < s.cfg.MinWindows {
			return nil, fmt.Errorf("%s has %d tokens: %d windows of %d, fewer than min_windows %d", text, len(ids), n, window, s.cfg.MinWindows)
		}
		windows = n
		w := fmt.Sprintf("%s has %d tokens: only %d of the %d requested windows of %d tokens; the scores are noisier (set min_windows to make this an error)", s.cfg.Text, len(ids), n, requested, window)
		warnings = append(warnings, w)
		if env.Log != nil {
			env.Log.Warn("validate: evaluation text shorter than requested", "text", s.cfg.Text, "tokens", len(ids), "windows", n, "requested_windows", requested, "window", window)
		}
	}
	// Lazy: the reference keeps its weights as stored (mmapped BF16) and
	// converts them per use, so a large model needs no F32 copy.
	ref, err := arch.Load(model, arch.Options{Backend: b, Lazy: true})
	if err != nil {
		return nil, err
	}
	defer ref.Close()
	var qm *arch.Model
	label := ""
	if s.cfg.GGUF != "" {
		cfg, err := hfconfig.Load(model)
		if err != nil {
			return nil, err
		}
		src, err := llamacpp.OpenGGUFSource(packed, cfg)
		if err != nil {
			return nil, err
		}
		defer src.Close()
		if qm, err = arch.Build(cfg, src, arch.Options{Backend: b}); err != nil {
			return nil, fmt.Errorf("gguf %s: %w", s.cfg.GGUF, err)
		}
		defer qm.Close()
		label = "gguf"
	} else {
		q, err := qmodel.Load(packed, qmodel.Options{Backend: b})
		if err != nil {
			return nil, err
		}
		defer q.Close()
		if q.Packed == 0 {
			return nil, fmt.Errorf("%s holds no packed projection", packed)
		}
		qm = q.Model
		label = methodLabel(packed)
	}
	// Layer by layer over all windows, each layer's mapped weights given
	// back after it: about one layer of either model is resident.
	opts := eval.Options{Window: window, Windows: windows, AfterLayer: func(l int) { releaseLayer(l, ref, qm) }}
	if env.Progress != nil {
		opts.Progress = func(done, total int) { env.Progress(int64(done), int64(total)) }
	}
	kl, err := eval.KL(ctx, ref, qm, ids, opts)
	if err != nil {
		return nil, err
	}
	return &report.Validation{
		Model: s.cfg.Model, Packed: s.cfg.Packed + s.cfg.GGUF, Text: s.cfg.Text, Window: window, Windows: kl.P.Windows,
		Tokens: kl.P.Tokens, Backend: backend, RefPPL: kl.P.PPL, QuantPPL: kl.Q.PPL,
		PPLIncrease: (kl.Q.PPL - kl.P.PPL) / kl.P.PPL, KL: kl.KL, MaxKL: kl.MaxKL, Top1: kl.Top1,
		Method:           label,
		RequestedWindows: requested,
		Warnings:         warnings,
	}, nil
}

// methodLabel names the packed model's formats and methods ("mxfp4 mr-gptq").
func methodLabel(dir string) string {
	nat, err := native.Open(dir)
	if err != nil {
		return ""
	}
	defer nat.Close()
	set := map[string]bool{}
	for _, n := range nat.Names() {
		if !nat.IsPacked(n) {
			continue
		}
		t, err := nat.Tensor(n)
		if err != nil {
			continue
		}
		set[strings.TrimSpace(t.Meta[quant.MetaFormat]+" "+t.Meta[quant.MetaMethod])] = true
	}
	var l []string
	for k := range set {
		l = append(l, k)
	}
	sort.Strings(l)
	return strings.Join(l, ", ")
}

// measurePacked compares each packed weight with the reference model's
// tensor of the same name, for weights without a folded rotation (a
// rotated weight is not comparable with the unrotated original).
func measurePacked(ctx context.Context, packed, model string) ([]quant.Report, error) {
	nat, err := native.Open(packed)
	if err != nil {
		return nil, err
	}
	defer nat.Close()
	ck, err := safetensors.Open(model)
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	var reps []quant.Report
	for _, n := range nat.Names() {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !nat.IsPacked(n) {
			continue
		}
		t, err := nat.Tensor(n)
		if err != nil {
			return nil, err
		}
		if len(native.RotationMeta(t.Meta)) > 0 {
			continue
		}
		p, err := nat.Packed(n)
		if err != nil {
			return nil, err
		}
		orig, err := ck.Tensor(n)
		if err != nil {
			return nil, fmt.Errorf("reference model: %w", err)
		}
		r, err := quant.MeasureTensor(orig, p)
		if err != nil {
			return nil, err
		}
		reps = append(reps, r)
	}
	return reps, nil
}

// checks evaluates the thresholds.
func (s *validateStage) checks(v *report.Validation, ts []report.TensorMetric) []report.Check {
	var cs []report.Check
	upper := func(metric string, val, limit float64, unit func(float64) string) {
		c := report.Check{Metric: metric, Value: val, Limit: limit, Max: true, Pass: val <= limit}
		if c.Pass {
			c.Message = fmt.Sprintf("%s %s within %s", metric, unit(val), unit(limit))
		} else {
			c.Message = fmt.Sprintf("%s %s exceeds the limit %s by %s", metric, unit(val), unit(limit), unit(val-limit))
		}
		cs = append(cs, c)
	}
	lower := func(metric string, val, limit float64, unit func(float64) string) {
		c := report.Check{Metric: metric, Value: val, Limit: limit, Pass: val >= limit}
		if c.Pass {
			c.Message = fmt.Sprintf("%s %s at least %s", metric, unit(val), unit(limit))
		} else {
			c.Message = fmt.Sprintf("%s %s is below the limit %s by %s", metric, unit(val), unit(limit), unit(limit-val))
		}
		cs = append(cs, c)
	}
	pct := func(x float64) string { return fmt.Sprintf("%.3f%%", 100*x) }
	num := func(x float64) string { return strconv.FormatFloat(x, 'g', 5, 64) }
	if s.cfg.MaxPPLIncrease != "" {
		lim, _ := ParseFraction(s.cfg.MaxPPLIncrease)
		upper("ppl_increase", v.PPLIncrease, lim, pct)
	}
	if s.cfg.MaxKL != nil {
		upper("kl", v.KL, *s.cfg.MaxKL, num)
	}
	if s.cfg.MinTop1 != nil {
		lower("top1", v.Top1, *s.cfg.MinTop1, num)
	}
	if s.cfg.MinCosine != nil || s.cfg.MinSQNR != nil {
		if len(ts) == 0 {
			cs = append(cs, report.Check{Metric: "weights", Message: "per-tensor thresholds set but no quantized tensor was measured"})
		}
		minC, minS := math.Inf(1), math.Inf(1)
		var wc, ws string
		for _, t := range ts {
			if t.Cosine < minC {
				minC, wc = t.Cosine, t.Name
			}
			if t.SQNRdB < minS {
				minS, ws = t.SQNRdB, t.Name
			}
		}
		if s.cfg.MinCosine != nil && len(ts) > 0 {
			lower("min_cosine ("+wc+")", minC, *s.cfg.MinCosine, num)
		}
		if s.cfg.MinSQNR != nil && len(ts) > 0 {
			lower("min_sqnr_db ("+ws+")", minS, *s.cfg.MinSQNR, num)
		}
	}
	return cs
}

// safetensorsBytes is the total size of the *.safetensors files in dir.
func safetensorsBytes(dir string) (int64, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.safetensors"))
	if err != nil {
		return 0, err
	}
	var n int64
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			return 0, err
		}
		n += st.Size()
	}
	return n, nil
}
