package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/pipeline"
	"github.com/marlin-llm/marlin/stages"
)

// TestSchemaUpToDate fails when schemas/pipeline.schema.json differs from
// what the registered stage configs generate.
func TestSchemaUpToDate(t *testing.T) {
	reg, err := stages.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	got, err := pipeline.GenerateSchema(reg)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("../../schemas/pipeline.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("schemas/pipeline.schema.json is out of date: run `make schema` and commit it")
	}
	// the checked-in file compiles as a JSON Schema
	if _, err := pipeline.CompileSchema(want); err != nil {
		t.Fatal(err)
	}
}

// TestSchemaPropertiesHaveDescriptions fails when a property anywhere in
// the generated job file schema (JobSpec, every kind's config and the
// structs they nest, the per-kind if/then branches) has no description: the
// README's job reference and editor tooltips are built from them. A bare
// $ref passes when the definition it points at has a description. Add one
// with the field's `jsonschema:"description=..."` tag (no plain commas:
// they separate tag options).
func TestSchemaPropertiesHaveDescriptions(t *testing.T) {
	reg, err := stages.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := pipeline.GenerateSchema(reg)
	if err != nil {
		t.Fatal(err)
	}
	var root map[string]any
	if err := json.Unmarshal(raw, &root); err != nil {
		t.Fatal(err)
	}
	defs, _ := root["$defs"].(map[string]any)
	described := func(s map[string]any) bool {
		d, _ := s["description"].(string)
		return strings.TrimSpace(d) != ""
	}
	var missing, cut []string
	checked := 0
	var walk func(n any, at string)
	walk = func(n any, at string) {
		switch x := n.(type) {
		case map[string]any:
			if props, ok := x["properties"].(map[string]any); ok {
				for name, p := range props {
					ps, ok := p.(map[string]any)
					if !ok {
						continue
					}
					checked++
					if d, _ := ps["description"].(string); strings.Count(d, "(") != strings.Count(d, ")") {
						// A plain comma in the tag cuts the description short.
						cut = append(cut, fmt.Sprintf("%s/properties/%s: %q", at, name, d))
					}
					if described(ps) {
						continue
					}
					if ref, ok := ps["$ref"].(string); ok {
						if d, ok := defs[strings.TrimPrefix(ref, "#/$defs/")].(map[string]any); ok && described(d) {
							continue
						}
					}
					missing = append(missing, at+"/properties/"+name)
				}
			}
			for k, v := range x {
				walk(v, at+"/"+k)
			}
		case []any:
			for i, v := range x {
				walk(v, fmt.Sprintf("%s/%d", at, i))
			}
		}
	}
	walk(root, "#")
	if checked < 50 {
		t.Fatalf("walked only %d properties; the schema layout changed?", checked)
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("%s: no description", m)
	}
	for _, c := range cut {
		t.Errorf("%s: unbalanced parentheses (a plain comma in the jsonschema tag?)", c)
	}
}

// TestShippedPipelinesValidate runs `marlin-run validate` over pipelines/*.yaml.
func TestShippedPipelinesValidate(t *testing.T) {
	files, _ := filepath.Glob("../../pipelines/*.yaml")
	if len(files) == 0 {
		t.Fatal("no pipelines/*.yaml")
	}
	var out, errb bytes.Buffer
	if code := runCLI(context.Background(), append([]string{"validate"}, files...), &out, &errb); code != 0 {
		t.Fatalf("validate exit %d:\n%s", code, errb.String())
	}
}

func TestValidateCommand(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("version: 1\nstages:\n  - {id: g, kind: synthetic, with: {tensors: [{name: w, shape: [2, 2]}]}}\n"), 0o644)
	cases := []struct {
		doc      string
		contains []string
	}{
		// violations point at the value; one the schema and the loader
		// both find is printed once, with the loader's message
		{"version: 1\nstages:\n  - {id: g, kind: synthetic, with: {dtype: F8, tensors: [{name: w, shape: [2]}]}}\n",
			[]string{`bad.yaml:3:44: stages[0].with.dtype: unknown dtype "F8"`}},
		{"version: 1\nstages:\n  - {id: g, kind: synthetic, with: {tensors: [{name: w, shape: [2]}]}}\n  - {id: s, kind: stats, needs: [g, h]}\n",
			[]string{`bad.yaml:4:37: stages[1].needs[1]: unknown stage "h"`}},
		{"version: 1\nstages:\n  - {id: s, kind: stats, needs: [s2]}\n  - {id: s2, kind: stats, needs: [s]}\n",
			[]string{"cycle: s -> s2 -> s"}},
		{"version: 1\nstages:\n  - {id: s, kind: stats, with: {match: '[a'}}\n",
			[]string{"bad.yaml:3:40: stages[0].with.match: bad glob"}},
		{"version: 1\nstages:\n  - {id: s, kind: frobnicate}\n", []string{`bad.yaml:3:19: stages[0].kind: unknown stage kind "frobnicate"`}},
	}
	for _, c := range cases {
		bad := filepath.Join(dir, "bad.yaml")
		os.WriteFile(bad, []byte(c.doc), 0o644)
		var out, errb bytes.Buffer
		code := runCLI(context.Background(), []string{"validate", good, bad}, &out, &errb)
		if code != 1 {
			t.Errorf("exit %d, want 1 for\n%s", code, c.doc)
		}
		msg := strings.ReplaceAll(errb.String(), dir+string(filepath.Separator), "")
		for _, want := range c.contains {
			if !strings.Contains(msg, want) {
				t.Errorf("stderr %q\nlacks %q", msg, want)
			}
			if pos, _, _ := strings.Cut(want, ": "); strings.Count(msg, pos+": ") != 1 {
				t.Errorf("stderr %q\nreports %s more than once", msg, pos)
			}
		}
		if !strings.Contains(out.String(), "ok "+good) {
			t.Errorf("good file not reported ok: %q", out.String())
		}
	}
}
