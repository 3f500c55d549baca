package stages

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/marlin-llm/marlin/export/ct"
	"github.com/marlin-llm/marlin/export/llamacpp"
	"github.com/marlin-llm/marlin/model/gguf"
	"github.com/marlin-llm/marlin/model/hfconfig"
	"github.com/marlin-llm/marlin/model/native"
	"github.com/marlin-llm/marlin/model/safetensors"
	"github.com/marlin-llm/marlin/pipeline"
	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/quant/hadamard"
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
	// compressed-tensors (vLLM / llm-compressor) or gptq (AutoGPTQ v1).
	Format string `yaml:"format" json:"format" jsonschema:"required,enum=gguf,enum=native,enum=compressed-tensors,enum=gptq,description=output format: gguf (llama.cpp); native (marlin's packed safetensors); compressed-tensors (vLLM / llm-compressor); gptq (AutoGPTQ v1)"`
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
	switch c.Format {
	case PackGGUF, PackNative, PackCT, PackGPTQ:
	default:
		errs = append(errs, &pipeline.FieldError{Field: "format", Err: fmt.Errorf("unknown format %q (known: gguf, native, compressed-tensors, gptq)", c.Format)})
	}
	if err := pipeline.CheckOutPath(c.Out); err != nil {
		errs = append(errs, &pipeline.FieldError{Field: "out", Err: err})
	}
	if c.Model == "" && c.Format != PackNative && c.Format != "" {
		errs = append(errs, &pipeline.FieldError{Field: "model", Err: fmt.Errorf("required for format %s (config.json and tokenizer)", c.Format)})
	}
	if c.Format == PackGGUF {
		recipe := c.GGUFType
		if recipe == "" {
			recipe = llamacpp.DefaultRecipe
		}
		if err := llamacpp.ValidateRecipe(recipe, c.Rules); err != nil {
			errs = append(errs, &pipeline.FieldError{Field: "gguf_type", Err: err})
		}
	} else if c.GGUFType != "" || len(c.Rules) > 0 {
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

// PackKind is the "pack" stage kind.
func PackKind() pipeline.Kind {
	return pipeline.Kind{
		Name:      "pack",
		Doc:       "write the model as GGUF (llama.cpp), marlin's native packed safetensors, compressed-tensors or GPTQ, streaming one tensor or shard at a time",
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
		case err != nil && s.cfg.Format == PackGGUF:
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
	if s.cfg.Format == PackGGUF {
		return []*pipeline.Task{{
			Key:         "gguf",
			Needs:       refs,
			EstBytes:    8 * maxBytes,
			Meta:        map[string]string{"format": PackGGUF, "out": s.cfg.Out},
			Fingerprint: fp,
			Run:         s.runGGUF(inputs, model),
		}}, nil
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
			Run:      s.runShard(sh, file),
		})
		shardRefs = append(shardRefs, pipeline.TaskRef{Stage: pc.StageID, Key: key})
	}
	tasks = append(tasks, &pipeline.Task{
		Key:         "index",
		Needs:       shardRefs,
		EstBytes:    1 << 20,
		Meta:        map[string]string{"format": s.cfg.Format, "shards": strconv.Itoa(len(shards))},
		Fingerprint: fp,
		Run:         s.runIndex(shardRefs, model),
	})
	return tasks, nil
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

// group returns the tensors of the weight name (the tensor itself and its
// packed companions).
func (it *inputTensors) group(name string) ([]*tensor.Tensor, error) {
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

// main returns the weight tensor itself and, when it is quantized, its
// Packed form.
func (it *inputTensors) main(name string) (*tensor.Tensor, *quant.Packed, error) {
	ts, err := it.group(name)
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

// logicalShape is a weight's shape: quant.shape (or rows×cols) for packed
// weights, the tensor's shape otherwise.
func logicalShape(t *tensor.Tensor, p *quant.Packed) []int {
	if p == nil {
		return t.Shape
	}
	if s, err := quant.ParseShape(t.Meta[quant.MetaShape]); err == nil && len(s) > 0 {
		return s
	}
	return []int{p.Rows, p.Cols}
}

// Float32 implements llamacpp.Source.
func (it *inputTensors) Float32(_ context.Context, name string) ([]float32, error) {
	t, p, err := it.main(name)
	if err != nil {
		return nil, err
	}
	if p != nil {
		out := make([]float32, p.Rows*p.Cols)
		p.Dequantize(out)
		if r, err := onlineRotation(t, p); err != nil {
			return nil, fmt.Errorf("tensor %q: %w", name, err)
		} else if r != nil {
			// codes are in the rotated basis (W·Rᵀ) and GGML has no online
			// activation rotation: un-rotate, Q·R, before re-encoding
			if err := r.ApplyT(out, p.Rows); err != nil {
				return nil, fmt.Errorf("tensor %q: %w", name, err)
			}
		}
		return out, nil
	}
	return tensor.ToFloat32(t)
}

// onlineRotation returns the input rotation of a packed weight whose
// activation side must be rotated at run time (MR-GPTQ's o_proj/down_proj:
// Meta rotation.input.placement = online), nil otherwise.
func onlineRotation(t *tensor.Tensor, p *quant.Packed) (*hadamard.Rotation, error) {
	if t.Meta[hadamard.MetaInputPlacement] != hadamard.PlacementOnline || t.Meta[hadamard.MetaInput] == "" {
		return nil, nil
	}
	return hadamard.Parse(t.Meta[hadamard.MetaInput], p.Cols)
}

// Blocks implements llamacpp.BlockSource: lossless copies of packed codes
// into GGML blocks.
func (it *inputTensors) Blocks(_ context.Context, name string, typ gguf.GGMLType) ([]byte, bool, error) {
	t, p, err := it.main(name)
	if err != nil || p == nil {
		return nil, false, err
	}
	if t.Meta[hadamard.MetaInputPlacement] == hadamard.PlacementOnline {
		return nil, false, nil // rotated basis: Float32 un-rotates, then re-encode
	}
	b, ok := llamacpp.TranscodeGGML(p, typ)
	return b, ok, nil
}

func (s *packStage) runGGUF(inputs []packInput, model string) func(context.Context, *pipeline.TaskEnv) (*pipeline.Output, error) {
	return func(ctx context.Context, env *pipeline.TaskEnv) (*pipeline.Output, error) {
		fail := func(err error) (*pipeline.Output, error) { return nil, fmt.Errorf("pack gguf: %w", err) }
		cfg, err := hfconfig.Load(model)
		if err != nil {
			return fail(err)
		}
		it := newInputTensors(env, inputs)
		// Names in upstream order and their logical shapes; packed weights
		// that GGML can hold as they are get a type rule of their own.
		var names []string
		shapes := map[string][]int{}
		auto := map[string]gguf.GGMLType{}
		packedNames := map[string]bool{}
		var unrotated []string
		for _, in := range inputs {
			for _, n := range in.names {
				names = append(names, n)
				if in.shape != nil && !in.packed {
					shapes[n] = in.shape // a plain tensor: no need to load it now
					continue
				}
				t, p, err := it.main(n)
				if err != nil {
					return fail(err)
				}
				shapes[n] = logicalShape(t, p)
				if p != nil && t.Meta[hadamard.MetaInputPlacement] == hadamard.PlacementOnline {
					unrotated = append(unrotated, n)
				}
				if p != nil {
					packedNames[n] = true
					if typ, ok := llamacpp.GGMLTypeFor(p); ok {
						auto[n] = typ
					}
				}
			}
		}
		if shapes["lm_head.weight"] != nil {
			// an untied lm_head (the rotate stage unties it: norms folded
			// into it) must be written even where config.json says tied
			cfg.TieWordEmbeddings = false
		}
		recipe := s.cfg.GGUFType
		if recipe == "" {
			recipe = llamacpp.DefaultRecipe
		}
		opt := llamacpp.Options{Recipe: recipe, Rules: s.cfg.Rules, Name: s.cfg.Name, TokenizerPre: s.cfg.TokenizerPre}
		plan, err := llamacpp.NewPlan(cfg, model, names, func(n string) []int { return shapes[n] }, opt)
		if err != nil {
			return fail(err)
		}
		// Transcodable packed weights: a GGUF tensor whose sources all
		// share one GGML-compatible packed format keeps it, unless a user
		// rule named the tensor.
		var rules []llamacpp.Rule
		rules = append(rules, s.cfg.Rules...)
		for _, t := range plan.Tensors {
			if len(t.Dims) < 2 {
				continue
			}
			typ, ok := auto[t.Sources[0]]
			for _, src := range t.Sources[1:] {
				ok = ok && auto[src] == typ
			}
			if ok {
				rules = append(rules, llamacpp.Rule{Match: t.Name, Type: typ.String()})
			}
		}
		if len(rules) > len(s.cfg.Rules) {
			opt.Rules = rules
			if plan, err = llamacpp.NewPlan(cfg, model, names, func(n string) []int { return shapes[n] }, opt); err != nil {
				return fail(err)
			}
		}
		// Packed weights GGML cannot hold as they are are dequantized and
		// re-encoded with the recipe's type: say so.
		var requant []string
		for i, t := range plan.Tensors {
			for _, src := range t.Sources {
				if _, ok := auto[src]; (ok && t.Direct()) || !packedNames[src] {
					continue
				}
				requant = append(requant, t.Name+"→"+plan.Types[i].String())
				break
			}
		}
		if len(unrotated) > 0 && env.Log != nil {
			env.Log.Warn("pack: weights with an online input rotation (MR-GPTQ) are un-rotated and re-encoded: GGML has no online rotation (the native output keeps them exact)", "tensors", len(unrotated), "first", unrotated[0])
		}
		if len(requant) > 0 && env.Log != nil {
			env.Log.Warn("pack: packed weights in formats GGUF cannot store are dequantized and re-encoded", "tensors", len(requant), "first", requant[0])
		}
		out, err := env.ArtifactPath(s.cfg.Out)
		if err != nil {
			return fail(err)
		}
		if err := plan.Write(ctx, out, it); err != nil {
			return fail(err)
		}
		res := &pipeline.Output{Meta: map[string]string{
			"gguf.arch":    plan.Arch,
			"gguf.tensors": strconv.Itoa(len(plan.Tensors)),
			"gguf.types":   llamacpp.TypeSummary(plan.Types),
		}}
		if env.Log != nil {
			env.Log.Info("pack: wrote GGUF", "file", s.cfg.Out, "arch", plan.Arch, "types", res.Meta["gguf.types"])
		}
		return res, nil
	}
}

// shardResult is what a shard task reports to the index task.
type shardResult struct {
	File    string               `json:"file"`
	Names   []string             `json:"names"`
	Size    int64                `json:"size"`
	Weights map[string]string    `json:"weights,omitempty"` // native: weight → format
	Rot     map[string]string    `json:"rotation,omitempty"`
	Schemes map[string]ct.Scheme `json:"schemes,omitempty"` // compressed-tensors: module → scheme
	Plain   []string             `json:"plain,omitempty"`   // unquantized 2-D module weights
	GPTQ    *ct.GPTQConfig       `json:"gptq,omitempty"`
}

func (s *packStage) runShard(inputs []packInput, file string) func(context.Context, *pipeline.TaskEnv) (*pipeline.Output, error) {
	return func(ctx context.Context, env *pipeline.TaskEnv) (*pipeline.Output, error) {
		fail := func(err error) (*pipeline.Output, error) {
			return nil, fmt.Errorf("pack %s %s: %w", s.cfg.Format, file, err)
		}
		it := newInputTensors(env, inputs)
		res := shardResult{File: file, Weights: map[string]string{}, Rot: map[string]string{}, Schemes: map[string]ct.Scheme{}}
		var ts []*tensor.Tensor
		for _, in := range inputs {
			for _, n := range in.names {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				group, err := it.group(n)
				if err != nil {
					return fail(err)
				}
				t, p, err := it.main(n)
				if err != nil {
					return fail(err)
				}
				if p != nil && s.cfg.Format != PackNative && t.Meta[hadamard.MetaInputPlacement] == hadamard.PlacementOnline {
					return fail(fmt.Errorf("%s: its codes need an online input rotation (MR-GPTQ on a weight whose input the rotate stage does not rotate) that %s checkpoints cannot express: pack it as native or gguf, or quantize it with method gptq", n, s.cfg.Format))
				}
				switch s.cfg.Format {
				case PackNative:
					ts = append(ts, group...)
					if p != nil {
						res.Weights[n] = p.Format.String()
						for k, v := range native.RotationMeta(t.Meta) {
							res.Rot[k] = v
						}
					}
				case PackCT:
					if p == nil {
						ts = append(ts, plainTensor(t))
						if len(t.Shape) == 2 && strings.HasSuffix(n, ".weight") {
							res.Plain = append(res.Plain, strings.TrimSuffix(n, ".weight"))
						}
						continue
					}
					out, sch, err := ct.Tensors(n, p)
					if err != nil {
						return fail(err)
					}
					ts = append(ts, out...)
					if sch.Format != "" {
						res.Schemes[strings.TrimSuffix(n, ".weight")] = sch
					}
				case PackGPTQ:
					if p == nil {
						ts = append(ts, plainTensor(t))
						continue
					}
					out, cfg, err := ct.GPTQTensors(n, p)
					if err != nil {
						return fail(err)
					}
					if res.GPTQ != nil && *res.GPTQ != cfg {
						return fail(fmt.Errorf("%s: GPTQ settings %+v differ from %+v (a GPTQ checkpoint has one setting)", n, cfg, *res.GPTQ))
					}
					res.GPTQ = &cfg
					ts = append(ts, out...)
				}
			}
		}
		path, err := env.ArtifactPath(filepath.Join(s.cfg.Out, file))
		if err != nil {
			return fail(err)
		}
		if s.cfg.Format == PackNative {
			res.Names, res.Size, err = native.WriteShard(path, ts)
		} else {
			safetensors.SortForAlignment(ts)
			for _, t := range ts {
				res.Names = append(res.Names, t.Name)
				res.Size += int64(len(t.Data))
			}
			err = safetensors.WriteFile(path, ts, map[string]string{"format": "pt"})
		}
		if err != nil {
			return fail(err)
		}
		b, err := json.Marshal(res)
		if err != nil {
			return fail(err)
		}
		return &pipeline.Output{Meta: map[string]string{"pack.shard": string(b)}}, nil
	}
}

// plainTensor strips Meta (safetensors has no per-tensor metadata).
func plainTensor(t *tensor.Tensor) *tensor.Tensor {
	return &tensor.Tensor{Name: t.Name, DType: t.DType, Shape: t.Shape, Data: t.Data}
}

func (s *packStage) runIndex(shards []pipeline.TaskRef, model string) func(context.Context, *pipeline.TaskEnv) (*pipeline.Output, error) {
	return func(ctx context.Context, env *pipeline.TaskEnv) (*pipeline.Output, error) {
		fail := func(err error) (*pipeline.Output, error) {
			return nil, fmt.Errorf("pack %s index: %w", s.cfg.Format, err)
		}
		dir, err := env.ArtifactDir(s.cfg.Out)
		if err != nil {
			return fail(err)
		}
		weightMap := map[string]string{}
		var total int64
		man := native.Manifest{Source: s.cfg.Model, Weights: map[string]string{}, Rotation: map[string]string{}}
		schemes := map[string]ct.Scheme{}
		var plain []string
		var gptq *ct.GPTQConfig
		for _, ref := range shards {
			o, err := env.Input(ref)
			if err != nil {
				return fail(err)
			}
			var r shardResult
			if err := json.Unmarshal([]byte(o.Meta["pack.shard"]), &r); err != nil {
				return fail(fmt.Errorf("shard %s: %w", ref.Key, err))
			}
			for _, n := range r.Names {
				weightMap[n] = r.File
			}
			total += r.Size
			man.Shards = append(man.Shards, r.File)
			for k, v := range r.Weights {
				man.Weights[k] = v
			}
			for k, v := range r.Rot {
				man.Rotation[k] = v
			}
			for k, v := range r.Schemes {
				schemes[k] = v
			}
			plain = append(plain, r.Plain...)
			if r.GPTQ != nil {
				if gptq != nil && *gptq != *r.GPTQ {
					return fail(fmt.Errorf("shards disagree on GPTQ settings: %+v vs %+v", *gptq, *r.GPTQ))
				}
				gptq = r.GPTQ
			}
		}
		writeJSON := func(name string, v any) error {
			b, err := json.MarshalIndent(v, "", "  ")
			if err != nil {
				return err
			}
			return env.WriteArtifact(filepath.Join(s.cfg.Out, name), append(b, '\n'))
		}
		if len(shards) > 1 || s.cfg.Format == PackNative {
			if s.cfg.Format == PackNative {
				for _, f := range []string{native.IndexFile, native.ManifestFile} {
					if _, err := env.ArtifactPath(filepath.Join(s.cfg.Out, f)); err != nil {
						return fail(err)
					}
				}
				if err := native.WriteIndex(dir, weightMap, total, man); err != nil {
					return fail(err)
				}
			} else if err := writeJSON(safetensors.IndexFile, map[string]any{"metadata": map[string]any{"total_size": total}, "weight_map": weightMap}); err != nil {
				return fail(err)
			}
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
			switch s.cfg.Format {
			case PackCT:
				if len(schemes) > 0 {
					qc, err := ct.QuantizationConfig(schemes, plain)
					if err != nil {
						return fail(err)
					}
					cfg["quantization_config"] = qc
				}
			case PackGPTQ:
				if gptq != nil {
					cfg["quantization_config"] = gptq.Map()
				}
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
