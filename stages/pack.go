package stages

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/marlin-llm/marlin/export"
	"github.com/marlin-llm/marlin/export/llamacpp"
	"github.com/marlin-llm/marlin/model/hfconfig"
	"github.com/marlin-llm/marlin/model/native"
	"github.com/marlin-llm/marlin/pipeline"
	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/tensor"
)

// Pack output formats.
const (
	PackGGUF   = "gguf"
	PackNative = "native"
	PackCT     = "compressed-tensors"
	PackGPTQ   = "gptq"
)

// PackConfig configures the pack stage: write the upstream tensors (load
// stage: plain weights; quantize stage: packed weights with their Meta) as
// a file another runtime loads.
type PackConfig struct {
	// Format is gguf (llama.cpp), native (marlin's packed safetensors),
	// compressed-tensors (vLLM / llm-compressor) or gptq (AutoGPTQ v1): a
	// row of packFormats, whose enum and description JSONSchemaExtend
	// writes.
	Format string `yaml:"format" json:"format" jsonschema:"required"`
	// Out is the output path relative to the run's output directory: a
	// .gguf file for gguf, a directory for the other formats.
	Out string `yaml:"out" json:"out" jsonschema:"required,minLength=1,description=output path relative to the run's output directory: a .gguf file for gguf; a directory for the other formats"`
	// Model is the Hugging Face model directory whose config.json and
	// tokenizer files describe the weights (relative to the job file).
	// Required for gguf, compressed-tensors and gptq; native copies them
	// when given.
	Model string `yaml:"model,omitempty" json:"model,omitempty" jsonschema:"description=model directory with config.json and tokenizer.json (relative to the job file)"`
	// GGUFType is the GGUF tensor-type recipe for tensors that are not
	// already quantized in a GGML-compatible format (llamacpp.Recipes,
	// from the GGUF-type registry; its schema enum is written by
	// JSONSchemaExtend). Packed mxfp4, symmetric int4 and int8 weights
	// with F16 scales and groups of 32·k are copied into MXFP4/Q4_0/Q8_0
	// blocks without re-quantizing.
	GGUFType string `yaml:"gguf_type,omitempty" json:"gguf_type,omitempty" jsonschema:"description=GGUF type recipe (default f16)"`
	// Rules override GGUF tensor types by llama.cpp or Hugging Face name
	// (first match wins), e.g. {match: "*.ffn_down_exps.*", type: q8_0}.
	Rules []llamacpp.Rule `yaml:"rules,omitempty" json:"rules,omitempty" jsonschema:"description=GGUF tensor-type overrides by llama.cpp or Hugging Face tensor name; tried in order before gguf_type; the first match wins (gguf only)"`
	// TokenizerPre overrides the recognised pre-tokenizer name (gguf).
	TokenizerPre string `yaml:"tokenizer_pre,omitempty" json:"tokenizer_pre,omitempty" jsonschema:"description=tokenizer.ggml.pre value written instead of the pre-tokenizer recognised from the tokenizer files (gguf only)"`
	// Name is general.name (gguf; default from the model directory).
	Name string `yaml:"name,omitempty" json:"name,omitempty" jsonschema:"description=general.name of the GGUF file (gguf only; default derived from the model directory name)"`
	// ShardSize bounds the input bytes per safetensors shard (native,
	// compressed-tensors, gptq; default 2GiB). Each shard is one task, so
	// a resumed run rewrites only unfinished shards.
	ShardSize pipeline.ByteSize `yaml:"shard_size,omitempty" json:"shard_size,omitempty" jsonschema:"description=input bytes per output shard (default 2GiB)"`
}

// Validate checks the format, paths and GGUF recipe.
func (c *PackConfig) Validate() error {
	var errs pipeline.ErrorList
	ex, known := lookupPackFormat(c.Format)
	if !known {
		errs = append(errs, &pipeline.FieldError{Field: "format", Err: fmt.Errorf("unknown format %q (known: %s)", c.Format, strings.Join(packFormatNames(), ", "))})
	}
	if err := pipeline.CheckOutPath(c.Out); err != nil {
		errs = append(errs, &pipeline.FieldError{Field: "out", Err: err})
	}
	if c.Model == "" && c.Format != "" && (!known || ex.NeedsModel()) {
		errs = append(errs, &pipeline.FieldError{Field: "model", Err: fmt.Errorf("required for format %s (config.json and tokenizer)", c.Format)})
	}
	if known {
		for _, fe := range ex.Validate(c.settings("")) {
			errs = append(errs, &pipeline.FieldError{Field: fe.Field, Err: fe.Err})
		}
	}
	if c.Format != PackGGUF && (c.GGUFType != "" || len(c.Rules) > 0) {
		errs = append(errs, &pipeline.FieldError{Field: "gguf_type", Err: errors.New("gguf_type and rules apply to format gguf only")})
	}
	if c.ShardSize < 0 {
		errs = append(errs, &pipeline.FieldError{Field: "shard_size", Err: errors.New("must be >= 0")})
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// settings are the exporters' view of the config; model is the model
// directory resolved against the job file.
func (c *PackConfig) settings(model string) export.Settings {
	return export.Settings{Format: c.Format, Model: model, ModelAsGiven: c.Model,
		GGUFType: c.GGUFType, Rules: c.Rules, TokenizerPre: c.TokenizerPre, Name: c.Name}
}

// PackKind is the "pack" stage kind.
func PackKind() pipeline.Kind {
	return pipeline.Kind{
		Name:      "pack",
		Doc:       "write the model as " + packFormatsDoc() + ", streaming one tensor or shard at a time",
		NewConfig: func() any { return &PackConfig{GGUFType: ""} },
		New: func(cfg any) (pipeline.Stage, error) {
			c, ok := cfg.(*PackConfig)
			if !ok {
				return nil, fmt.Errorf("pack: config is %T", cfg)
			}
			return &packStage{cfg: *c}, nil
		},
	}
}

type packStage struct{ cfg PackConfig }

// packInput is one upstream task and the tensor names it holds.
type packInput struct {
	ref   pipeline.TaskRef
	names []string
	bytes int64
	shape []int // single-tensor tasks with a planner-visible shape
	// packed is set when the planner says the tensor may be quantized
	// (quant.format in the task Meta).
	packed bool
}

func (s *packStage) modelDir(pc *pipeline.PlanContext) string {
	p := s.cfg.Model
	if p != "" && !filepath.IsAbs(p) {
		p = filepath.Join(pc.JobDir, p)
	}
	return p
}

// Plan makes one task for gguf (the file), and for the safetensors formats
// one task per shard plus an index task that needs them all.
func (s *packStage) Plan(ctx context.Context, pc *pipeline.PlanContext) ([]*pipeline.Task, error) {
	var inputs []packInput
	seen := map[string]bool{}
	var maxBytes int64
	for _, in := range pc.Inputs {
		for _, t := range in.Tasks {
			if isInternal(t.Meta) {
				continue // a report or calibration task: no model tensors
			}
			names := taskTensors(t)
			for _, n := range names {
				if seen[n] {
					return nil, fmt.Errorf("pack: tensor %q comes from two upstream tasks", n)
				}
				seen[n] = true
			}
			b := taskBytes(t.Meta)
			maxBytes = max(maxBytes, b)
			pi := packInput{ref: pipeline.TaskRef{Stage: in.ID, Key: t.Key}, names: names, bytes: b}
			if sh, ok := taskShape(t.Meta); ok && len(names) == 1 {
				pi.shape = sh
			}
			if f := t.Meta[quant.MetaFormat]; f != "" && f != "skip" {
				pi.packed = true
			}
			inputs = append(inputs, pi)
		}
	}
	if len(inputs) == 0 {
		return nil, errors.New("pack: no upstream tensors (needs: a load or quantize stage)")
	}
	upRecipe, upImatrix, err := upstreamRecipe(pc)
	if err != nil {
		return nil, err
	}
	settings := func(model string) export.Settings {
		st := s.cfg.settings(model)
		if st.Format == PackGGUF && st.GGUFType == "" {
			st.GGUFType = upRecipe
		}
		st.HasImatrix = upImatrix
		return st
	}
	if s.cfg.Format == PackGGUF && upRecipe != "" && s.cfg.GGUFType != "" && !strings.EqualFold(s.cfg.GGUFType, upRecipe) && pc.Log != nil {
		pc.Log.Warn("pack: gguf_type differs from the quantize stage's gguf_recipe; it types only the tensors left in float", "gguf_type", s.cfg.GGUFType, "gguf_recipe", upRecipe)
	}
	ex, ok := lookupPackFormat(s.cfg.Format)
	if !ok {
		return nil, fmt.Errorf("pack: unknown format %q", s.cfg.Format)
	}
	fileEx, isFile := ex.(export.FileExporter)
	model := s.modelDir(pc)
	fp := ""
	if model != "" {
		var err error
		if fp, err = dirFingerprint(model, "config.json", "tokenizer.json", "tokenizer_config.json"); err != nil {
			return nil, fmt.Errorf("pack: model: %w", err)
		}
	}
	var refs []pipeline.TaskRef
	for _, in := range inputs {
		refs = append(refs, in.ref)
	}
	if model != "" {
		cfg, err := hfconfig.Load(model)
		switch {
		case err != nil && isFile:
			return nil, fmt.Errorf("pack: %w", err)
		case err == nil:
			// A file written with config.json's layer count must hold
			// exactly those layers: refuse before anything runs.
			var names []string
			for _, in := range inputs {
				names = append(names, in.names...)
			}
			if err := cfg.CheckLayers(names); err != nil {
				return nil, fmt.Errorf("pack: %w", err)
			}
		}
	}
	if isFile {
		return []*pipeline.Task{{
			Key:         s.cfg.Format,
			Needs:       refs,
			EstBytes:    8 * maxBytes,
			Meta:        map[string]string{"format": s.cfg.Format, "out": s.cfg.Out},
			Fingerprint: fp,
			Run:         s.runFile(fileEx, inputs, settings(model)),
		}}, nil
	}
	shardEx, ok := ex.(export.ShardExporter)
	if !ok {
		return nil, fmt.Errorf("pack: format %s is neither a file nor a shard exporter", s.cfg.Format)
	}
	limit := int64(s.cfg.ShardSize)
	if limit == 0 {
		limit = 2 << 30
	}
	var shards [][]packInput
	var cur []packInput
	var curBytes int64
	for _, in := range inputs {
		if len(cur) > 0 && curBytes+in.bytes > limit {
			shards = append(shards, cur)
			cur, curBytes = nil, 0
		}
		cur = append(cur, in)
		curBytes += in.bytes
	}
	shards = append(shards, cur)
	var tasks []*pipeline.Task
	var shardRefs []pipeline.TaskRef
	for i, sh := range shards {
		var needs []pipeline.TaskRef
		var est int64
		for _, in := range sh {
			needs = append(needs, in.ref)
			est += in.bytes
		}
		key := fmt.Sprintf("shard.%05d", i)
		file := native.ShardName(i, len(shards))
		tasks = append(tasks, &pipeline.Task{
			Key:      key,
			Needs:    needs,
			EstBytes: 2 * est,
			Meta:     map[string]string{"format": s.cfg.Format, "file": file},
			Run:      s.runShard(shardEx, sh, file),
		})
		shardRefs = append(shardRefs, pipeline.TaskRef{Stage: pc.StageID, Key: key})
	}
	tasks = append(tasks, &pipeline.Task{
		Key:         "index",
		Needs:       shardRefs,
		EstBytes:    1 << 20,
		Meta:        map[string]string{"format": s.cfg.Format, "shards": strconv.Itoa(len(shards))},
		Fingerprint: fp,
		Run:         s.runIndex(shardEx, shardRefs, model),
	})
	return tasks, nil
}

// upstreamRecipe returns the gguf_recipe the upstream quantize tasks were
// planned with ("" when none) and whether they used importance weights;
// two different recipes are an error.
func upstreamRecipe(pc *pipeline.PlanContext) (string, bool, error) {
	recipe, imatrix := "", false
	for _, in := range pc.Inputs {
		for _, t := range in.Tasks {
			r := t.Meta[MetaGGUFRecipe]
			if r == "" {
				continue
			}
			if recipe != "" && r != recipe {
				return "", false, fmt.Errorf("pack: upstream tensors were quantized for two GGUF recipes (%s and %s)", recipe, r)
			}
			recipe = r
			imatrix = imatrix || t.Meta[metaGGUFImatrix] == "true"
		}
	}
	return recipe, imatrix, nil
}

// dirFingerprint identifies the metadata files of a model directory by
// name, size and modification time.
func dirFingerprint(dir string, files ...string) (string, error) {
	var parts []string
	for _, f := range files {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			if os.IsNotExist(err) && f != "config.json" {
				continue
			}
			return "", err
		}
		parts = append(parts, fmt.Sprintf("%s:%d:%d", f, st.Size(), st.ModTime().UnixNano()))
	}
	return strings.Join(parts, ";"), nil
}

// inputTensors serves upstream tensors by name, keeping the last few task
// outputs so that consecutive tensors of one task load it once.
type inputTensors struct {
	env   *pipeline.TaskEnv
	where map[string]pipeline.TaskRef
	mu    sync.Mutex
	cache []cachedOutput
}

type cachedOutput struct {
	ref pipeline.TaskRef
	out *pipeline.Output
}

func newInputTensors(env *pipeline.TaskEnv, inputs []packInput) *inputTensors {
	it := &inputTensors{env: env, where: map[string]pipeline.TaskRef{}}
	for _, in := range inputs {
		for _, n := range in.names {
			it.where[n] = in.ref
		}
	}
	return it
}

func (it *inputTensors) output(ref pipeline.TaskRef) (*pipeline.Output, error) {
	it.mu.Lock()
	defer it.mu.Unlock()
	for _, c := range it.cache {
		if c.ref == ref {
			return c.out, nil
		}
	}
	out, err := it.env.Input(ref)
	if err != nil {
		return nil, err
	}
	it.cache = append(it.cache, cachedOutput{ref, out})
	if len(it.cache) > 4 {
		it.cache = it.cache[1:]
	}
	return out, nil
}

// Group implements export.Weights: the tensors of the weight name (the tensor itself and its
// packed companions).
func (it *inputTensors) Group(name string) ([]*tensor.Tensor, error) {
	ref, ok := it.where[name]
	if !ok {
		return nil, fmt.Errorf("tensor %q is not an upstream output", name)
	}
	out, err := it.output(ref)
	if err != nil {
		return nil, err
	}
	var ts []*tensor.Tensor
	for _, t := range out.Tensors {
		if t.Name == name || strings.HasPrefix(t.Name, name+".") && isCompanion(t) {
			ts = append(ts, t)
		}
	}
	if len(ts) == 0 {
		return nil, fmt.Errorf("upstream task %s/%s has no tensor %q", ref.Stage, ref.Key, name)
	}
	return ts, nil
}

func isCompanion(t *tensor.Tensor) bool {
	r := t.Meta[quant.MetaRole]
	return r == "scales" || r == "zeros" || r == "g_idx"
}

// Main implements export.Weights: the weight tensor itself and, when it is quantized, its
// Packed form.
func (it *inputTensors) Main(name string) (*tensor.Tensor, *quant.Packed, error) {
	ts, err := it.Group(name)
	if err != nil {
		return nil, nil, err
	}
	var mainT *tensor.Tensor
	for _, t := range ts {
		if t.Name == name {
			mainT = t
		}
	}
	if mainT == nil {
		return nil, nil, fmt.Errorf("tensor %q missing", name)
	}
	if !quant.IsPacked(mainT) || mainT.Meta[quant.MetaRole] != "codes" {
		return mainT, nil, nil
	}
	p, err := quant.FromTensors(name, ts)
	if err != nil {
		return nil, nil, err
	}
	return mainT, p, nil
}

// runFile writes a single-file format (gguf) from every input.
func (s *packStage) runFile(ex export.FileExporter, inputs []packInput, settings export.Settings) func(context.Context, *pipeline.TaskEnv) (*pipeline.Output, error) {
	return func(ctx context.Context, env *pipeline.TaskEnv) (*pipeline.Output, error) {
		fail := func(err error) (*pipeline.Output, error) { return nil, fmt.Errorf("pack %s: %w", s.cfg.Format, err) }
		// Names in upstream order; plain tensors with a planner-visible
		// shape need not be loaded to plan the file.
		var names []string
		shapes := map[string][]int{}
		for _, in := range inputs {
			for _, n := range in.names {
				names = append(names, n)
				if in.shape != nil && !in.packed {
					shapes[n] = in.shape
				}
			}
		}
		out, err := env.ArtifactPath(s.cfg.Out)
		if err != nil {
			return fail(err)
		}
		meta, err := ex.WriteFile(ctx, out, settings, newInputTensors(env, inputs), names, shapes, env.Log)
		if err != nil {
			return fail(err)
		}
		if env.Log != nil {
			args := []any{"file", s.cfg.Out}
			for _, k := range slices.Sorted(maps.Keys(meta)) {
				args = append(args, k, meta[k])
			}
			env.Log.Info("pack: wrote "+s.cfg.Format, args...)
		}
		return &pipeline.Output{Meta: meta}, nil
	}
}

// shardHead is the part of a shard's report the stage reads: the file,
// its tensors and their bytes; the exporter's own report sits beside it
// in the same JSON object (Output Meta "pack.shard").
type shardHead struct {
	File  string   `json:"file"`
	Names []string `json:"names"`
	Size  int64    `json:"size"`
}

func (s *packStage) runShard(ex export.ShardExporter, inputs []packInput, file string) func(context.Context, *pipeline.TaskEnv) (*pipeline.Output, error) {
	return func(ctx context.Context, env *pipeline.TaskEnv) (*pipeline.Output, error) {
		fail := func(err error) (*pipeline.Output, error) {
			return nil, fmt.Errorf("pack %s %s: %w", s.cfg.Format, file, err)
		}
		it := newInputTensors(env, inputs)
		sh := ex.NewShard(s.cfg.settings(""))
		for _, in := range inputs {
			for _, n := range in.names {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				if err := sh.Add(n, it); err != nil {
					return fail(err)
				}
			}
		}
		path, err := env.ArtifactPath(filepath.Join(s.cfg.Out, file))
		if err != nil {
			return fail(err)
		}
		head := shardHead{File: file}
		var rep any
		if head.Names, head.Size, rep, err = sh.Write(path); err != nil {
			return fail(err)
		}
		b, err := mergeJSON(head, rep)
		if err != nil {
			return fail(err)
		}
		return &pipeline.Output{Meta: map[string]string{"pack.shard": string(b)}}, nil
	}
}

// mergeJSON marshals the fields of two JSON objects as one object.
func mergeJSON(a, b any) ([]byte, error) {
	m := map[string]json.RawMessage{}
	for _, v := range []any{b, a} {
		raw, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		if string(raw) == "null" {
			continue
		}
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, err
		}
	}
	return json.Marshal(m)
}

func (s *packStage) runIndex(ex export.ShardExporter, shards []pipeline.TaskRef, model string) func(context.Context, *pipeline.TaskEnv) (*pipeline.Output, error) {
	return func(ctx context.Context, env *pipeline.TaskEnv) (*pipeline.Output, error) {
		fail := func(err error) (*pipeline.Output, error) {
			return nil, fmt.Errorf("pack %s index: %w", s.cfg.Format, err)
		}
		dir, err := env.ArtifactDir(s.cfg.Out)
		if err != nil {
			return fail(err)
		}
		var reports []export.ShardReport
		weightMap := map[string]string{}
		for _, ref := range shards {
			o, err := env.Input(ref)
			if err != nil {
				return fail(err)
			}
			var h shardHead
			raw := []byte(o.Meta["pack.shard"])
			if err := json.Unmarshal(raw, &h); err != nil {
				return fail(fmt.Errorf("shard %s: %w", ref.Key, err))
			}
			for _, n := range h.Names {
				weightMap[n] = h.File
			}
			reports = append(reports, export.ShardReport{File: h.File, Names: h.Names, Size: h.Size, Report: raw})
		}
		writeJSON := func(name string, v any) error {
			b, err := json.MarshalIndent(v, "", "  ")
			if err != nil {
				return err
			}
			return env.WriteArtifact(filepath.Join(s.cfg.Out, name), append(b, '\n'))
		}
		for _, f := range ex.IndexFiles(len(shards)) {
			if _, err := env.ArtifactPath(filepath.Join(s.cfg.Out, f)); err != nil {
				return fail(err)
			}
		}
		qc, err := ex.WriteIndex(dir, s.cfg.settings(model), reports, func(name string, b []byte) error {
			return env.WriteArtifact(filepath.Join(s.cfg.Out, name), b)
		})
		if err != nil {
			return fail(err)
		}
		if model != "" {
			var cfg map[string]any
			b, err := os.ReadFile(filepath.Join(model, "config.json"))
			if err != nil {
				return fail(err)
			}
			if err := json.Unmarshal(b, &cfg); err != nil {
				return fail(fmt.Errorf("config.json: %w", err))
			}
			if _, ok := weightMap["lm_head.weight"]; ok {
				cfg["tie_word_embeddings"] = false // lm_head is written: loaders must use it
			}
			if qc != nil {
				cfg["quantization_config"] = qc
			}
			if err := writeJSON("config.json", cfg); err != nil {
				return fail(err)
			}
			for _, f := range []string{"tokenizer.json", "tokenizer_config.json", "generation_config.json", "special_tokens_map.json"} {
				b, err := os.ReadFile(filepath.Join(model, f))
				if os.IsNotExist(err) {
					continue
				}
				if err != nil {
					return fail(err)
				}
				if err := env.WriteArtifact(filepath.Join(s.cfg.Out, f), b); err != nil {
					return fail(err)
				}
			}
		}
		return &pipeline.Output{Meta: map[string]string{}}, nil
	}
}
