package stages

import (
	"context"
	"fmt"
	"strconv"

	"github.com/marlin-llm/marlin/pipeline"
	"github.com/marlin-llm/marlin/quant/hadamard"
	"github.com/marlin-llm/marlin/quant/rotate"
	"github.com/marlin-llm/marlin/tensor"
)

// RotateConfig configures the rotate stage: a function-preserving
// block-diagonal Hadamard rotation of the residual stream (see package
// quant/rotate): RMSNorm scales are folded into the Linears that read the
// residual, whose inputs are rotated (folded placement), the embedding and
// the residual writers' outputs are rotated, a tied lm_head is untied.
type RotateConfig struct {
	// Method is the rotation family (only hadamard).
	Method string `yaml:"method,omitempty" json:"method,omitempty" jsonschema:"enum=hadamard,description=rotation family"`
	// Block is the Hadamard block size: the target format's group (16 for
	// NVFP4, 32 for MXFP4, 128 for INT4-g128).
	Block int `yaml:"block,omitempty" json:"block,omitempty" jsonschema:"description=Hadamard block (power of two; the format group size)"`
	// Seed draws random ±1 signs per channel (0: plain Hadamard).
	Seed uint64 `yaml:"seed,omitempty" json:"seed,omitempty" jsonschema:"description=random sign seed (0: none)"`
}

// Validate checks the method and block.
func (c *RotateConfig) Validate() error {
	var errs pipeline.ErrorList
	if c.Method != "" && c.Method != "hadamard" {
		errs = append(errs, &pipeline.FieldError{Field: "method", Err: fmt.Errorf("unknown rotation %q (known: hadamard)", c.Method)})
	}
	if c.Block <= 0 || c.Block&(c.Block-1) != 0 || c.Block > hadamard.MaxBlock {
		errs = append(errs, &pipeline.FieldError{Field: "block", Err: fmt.Errorf("must be a power of two in 1..%d, got %d", hadamard.MaxBlock, c.Block)})
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// RotateKind is the "rotate" stage kind.
func RotateKind() pipeline.Kind {
	return pipeline.Kind{
		Name:      "rotate",
		Doc:       "function-preserving block Hadamard rotation of the residual stream (norms folded, embedding/writers/readers rotated, lm_head untied); one task per tensor",
		NewConfig: func() any { return &RotateConfig{Method: "hadamard", Block: 32} },
		New: func(cfg any) (pipeline.Stage, error) {
			c, ok := cfg.(*RotateConfig)
			if !ok {
				return nil, fmt.Errorf("rotate: config is %T", cfg)
			}
			if err := c.Validate(); err != nil {
				return nil, fmt.Errorf("rotate: %w", err)
			}
			return &rotateStage{cfg: *c}, nil
		},
	}
}

type rotateStage struct{ cfg RotateConfig }

// tensorIndex maps tensor names to the upstream tasks holding them (a task
// keyed by the tensor name, or a group task listing it in Meta "tensors").
type tensorIndex struct {
	refs  map[string]pipeline.TaskRef
	metas map[string]map[string]string
	names []string
}

func indexTensors(inputs []*pipeline.StagePlan) (*tensorIndex, error) {
	ix := &tensorIndex{refs: map[string]pipeline.TaskRef{}, metas: map[string]map[string]string{}}
	for _, in := range inputs {
		for _, t := range in.Tasks {
			if isInternal(t.Meta) {
				continue
			}
			for _, n := range taskTensors(t) {
				if _, dup := ix.refs[n]; dup {
					return nil, fmt.Errorf("tensor %q produced by two upstream tasks", n)
				}
				ix.refs[n] = pipeline.TaskRef{Stage: in.ID, Key: t.Key}
				ix.metas[n] = t.Meta
				ix.names = append(ix.names, n)
			}
		}
	}
	return ix, nil
}

// fetch returns the tensor called name from the output of ref.
func fetch(env *pipeline.TaskEnv, ref pipeline.TaskRef, name string) (*tensor.Tensor, error) {
	out, err := env.Input(ref)
	if err != nil {
		return nil, err
	}
	for _, t := range out.Tensors {
		if t.Name == name {
			return t, nil
		}
	}
	return nil, fmt.Errorf("task %s/%s has no tensor %q", ref.Stage, ref.Key, name)
}

func (s *rotateStage) Plan(ctx context.Context, pc *pipeline.PlanContext) ([]*pipeline.Task, error) {
	if len(pc.Inputs) == 0 {
		return nil, fmt.Errorf("rotate: needs an upstream stage that produces tensors (load)")
	}
	ix, err := indexTensors(pc.Inputs)
	if err != nil {
		return nil, fmt.Errorf("rotate: %w", err)
	}
	_, hasHead := ix.refs[rotate.LMHeadName]
	ops, err := rotate.Plan(ix.names, !hasHead)
	if err != nil {
		return nil, err
	}
	var tasks []*pipeline.Task
	for _, op := range ops {
		needs := []pipeline.TaskRef{ix.refs[op.Source]}
		if op.Norm != "" && ix.refs[op.Norm] != needs[0] {
			needs = append(needs, ix.refs[op.Norm])
		}
		meta := map[string]string{}
		for k, v := range ix.metas[op.Source] {
			if k != MetaTensors {
				meta[k] = v
			}
		}
		meta[metaRotationRole] = op.Role.String()
		meta[metaRotationSpec] = fmt.Sprintf("hadamard:block=%d:seed=%d", s.cfg.Block, s.cfg.Seed)
		var est int64 = 1 << 20
		if b, err := strconv.ParseInt(meta[MetaBytes], 10, 64); err == nil {
			est += 5 * b
		}
		if op.Role != rotate.Keep {
			meta[MetaDType] = tensor.F32.String()
		}
		// Transient: the rotated F32 copy is dropped once its readers (a
		// layer task) are done, so the workdir never holds the rotated model.
		tasks = append(tasks, &pipeline.Task{Key: op.Name, Needs: needs, EstBytes: est, Meta: meta, Transient: true, Run: s.run(op, needs)})
	}
	return tasks, nil
}

func (s *rotateStage) run(op rotate.Op, needs []pipeline.TaskRef) func(context.Context, *pipeline.TaskEnv) (*pipeline.Output, error) {
	return func(ctx context.Context, env *pipeline.TaskEnv) (*pipeline.Output, error) {
		src, err := fetch(env, needs[0], op.Source)
		if err != nil {
			return nil, fmt.Errorf("rotate %s: %w", op.Name, err)
		}
		if op.Role == rotate.Keep {
			t := *src
			t.Name = op.Name
			return &pipeline.Output{Tensors: []*tensor.Tensor{&t}}, nil
		}
		w, err := tensor.ToFloat32(src)
		if err != nil {
			return nil, fmt.Errorf("rotate %s: %w", op.Name, err)
		}
		var gamma []float32
		if op.Norm != "" {
			nt, err := fetch(env, needs[len(needs)-1], op.Norm)
			if err != nil {
				return nil, fmt.Errorf("rotate %s: %w", op.Name, err)
			}
			if gamma, err = tensor.ToFloat32(nt); err != nil {
				return nil, fmt.Errorf("rotate %s: %w", op.Name, err)
			}
		}
		dim := 0
		switch op.Role {
		case rotate.Embed, rotate.Reader:
			if len(src.Shape) == 2 {
				dim = src.Shape[1]
			}
		case rotate.Writer:
			if len(src.Shape) == 2 {
				dim = src.Shape[0]
			}
		default:
			if len(src.Shape) == 1 {
				dim = src.Shape[0]
			}
		}
		if dim <= 0 {
			return nil, fmt.Errorf("rotate %s: unexpected shape %v for a %v", op.Name, src.Shape, op.Role)
		}
		rot, err := hadamard.New(dim, s.cfg.Block, s.cfg.Seed)
		if err != nil {
			return nil, fmt.Errorf("rotate %s: %w", op.Name, err)
		}
		out, meta, err := rotate.Apply(op, w, src.Shape, gamma, rot)
		if err != nil {
			return nil, err
		}
		t, err := tensor.FromFloat32(op.Name, tensor.F32, src.Shape, out)
		if err != nil {
			return nil, fmt.Errorf("rotate %s: %w", op.Name, err)
		}
		t.Meta = map[string]string{}
		for k, v := range src.Meta {
			t.Meta[k] = v
		}
		for k, v := range meta {
			t.Meta[k] = v
		}
		if op.Source != op.Name {
			t.Meta[metaUntiedFrom] = op.Source
		}
		return &pipeline.Output{Tensors: []*tensor.Tensor{t}, Meta: map[string]string{metaRotationRole: op.Role.String()}}, nil
	}
}
