package pipeline

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/tensor"
)

// fakeConfig exercises nested structs, lists, enums and a validator.
type fakeConfig struct {
	Format string     `yaml:"format,omitempty" json:"format" jsonschema:"enum=fp4,enum=mxfp4,enum=int4"`
	Count  int        `yaml:"count,omitempty" json:"count" jsonschema:"minimum=0"`
	Ratio  float64    `yaml:"ratio,omitempty" json:"ratio"`
	Rules  []fakeRule `yaml:"rules,omitempty" json:"rules"`
	Nested struct {
		Depth int `yaml:"depth,omitempty" json:"depth"`
	} `yaml:"nested,omitempty" json:"nested"`
}

type fakeRule struct {
	Match  string `yaml:"match" json:"match" jsonschema:"required"`
	Format string `yaml:"format,omitempty" json:"format"`
}

var fakeFormats = []string{"fp4", "mxfp4", "int4"}

func checkFormat(f string) error {
	for _, k := range fakeFormats {
		if f == k {
			return nil
		}
	}
	return fmt.Errorf("unknown format %q (known: %s)", f, strings.Join(fakeFormats, ", "))
}

func (c *fakeConfig) Validate() error {
	if err := checkFormat(c.Format); err != nil {
		return fmt.Errorf("format: %w", err)
	}
	for i, r := range c.Rules {
		if err := CheckGlob(r.Match); err != nil {
			return &FieldError{Field: fmt.Sprintf("rules[%d].match", i), Err: err}
		}
		if r.Format != "" {
			if err := checkFormat(r.Format); err != nil {
				return &FieldError{Field: fmt.Sprintf("rules[%d].format", i), Err: err}
			}
		}
	}
	return nil
}

// funcKind builds a kind whose tasks are produced by plan.
func funcKind(name string, plan func(pc *PlanContext, cfg *fakeConfig) ([]*Task, error)) Kind {
	return Kind{
		Name:      name,
		Doc:       "test kind " + name,
		NewConfig: func() any { return &fakeConfig{Format: "fp4"} },
		New: func(cfg any) (Stage, error) {
			return stageFunc(func(ctx context.Context, pc *PlanContext) ([]*Task, error) {
				return plan(pc, cfg.(*fakeConfig))
			}), nil
		},
	}
}

type stageFunc func(ctx context.Context, pc *PlanContext) ([]*Task, error)

func (f stageFunc) Plan(ctx context.Context, pc *PlanContext) ([]*Task, error) { return f(ctx, pc) }

func testRegistry(t *testing.T, kinds ...Kind) *Registry {
	t.Helper()
	reg := NewRegistry()
	if len(kinds) == 0 {
		kinds = []Kind{funcKind("fake", func(*PlanContext, *fakeConfig) ([]*Task, error) { return nil, nil })}
	}
	for _, k := range kinds {
		if err := reg.Register(k); err != nil {
			t.Fatal(err)
		}
	}
	return reg
}

// constOutput returns an output with one small F32 tensor whose bytes
// encode s.
func constOutput(name, s string) *Output {
	data := []byte(s)
	for len(data)%4 != 0 {
		data = append(data, 0)
	}
	return &Output{Tensors: []*tensor.Tensor{{Name: name, DType: tensor.U8, Shape: []int{len(data)}, Data: data}}}
}
