// Command embed shows how to use marlin's pipeline runner as a library:
// build a registry with the built-in stage kinds plus a custom one, load a
// job from memory, plan it, and run it with checkpoints and events.
//
//	go run ./examples/embed [-workdir DIR]
//
// Running it twice with the same workdir shows resumption: the second run
// skips every task.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"path/filepath"

	"github.com/marlin-llm/marlin/pipeline"
	"github.com/marlin-llm/marlin/stages"
	"github.com/marlin-llm/marlin/tensor"
)

// ScaleConfig is the custom stage's config: its fields define both the
// `with:` block and its JSON Schema.
type ScaleConfig struct {
	Factor float64 `yaml:"factor" json:"factor" jsonschema:"required,description=multiply every element by this"`
}

// Validate is called by pipeline.Load after decoding.
func (c *ScaleConfig) Validate() error {
	if c.Factor == 0 {
		return &pipeline.FieldError{Field: "factor", Err: fmt.Errorf("must be non-zero")}
	}
	return nil
}

// scaleKind multiplies every upstream tensor by a factor, one task per
// upstream task.
func scaleKind() pipeline.Kind {
	return pipeline.Kind{
		Name:      "scale",
		Doc:       "multiply upstream tensors by a constant (example of a custom stage)",
		NewConfig: func() any { return &ScaleConfig{Factor: 1} },
		New: func(cfg any) (pipeline.Stage, error) {
			return &scaleStage{factor: float32(cfg.(*ScaleConfig).Factor)}, nil
		},
	}
}

type scaleStage struct{ factor float32 }

func (s *scaleStage) Plan(ctx context.Context, pc *pipeline.PlanContext) ([]*pipeline.Task, error) {
	var tasks []*pipeline.Task
	for _, in := range pc.Inputs {
		for _, up := range in.Tasks {
			ref := pipeline.TaskRef{Stage: in.ID, Key: up.Key}
			tasks = append(tasks, &pipeline.Task{
				Key:      up.Key,
				Needs:    []pipeline.TaskRef{ref},
				Meta:     up.Meta, // dtype/shape travel downstream
				EstBytes: 2 * up.EstBytes,
				Run: func(ctx context.Context, env *pipeline.TaskEnv) (*pipeline.Output, error) {
					o, err := env.Input(ref)
					if err != nil {
						return nil, err
					}
					out := &pipeline.Output{}
					for _, t := range o.Tensors {
						v, err := tensor.ToFloat32(t)
						if err != nil {
							return nil, err
						}
						for i := range v {
							v[i] *= s.factor
						}
						st, err := tensor.FromFloat32(t.Name, t.DType, t.Shape, v)
						if err != nil {
							return nil, err
						}
						out.Tensors = append(out.Tensors, st)
					}
					return out, nil
				},
			})
		}
	}
	return tasks, nil
}

const job = `
version: 1
name: embed-example
resources: {memory: 64MiB, workers: 2}
stages:
  - id: gen
    kind: synthetic
    with: {seed: 1, layers: 2, tensors: [{name: "layer.{layer}.w", shape: [128, 64]}]}
  - {id: scaled, kind: scale, needs: [gen], with: {factor: 10}}
  - {id: stats, kind: stats, needs: [gen, scaled], with: {out: stats.json}}
`

// run executes the example job in workdir, writing events to w.
func run(ctx context.Context, workdir string, w io.Writer) (pipeline.RunStats, error) {
	reg := pipeline.NewRegistry()
	if err := stages.Register(reg); err != nil {
		return pipeline.RunStats{}, err
	}
	if err := reg.Register(scaleKind()); err != nil {
		return pipeline.RunStats{}, err
	}
	j, err := pipeline.LoadBytes("embedded.yaml", []byte(job), reg, pipeline.LoadOptions{Workdir: workdir})
	if err != nil {
		return pipeline.RunStats{}, err
	}
	plan, err := pipeline.PlanJob(ctx, j, nil)
	if err != nil {
		return pipeline.RunStats{}, err
	}
	store, err := pipeline.OpenStore(j.Workdir, pipeline.StoreOptions{})
	if err != nil {
		return pipeline.RunStats{}, err
	}
	defer store.Close()
	r := &pipeline.Runner{Store: store, Events: pipeline.PlainLines(w)}
	return r.Run(ctx, plan)
}

func main() {
	workdir := flag.String("workdir", filepath.Join(os.TempDir(), "marlin-embed-example"), "checkpoint directory")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	stats, err := run(ctx, *workdir, os.Stderr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("ran %d tasks, skipped %d; report in %s\n", stats.Executed, stats.Skipped, filepath.Join(*workdir, "out", "stats.json"))
}
