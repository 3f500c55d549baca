package stages

import (
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/marlin-llm/marlin/pipeline"
	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/tensor"
)

// SyntheticConfig configures the synthetic stage: deterministic pseudo-random
// tensors for tests, demos and scale runs (no model files needed).
type SyntheticConfig struct {
	// Seed makes the values reproducible; each tensor draws from a PCG
	// stream seeded with (seed, FNV-1a of its name).
	Seed uint64 `yaml:"seed,omitempty" json:"seed" jsonschema:"description=random seed"`
	// DType is the default element type (F32, F16, BF16, F64).
	DType string `yaml:"dtype,omitempty" json:"dtype" jsonschema:"enum=F32,enum=F16,enum=BF16,enum=F64,description=default element type"`
	// Std is the standard deviation of the normal distribution (mean 0).
	Std float64 `yaml:"std,omitempty" json:"std" jsonschema:"minimum=0,description=standard deviation (mean 0)"`
	// Layers repeats every tensor whose name contains {layer} for layers
	// 0..Layers-1 (0: no expansion).
	Layers int `yaml:"layers,omitempty" json:"layers" jsonschema:"minimum=0,description=expand {layer} in names over 0..layers-1"`
	// Tensors to generate; one task each.
	Tensors []SyntheticTensor `yaml:"tensors" json:"tensors" jsonschema:"required,minItems=1,description=tensors to generate; one task each (names must be unique after {layer} expansion)"`
}

// SyntheticTensor is one generated tensor.
type SyntheticTensor struct {
	Name  string `yaml:"name" json:"name" jsonschema:"required,minLength=1,description=tensor name; {layer} is replaced by each layer index when layers > 0"`
	Shape []int  `yaml:"shape" json:"shape" jsonschema:"required,minItems=1,maxItems=8,description=dimensions (1 to 8; each > 0; at most 2^34 elements)"`
	// DType overrides the stage default.
	DType string `yaml:"dtype,omitempty" json:"dtype,omitempty" jsonschema:"enum=F32,enum=F16,enum=BF16,enum=F64,description=element type (default: the stage's dtype)"`
}

var syntheticDTypes = []string{"F32", "F16", "BF16", "F64"}

// maxSyntheticElements bounds one generated tensor (2^34 elements).
const maxSyntheticElements = int64(1) << 34

// Validate checks dtypes, shapes and the uniqueness of expanded names.
func (c *SyntheticConfig) Validate() error {
	var errs pipeline.ErrorList
	if !validSynthDType(c.DType) {
		errs = append(errs, &pipeline.FieldError{Field: "dtype", Err: fmt.Errorf("unknown dtype %q (known: %s)", c.DType, strings.Join(syntheticDTypes, ", "))})
	}
	if math.IsNaN(c.Std) || math.IsInf(c.Std, 0) || c.Std < 0 {
		errs = append(errs, &pipeline.FieldError{Field: "std", Err: fmt.Errorf("must be a finite number >= 0, got %v", c.Std)})
	}
	if c.Layers < 0 || c.Layers > 1<<16 {
		errs = append(errs, &pipeline.FieldError{Field: "layers", Err: fmt.Errorf("must be in [0, 65536], got %d", c.Layers)})
	}
	if len(c.Tensors) == 0 {
		errs = append(errs, &pipeline.FieldError{Field: "tensors", Err: fmt.Errorf("at least one tensor is required")})
	}
	for i, t := range c.Tensors {
		f := func(s string) string { return fmt.Sprintf("tensors[%d].%s", i, s) }
		if t.Name == "" {
			errs = append(errs, &pipeline.FieldError{Field: f("name"), Err: fmt.Errorf("empty")})
		}
		if t.DType != "" && !validSynthDType(t.DType) {
			errs = append(errs, &pipeline.FieldError{Field: f("dtype"), Err: fmt.Errorf("unknown dtype %q (known: %s)", t.DType, strings.Join(syntheticDTypes, ", "))})
		}
		if len(t.Shape) == 0 || len(t.Shape) > 8 {
			errs = append(errs, &pipeline.FieldError{Field: f("shape"), Err: fmt.Errorf("need 1 to 8 dimensions, got %d", len(t.Shape))})
			continue
		}
		n := int64(1)
		for _, d := range t.Shape {
			if d <= 0 {
				errs = append(errs, &pipeline.FieldError{Field: f("shape"), Err: fmt.Errorf("dimensions must be > 0, got %v", t.Shape)})
				n = 0
				break
			}
			if n > maxSyntheticElements/int64(d) { // n·d over the limit, tested without wrapping int64
				errs = append(errs, &pipeline.FieldError{Field: f("shape"), Err: fmt.Errorf("%v has more than 2^34 elements", t.Shape)})
				break
			}
			n *= int64(d)
		}
	}
	if len(errs) == 0 {
		seen := map[string]bool{}
		for _, t := range c.expand() {
			if seen[t.Name] {
				return &pipeline.FieldError{Field: "tensors", Err: fmt.Errorf("duplicate tensor name %q (use {layer} with layers > 0)", t.Name)}
			}
			seen[t.Name] = true
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

func validSynthDType(s string) bool {
	for _, d := range syntheticDTypes {
		if s == d {
			return true
		}
	}
	return false
}

// expand returns the tensors with {layer} expanded and dtypes resolved.
func (c *SyntheticConfig) expand() []SyntheticTensor {
	var out []SyntheticTensor
	for _, t := range c.Tensors {
		if t.DType == "" {
			t.DType = c.DType
		}
		if c.Layers > 0 && strings.Contains(t.Name, "{layer}") {
			for l := 0; l < c.Layers; l++ {
				u := t
				u.Name = strings.ReplaceAll(t.Name, "{layer}", strconv.Itoa(l))
				out = append(out, u)
			}
			continue
		}
		out = append(out, t)
	}
	return out
}

// SyntheticKind is the "synthetic" stage kind.
func SyntheticKind() pipeline.Kind {
	return pipeline.Kind{
		Name:      "synthetic",
		Doc:       "deterministic seeded normal-random tensors of given names, shapes and dtypes (tests, demos, scale runs)",
		NewConfig: func() any { return &SyntheticConfig{DType: "F32", Std: 0.02} },
		New: func(cfg any) (pipeline.Stage, error) {
			c, ok := cfg.(*SyntheticConfig)
			if !ok {
				return nil, fmt.Errorf("synthetic: config is %T", cfg)
			}
			return &syntheticStage{cfg: *c}, nil
		},
	}
}

type syntheticStage struct{ cfg SyntheticConfig }

func (s *syntheticStage) Plan(ctx context.Context, pc *pipeline.PlanContext) ([]*pipeline.Task, error) {
	var tasks []*pipeline.Task
	for _, spec := range s.cfg.expand() {
		dt, err := tensor.ParseDType(spec.DType)
		if err != nil {
			return nil, err
		}
		n := int64(1)
		for _, d := range spec.Shape {
			n *= int64(d)
		}
		bytes := n * int64(dt.Size())
		tasks = append(tasks, &pipeline.Task{
			Key:      spec.Name,
			EstBytes: bytes + 4*n, // output + float32 scratch
			Meta: map[string]string{
				MetaDType: dt.String(),
				MetaShape: quant.FormatShape(spec.Shape),
				MetaBytes: strconv.FormatInt(bytes, 10),
			},
			Run: s.run(spec, dt),
		})
	}
	return tasks, nil
}

func (s *syntheticStage) run(spec SyntheticTensor, dt tensor.DType) func(context.Context, *pipeline.TaskEnv) (*pipeline.Output, error) {
	seed, std := s.cfg.Seed, s.cfg.Std
	return func(ctx context.Context, env *pipeline.TaskEnv) (*pipeline.Output, error) {
		t, err := SyntheticTensorData(ctx, spec.Name, spec.Shape, dt, seed, std)
		if err != nil {
			return nil, err
		}
		return &pipeline.Output{Tensors: []*tensor.Tensor{t}}, nil
	}
}

// SyntheticTensorData generates the tensor the synthetic stage produces for
// (name, shape, dtype, seed, std): N(0, std²) values from a PCG stream
// seeded with (seed, FNV-1a(name)), rounded to dtype.
func SyntheticTensorData(ctx context.Context, name string, shape []int, dt tensor.DType, seed uint64, std float64) (*tensor.Tensor, error) {
	h := fnv.New64a()
	h.Write([]byte(name))
	rng := rand.New(rand.NewPCG(seed, h.Sum64()))
	n := 1
	for _, d := range shape {
		n *= d
	}
	v := make([]float32, n)
	for i := range v {
		if i%(1<<16) == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		v[i] = float32(rng.NormFloat64() * std)
	}
	t, err := tensor.FromFloat32(name, dt, shape, v)
	if err != nil {
		return nil, fmt.Errorf("synthetic: %w", err)
	}
	return t, nil
}
