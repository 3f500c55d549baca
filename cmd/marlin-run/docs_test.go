package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestDocumentedSetExamplesWork runs every --set example of README.md and
// of `marlin-run run -h` against the shipped demo job: each must validate
// (a documented override that fails on the demo is a broken first step).
func TestDocumentedSetExamplesWork(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var examples []string
	for _, m := range regexp.MustCompile("`--set ([^`]+)`").FindAllStringSubmatch(string(readme), -1) {
		examples = append(examples, strings.Trim(m[1], `'"`))
	}
	_, _, help := cli(t, "run", "-h")
	// the flag's text runs from "-set" to the next flag
	var flagHelp string
	if i := strings.Index(help, "-set"); i >= 0 {
		flagHelp = help[i:]
		if j := strings.Index(flagHelp, "\n  -"); j > 0 {
			flagHelp = flagHelp[:j]
		}
	}
	helpEx := regexp.MustCompile(`[a-z_]+(?:\.[a-z_0-9\[\]]+)+=[A-Za-z0-9_]+`).FindAllString(flagHelp, -1)
	if len(helpEx) == 0 {
		t.Fatalf("no --set example in run -h:\n%s", help)
	}
	examples = append(examples, helpEx...)
	if len(examples) < 3 {
		t.Fatalf("found only %d --set examples: %q", len(examples), examples)
	}
	for _, ex := range examples {
		if !strings.Contains(ex, "=") || ex == "path=value" {
			continue
		}
		t.Run(ex, func(t *testing.T) {
			code, _, errs := cli(t, "validate", "--set", ex, "../../pipelines/nano-demo.yaml")
			if code != 0 {
				t.Errorf("--set %s on pipelines/nano-demo.yaml: exit %d\n%s", ex, code, errs)
			}
		})
	}
}

// TestValidatePrintsEachErrorOnce: the schema check and the loader find
// most errors both; validate prints each once.
func TestValidatePrintsEachErrorOnce(t *testing.T) {
	dir := t.TempDir()
	cases := []struct{ name, doc, want string }{
		{"unknown field", strings.Replace(cliJob, "seed: 1", "seed: 1, sed: 2", 1), `unknown field "sed"`},
		{"wrong type", strings.Replace(cliJob, "seed: 1", "seed: x", 1), "stages[0].with.seed"},
		{"negative workers", strings.Replace(cliJob, "workers: 2", "workers: -3", 1), "resources.workers"},
		{"yaml syntax", cliJob + "  - {id: [\n", "yaml syntax"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			job := dir + "/" + strings.ReplaceAll(c.name, " ", "-") + ".yaml"
			if err := os.WriteFile(job, []byte(c.doc), 0o644); err != nil {
				t.Fatal(err)
			}
			code, _, errs := cli(t, "validate", job)
			if code != 1 {
				t.Fatalf("exit %d, want 1\n%s", code, errs)
			}
			var lines []string
			for _, l := range strings.Split(errs, "\n") {
				if strings.HasPrefix(l, job) {
					lines = append(lines, l)
				}
			}
			if len(lines) != 1 || !strings.Contains(lines[0], c.want) {
				t.Errorf("want one error line containing %q, got %d:\n%s", c.want, len(lines), errs)
			}
		})
	}
}
