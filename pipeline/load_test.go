package pipeline

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const goodHeader = "version: 1\nname: t\nstages:\n"

// TestLoadErrorsCarryPosition writes broken job files, loads them, and
// checks that the first error names file:line:col and the field path
// exactly.
func TestLoadErrorsCarryPosition(t *testing.T) {
	reg := testRegistry(t)
	cases := []struct {
		name, doc string
		want      string // exact prefix "file:line:col: path"
		contains  string
	}{
		{"unknown top-level field", "version: 1\nstagez: []\nstages:\n  - {id: a, kind: fake}\n",
			"bad.yaml:2:1: stagez", `unknown field "stagez"`},
		{"unknown stage field", goodHeader + "  - id: a\n    kind: fake\n    need: [b]\n",
			"bad.yaml:6:5: stages[0].need", `unknown field "need" (known: id, kind, needs, with)`},
		{"unknown with field", goodHeader + "  - id: a\n    kind: fake\n    with:\n      formt: fp4\n",
			"bad.yaml:7:7: stages[0].with.formt", `unknown field "formt"`},
		{"validator names field", goodHeader + "  - {id: a, kind: fake}\n  - id: b\n    kind: fake\n    with:\n      format: fp5\n",
			"bad.yaml:8:15: stages[1].with.format", `unknown format "fp5" (known: fp4, mxfp4, int4)`},
		{"field error in list", goodHeader + "  - id: a\n    kind: fake\n    with:\n      rules:\n        - {match: \"*.w\"}\n        - {match: \"[x\"}\n",
			"bad.yaml:9:19: stages[0].with.rules[1].match", "bad glob"},
		{"wrong scalar type", goodHeader + "  - id: a\n    kind: fake\n    with: {count: many}\n",
			"bad.yaml:6:19: stages[0].with.count", "cannot unmarshal"},
		{"nested unknown", goodHeader + "  - id: a\n    kind: fake\n    with:\n      nested: {depht: 2}\n",
			"bad.yaml:7:16: stages[0].with.nested.depht", `unknown field "depht"`},
		{"list expected", goodHeader + "  - id: a\n    kind: fake\n    needs: b\n",
			"bad.yaml:6:12: stages[0].needs", "expected a list"},
		{"unknown kind", goodHeader + "  - id: a\n    kind: quantise\n",
			"bad.yaml:5:11: stages[0].kind", `unknown stage kind "quantise" (known: fake)`},
		{"unknown needs", goodHeader + "  - {id: a, kind: fake}\n  - {id: b, kind: fake, needs: [a, c]}\n",
			"bad.yaml:5:36: stages[1].needs[1]", `unknown stage "c"`},
		{"duplicate id", goodHeader + "  - {id: a, kind: fake}\n  - {id: a, kind: fake}\n",
			"bad.yaml:5:10: stages[1].id", `duplicate id "a"`},
		{"cycle", goodHeader + "  - {id: a, kind: fake, needs: [c]}\n  - {id: b, kind: fake, needs: [a]}\n  - {id: c, kind: fake, needs: [b]}\n",
			"bad.yaml:4:5: stages[0].needs", "cycle: a -> c -> b -> a"},
		{"self need", goodHeader + "  - {id: a, kind: fake, needs: [a]}\n",
			"bad.yaml:4:33: stages[0].needs[0]", "needs itself"},
		{"bad version", "version: 2\nstages:\n  - {id: a, kind: fake}\n",
			"bad.yaml:1:10: version", "unsupported version 2"},
		{"missing version", "stages:\n  - {id: a, kind: fake}\n",
			"bad.yaml:1:1: version", "missing"},
		{"bad memory", "version: 1\nresources: {memory: 12 parsecs}\nstages:\n  - {id: a, kind: fake}\n",
			"bad.yaml:2:21: resources.memory", "invalid size"},
		{"bad backend", "version: 1\nresources:\n  backend: cuda\nstages:\n  - {id: a, kind: fake}\n",
			"bad.yaml:3:12: resources.backend", `unknown backend "cuda"`},
		{"bad id", goodHeader + "  - {id: 9lives, kind: fake}\n",
			"bad.yaml:4:10: stages[0].id", "invalid id"},
		{"yaml syntax", goodHeader + "  - id: a\n    kind: [fake\n",
			"bad.yaml:4:3: ", "yaml syntax"},
		{"not a mapping", "- 1\n- 2\n", "bad.yaml:1:1", "job file must be a mapping"},
		{"undefined env", goodHeader + "  - id: a\n    kind: fake\n    with: {format: \"${NOPE_NOT_SET}\"}\n",
			"bad.yaml:6:20: stages[0].with.format", "NOPE_NOT_SET is not set"},
		{"stage not a mapping", goodHeader + "  - fake\n", "bad.yaml:4:5: stages[0]", "expected a mapping"},
	}
	if len(cases) < 10 {
		t.Fatal("need at least 10 cases")
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "bad.yaml")
			if err := os.WriteFile(file, []byte(c.doc), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(file, reg, LoadOptions{Getenv: func(string) (string, bool) { return "", false }})
			if err == nil {
				t.Fatalf("no error for:\n%s", c.doc)
			}
			var list ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("error is %T, want ErrorList: %v", err, err)
			}
			first := strings.TrimPrefix(list[0].Error(), dir+string(filepath.Separator))
			if !strings.HasPrefix(first, c.want) {
				t.Errorf("error %q\nwant prefix %q", first, c.want)
			}
			if !strings.Contains(first, c.contains) {
				t.Errorf("error %q\nwant it to contain %q", first, c.contains)
			}
		})
	}
}

func TestLoadAllErrorsReported(t *testing.T) {
	reg := testRegistry(t)
	doc := goodHeader + "  - {id: a, kind: fake, with: {formt: x}}\n  - {id: b, kind: nope}\n"
	_, err := LoadBytes("j.yaml", []byte(doc), reg, LoadOptions{})
	var list ErrorList
	if !errors.As(err, &list) || len(list) != 2 {
		t.Fatalf("want 2 errors, got %v", err)
	}
}

func TestLoadEnvAndSet(t *testing.T) {
	reg := testRegistry(t)
	doc := "version: 1\nworkdir: ${WD:-runs/x}\nresources:\n  workers: ${W}\nstages:\n" +
		"  - {id: a, kind: fake, with: {format: \"${F}\", count: 1}}\n  - {id: b, kind: fake, needs: [a]}\n"
	env := map[string]string{"W": "3", "F": "mxfp4"}
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	dir := t.TempDir()
	file := filepath.Join(dir, "j.yaml")
	if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	job, err := Load(file, reg, LoadOptions{Getenv: getenv, Set: []string{
		"stages.b.with.format=int4", "stages[0].with.nested.depth=7", "resources.memory=1GiB", "stages.a.with.rules=[{match: '*.w'}]",
	}})
	if err != nil {
		t.Fatal(err)
	}
	if job.Resources.Workers != 3 || job.Resources.Memory != 1<<30 {
		t.Errorf("resources = %+v", job.Resources)
	}
	if job.Workdir != filepath.Join(dir, "runs/x") {
		t.Errorf("workdir = %s", job.Workdir)
	}
	a := job.Stage("a").Config.(*fakeConfig)
	b := job.Stage("b").Config.(*fakeConfig)
	if a.Format != "mxfp4" || a.Nested.Depth != 7 || len(a.Rules) != 1 || a.Rules[0].Match != "*.w" || b.Format != "int4" {
		t.Errorf("a=%+v b=%+v", a, b)
	}
	// --set values are validated and errors name the override.
	_, err = Load(file, reg, LoadOptions{Getenv: getenv, Set: []string{"stages.b.with.format=fp5"}})
	if err == nil || !strings.HasPrefix(err.Error(), "--set stages.b.with.format=fp5: stages[1].with.format: unknown format") {
		t.Errorf("set error = %v", err)
	}
	if _, err := Load(file, reg, LoadOptions{Getenv: getenv, Set: []string{"stages.zz.with.format=fp4"}}); err == nil || !strings.Contains(err.Error(), `no element with id "zz"`) {
		t.Errorf("set unknown stage error = %v", err)
	}
	// $${ escapes
	v, err := expandString("a$${B}c${X:-d}", getenv)
	if err != nil || v != "a${B}cd" {
		t.Errorf("expand = %q, %v", v, err)
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]int64{"16GiB": 16 << 30, "512MB": 512e6, "1048576": 1 << 20, "1.5KiB": 1536, " 2 MiB ": 2 << 20, "0": 0} {
		got, err := ParseByteSize(in)
		if err != nil || int64(got) != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "GiB", "-1GiB", "1e400", "NaN", "12 parsecs"} {
		if _, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q): no error", in)
		}
	}
}

func FuzzLoadBytes(f *testing.F) {
	f.Add([]byte(goodHeader + "  - {id: a, kind: fake, with: {format: fp4, rules: [{match: '*'}]}}\n"))
	f.Add([]byte("version: 1\nresources: {memory: 1GiB, workers: 2}\nstages:\n  - {id: a, kind: fake}\n  - {id: b, kind: fake, needs: [a]}\n"))
	f.Add([]byte("version: 1\nstages: &x\n  - *x\n"))
	f.Add([]byte("version: 1\nstages:\n  - {id: a, kind: fake, with: {nested: {depth: ${X:-1}}}}\n"))
	reg := NewRegistry()
	reg.MustRegister(funcKind("fake", func(*PlanContext, *fakeConfig) ([]*Task, error) { return nil, nil }))
	f.Fuzz(func(t *testing.T, data []byte) {
		job, err := LoadBytes("fuzz.yaml", data, reg, LoadOptions{Getenv: func(string) (string, bool) { return "", false }})
		if err == nil && job == nil {
			t.Fatal("nil job without error")
		}
		if err != nil && err.Error() == "" {
			t.Fatal("empty error")
		}
	})
}

func FuzzParseByteSize(f *testing.F) {
	for _, s := range []string{"16GiB", "1.5MB", "12", "x", "9999999999999TiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseByteSize(s)
		if err == nil && b < 0 {
			t.Fatalf("negative size %d for %q", b, s)
		}
	})
}

func TestSchemaValidatorPositions(t *testing.T) {
	reg := testRegistry(t)
	sv, err := NewSchemaValidator(reg)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ doc, want string }{
		{goodHeader + "  - id: a\n    kind: fake\n    with: {format: fp5}\n", "s.yaml:6:20: stages[0].with.format: schema: value must be one of"},
		{goodHeader + "  - id: a\n    kind: fake\n    with:\n      rules: [{format: fp4}]\n", "s.yaml:7:15: stages[0].with.rules[0]: schema: missing property 'match'"},
		{goodHeader + "  - id: a\n    kind: fake\n    with: {count: -1}\n", "s.yaml:6:19: stages[0].with.count: schema: minimum"},
		{goodHeader + "  - id: a\n    kind: fake\n    extra: 1\n", "s.yaml:6:5: stages[0].extra: schema: additional properties 'extra' not allowed"},
		{"version: 1\nresources: {memory: lots}\nstages:\n  - {id: a, kind: fake}\n", "s.yaml:2:21: resources.memory: schema:"},
		{"version: 1\nstages: []\n", "s.yaml:2:9: stages: schema: minItems"},
	}
	for _, c := range cases {
		err := sv.ValidateBytes("s.yaml", []byte(c.doc), LoadOptions{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("err = %v\nwant %q", err, c.want)
		}
	}
	if err := sv.ValidateBytes("s.yaml", []byte(goodHeader+"  - {id: a, kind: fake, with: {format: int4, rules: [{match: '*'}]}}\n"), LoadOptions{}); err != nil {
		t.Errorf("valid doc: %v", err)
	}
}

func FuzzSetOverride(f *testing.F) {
	for _, s := range []string{"stages.a.with.format=int4", "resources.workers=3", "stages[0].with.rules=[{match: x}]", "a.b[", "=1", "stages[9].x=1", "stages.a.with.nested.depth={"} {
		f.Add(s)
	}
	reg := NewRegistry()
	reg.MustRegister(funcKind("fake", func(*PlanContext, *fakeConfig) ([]*Task, error) { return nil, nil }))
	doc := []byte(goodHeader + "  - {id: a, kind: fake, with: {format: fp4}}\n")
	f.Fuzz(func(t *testing.T, set string) {
		job, err := LoadBytes("f.yaml", doc, reg, LoadOptions{Set: []string{set}})
		if err == nil && job == nil {
			t.Fatal("nil job without error")
		}
	})
}
