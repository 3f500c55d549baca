package pipeline

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// typedConfig has one field of each scalar type ${VAR} must be able to
// fill.
type typedConfig struct {
	Size  int     `yaml:"size,omitempty" json:"size" jsonschema:"minimum=0"`
	On    bool    `yaml:"on,omitempty" json:"on"`
	Ratio float64 `yaml:"ratio,omitempty" json:"ratio"`
	Label string  `yaml:"label,omitempty" json:"label"`
	Inner struct {
		Format string `yaml:"format,omitempty" json:"format"`
		Group  int    `yaml:"group,omitempty" json:"group"`
	} `yaml:"inner,omitempty" json:"inner"`
}

func typedRegistry(t *testing.T) *Registry {
	t.Helper()
	reg := NewRegistry()
	err := reg.Register(Kind{
		Name:      "typed",
		Doc:       "test kind typed",
		NewConfig: func() any { return &typedConfig{} },
		New: func(any) (Stage, error) {
			return stageFunc(func(context.Context, *PlanContext) ([]*Task, error) { return nil, nil }), nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// TestEnvFillsTypedFields: a quoted "${VAR}" (the only way to write it in
// a flow mapping) fills integer, boolean and number fields, passes the
// JSON Schema, and still fills a string field with a numeric-looking value.
func TestEnvFillsTypedFields(t *testing.T) {
	reg := typedRegistry(t)
	sv, err := NewSchemaValidator(reg)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"G": "64", "ON": "true", "R": "0.5", "L": "123", "F": "int4"}
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	cases := []struct {
		name, with string
		want       typedConfig
	}{
		{"flow, double quotes", `{size: "${G}", on: "${ON}", ratio: "${R}", label: "${L}"}`, typedConfig{Size: 64, On: true, Ratio: 0.5, Label: "123"}},
		{"flow, single quotes", `{size: '${G}', on: '${ON}'}`, typedConfig{Size: 64, On: true}},
		{"block, plain", "\n      size: ${G}\n      on: ${ON}\n      label: ${F}", typedConfig{Size: 64, On: true, Label: "int4"}},
		{"default value", `{size: "${NOPE:-8}", on: "${NOPE:-false}"}`, typedConfig{Size: 8}},
		{"text around stays text", `{label: "g${G}"}`, typedConfig{Label: "g64"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			doc := "version: 1\nstages:\n  - id: a\n    kind: typed\n    with: " + c.with + "\n"
			opts := LoadOptions{Getenv: getenv}
			if err := sv.ValidateBytes("j.yaml", []byte(doc), opts); err != nil {
				t.Errorf("schema: %v", err)
			}
			job, err := LoadBytes("j.yaml", []byte(doc), reg, opts)
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			if got := *job.Stage("a").Config.(*typedConfig); got != c.want {
				t.Errorf("config = %+v, want %+v", got, c.want)
			}
		})
	}
	// A value that is not a number stays a string and is an error for an
	// integer field, naming the field.
	doc := "version: 1\nstages:\n  - {id: a, kind: typed, with: {size: \"${F}\"}}\n"
	if _, err := LoadBytes("j.yaml", []byte(doc), reg, LoadOptions{Getenv: getenv}); err == nil || !strings.Contains(err.Error(), "stages[0].with.size") {
		t.Errorf("non-numeric size: err = %v", err)
	}
}

// TestUnquotedEnvInFlowHint: an unquoted ${VAR} inside {...} is a YAML
// syntax error; the message says to quote it.
func TestUnquotedEnvInFlowHint(t *testing.T) {
	reg := typedRegistry(t)
	doc := "version: 1\nstages:\n  - id: a\n    kind: typed\n    with: {size: ${G}}\n"
	_, err := LoadBytes("j.yaml", []byte(doc), reg, LoadOptions{Getenv: func(string) (string, bool) { return "4", true }})
	if err == nil || !strings.Contains(err.Error(), `write "${G}"`) {
		t.Errorf("err = %v, want a hint to quote ${G}", err)
	}
}

// TestUnknownFieldSuggestsPath: a field given one level too high (or
// misspelt) names the path where it exists, as a --set argument when it
// came from --set.
func TestUnknownFieldSuggestsPath(t *testing.T) {
	reg := typedRegistry(t)
	doc := "version: 1\nstages:\n  - {id: a, kind: typed, with: {size: 1}}\n"
	cases := []struct {
		name, doc string
		set       []string
		want      string
	}{
		{"set one level too high", doc, []string{"stages.a.with.format=nvfp4"}, "did you mean --set stages.a.with.inner.format=nvfp4?"},
		{"set by index", doc, []string{"stages[0].with.group=4"}, "did you mean --set stages[0].with.inner.group=4?"},
		{"file one level too high", "version: 1\nstages:\n  - {id: a, kind: typed, with: {format: x}}\n", nil, "did you mean stages[0].with.inner.format?"},
		{"misspelt", "version: 1\nstages:\n  - {id: a, kind: typed, with: {sise: 1}}\n", nil, "did you mean stages[0].with.size?"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := LoadBytes("j.yaml", []byte(c.doc), reg, LoadOptions{Set: c.set})
			var list ErrorList
			if !errors.As(err, &list) || len(list) != 1 || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v\nwant one error containing %q", err, c.want)
			}
		})
	}
}
