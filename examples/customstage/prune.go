package main

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"path"
	"slices"

	"github.com/marlin-llm/marlin/pipeline"
	"github.com/marlin-llm/marlin/tensor"
)

// PruneConfig is the `with:` block of the prune stage; its tags also make
// its JSON Schema (`marlin-run schema` style validation works for it).
type PruneConfig struct {
	Match    string  `yaml:"match" json:"match" jsonschema:"required,description=glob on tensor names to prune (path.Match syntax)"`
	Sparsity float64 `yaml:"sparsity" json:"sparsity" jsonschema:"required,minimum=0,maximum=1,description=fraction of each row's weights set to zero (smallest magnitudes first)"`
}

// Validate is called by pipeline.Load; errors name the field.
func (c *PruneConfig) Validate() error {
	if err := pipeline.CheckGlob(c.Match); err != nil {
		return &pipeline.FieldError{Field: "match", Err: err}
	}
	if c.Sparsity < 0 || c.Sparsity >= 1 {
		return &pipeline.FieldError{Field: "sparsity", Err: fmt.Errorf("%v not in [0, 1)", c.Sparsity)}
	}
	return nil
}

// PruneKind is row-wise magnitude pruning as a stage kind: one task per
// upstream task, matching 2-D tensors pruned, the rest passed through.
func PruneKind() pipeline.Kind {
	return pipeline.Kind{
		Name:      "prune",
		Doc:       "zero the smallest-magnitude weights of each row (example custom stage)",
		NewConfig: func() any { return &PruneConfig{} },
		New:       func(cfg any) (pipeline.Stage, error) { return &pruneStage{*cfg.(*PruneConfig)}, nil },
	}
}

type pruneStage struct{ cfg PruneConfig }

// Plan makes one task per upstream task; Meta (dtype, shape, tensor lists)
// travels on so that quantize and pack downstream see the same tensors.
func (s *pruneStage) Plan(ctx context.Context, pc *pipeline.PlanContext) ([]*pipeline.Task, error) {
	var tasks []*pipeline.Task
	for _, in := range pc.Inputs {
		for _, up := range in.Tasks {
			ref := pipeline.TaskRef{Stage: in.ID, Key: up.Key}
			tasks = append(tasks, &pipeline.Task{
				Key: up.Key, Needs: []pipeline.TaskRef{ref}, Meta: up.Meta,
				EstBytes: 3 * up.EstBytes, // input + float32 copy
				Run: func(ctx context.Context, env *pipeline.TaskEnv) (*pipeline.Output, error) {
					o, err := env.Input(ref)
					if err != nil {
						return nil, err
					}
					out := &pipeline.Output{}
					for _, t := range o.Tensors {
						if ok, _ := path.Match(s.cfg.Match, t.Name); ok && len(t.Shape) == 2 {
							if t, err = s.prune(t); err != nil {
								return nil, fmt.Errorf("prune %s: %w", t.Name, err)
							}
						}
						out.Tensors = append(out.Tensors, t)
					}
					return out, nil
				},
			})
		}
	}
	return tasks, nil
}

// prune zeroes the k smallest |w| of every row (ties: lower column first).
func (s *pruneStage) prune(t *tensor.Tensor) (*tensor.Tensor, error) {
	v, err := tensor.ToFloat32(t)
	if err != nil {
		return nil, err
	}
	cols, k := t.Shape[1], int(math.Round(s.cfg.Sparsity*float64(t.Shape[1])))
	for r := 0; r < t.Shape[0]; r++ {
		row, idx := v[r*cols:(r+1)*cols], make([]int, cols)
		for i := range idx {
			idx[i] = i
		}
		slices.SortStableFunc(idx, func(a, b int) int {
			return cmp.Compare(math.Abs(float64(row[a])), math.Abs(float64(row[b])))
		})
		for _, i := range idx[:k] {
			row[i] = 0
		}
	}
	return tensor.FromFloat32(t.Name, t.DType, t.Shape, v)
}
