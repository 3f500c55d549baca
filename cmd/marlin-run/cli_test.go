package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const cliJob = `version: 1
name: cli
resources: {workers: 2}
stages:
  - {id: g, kind: synthetic, with: {seed: 1, layers: 2, tensors: [{name: "l.{layer}.w", shape: [16, 8]}]}}
  - {id: s, kind: stats, needs: [g], with: {out: stats.json}}
`

func cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := runCLI(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestCLIRunStatusPlan(t *testing.T) {
	dir := t.TempDir()
	job := filepath.Join(dir, "job.yaml")
	os.WriteFile(job, []byte(cliJob), 0o644)
	wd := filepath.Join(dir, "wd")

	code, out, errs := cli(t, "status", "--workdir", wd, job)
	if code != 0 || !strings.Contains(out, "0/5 tasks done") {
		t.Fatalf("status before: %d %q %q", code, out, errs)
	}
	// --until runs a prefix of the graph
	code, out, errs = cli(t, "run", "--quiet", "--until", "g", "--workdir", wd, job)
	if code != 0 || !strings.Contains(out, "2 tasks run") {
		t.Fatalf("--until: %d %q %q", code, out, errs)
	}
	if code, _, errs = cli(t, "run", "--until", "nope", "--workdir", wd, job); code != 2 || !strings.Contains(errs, `unknown stage "nope"`) {
		t.Errorf("--until nope: %d %q", code, errs)
	}
	code, out, _ = cli(t, "status", "--list", "2", "--workdir", wd, job)
	if code != 0 || !strings.Contains(out, "pending g/l.0.w") || !strings.Contains(out, "... 1 more") {
		t.Errorf("status --list: %q", out)
	}
	code, out, errs = cli(t, "run", job, "--workdir", wd, "--log-format", "json")
	if code != 0 {
		t.Fatalf("run: %d %s", code, errs)
	}
	counts := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var e struct {
			Event, Stage, Key string
			Bytes             int64
			Seconds           float64
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("bad JSON line %q: %v", sc.Text(), err)
		}
		counts[e.Event]++
		if e.Event == "done" && (e.Bytes <= 0 || e.Stage == "" || e.Key == "") {
			t.Errorf("done event lacks fields: %s", sc.Text())
		}
	}
	if counts["queued"] != 5 || counts["started"] != 3 || counts["done"] != 3 || counts["skipped"] != 2 {
		t.Errorf("event counts %v", counts)
	}
	if _, err := os.Stat(filepath.Join(wd, "out", "stats.json")); err != nil {
		t.Error(err)
	}
	code, out, _ = cli(t, "status", "--workdir", wd, job)
	if code != 0 || !strings.Contains(out, "5/5 tasks done") {
		t.Errorf("status after: %q", out)
	}
	// second run: a summary line per stage on a non-terminal, everything skipped
	code, out, errs = cli(t, "run", "--workdir", wd, job)
	if code != 0 || strings.Count(errs, "\n") != 2 || !strings.Contains(errs, "g: done: 2 tasks skipped") ||
		!strings.Contains(errs, "s: done: 3 tasks skipped") || !strings.Contains(out, "0 tasks run, 5 skipped") {
		t.Errorf("resume: %d %q %q", code, out, errs)
	}
	// -v: a line per task event
	code, _, errs = cli(t, "run", "-v", "--workdir", wd, job)
	if code != 0 || strings.Count(errs, " skipped ") != 5 {
		t.Errorf("resume -v: %d %q", code, errs)
	}
	// --set changes a config: g and s re-run
	code, out, _ = cli(t, "run", "--quiet", "--workdir", wd, "--set", "stages.g.with.seed=2", job)
	if code != 0 || !strings.Contains(out, "5 tasks run, 0 skipped") {
		t.Errorf("after --set: %q", out)
	}
	// --fresh starts over
	code, out, _ = cli(t, "run", "--quiet", "--fresh", "--workdir", wd, job)
	if code != 0 || !strings.Contains(out, "5 tasks run") {
		t.Errorf("fresh: %q", out)
	}
	code, out, _ = cli(t, "plan", "--format", "dot", job)
	if code != 0 || !strings.Contains(out, `"g" -> "s" [label="2"]`) || !strings.HasPrefix(out, "digraph") {
		t.Errorf("dot: %q", out)
	}
	code, out, _ = cli(t, "plan", job)
	if code != 0 || !strings.Contains(out, "2 stages, 5 tasks") {
		t.Errorf("plan: %q", out)
	}
}

func TestCLIUsageAndErrors(t *testing.T) {
	if code, _, _ := cli(t); code != 2 {
		t.Errorf("no args: exit %d", code)
	}
	if code, _, errs := cli(t, "frob"); code != 2 || !strings.Contains(errs, `unknown command "frob"`) {
		t.Errorf("unknown command: %d %q", code, errs)
	}
	if code, _, _ := cli(t, "run"); code != 2 {
		t.Errorf("run without file: exit %d", code)
	}
	if code, _, errs := cli(t, "run", "/nonexistent/job.yaml"); code != 1 || !strings.Contains(errs, "no such file") {
		t.Errorf("missing file: %d %q", code, errs)
	}
	if code, out, _ := cli(t, "kinds"); code != 0 || !strings.Contains(out, "synthetic") || !strings.Contains(out, "stats") {
		t.Errorf("kinds: %q", out)
	}
	if code, out, _ := cli(t, "help"); code != 0 || !strings.Contains(out, "validate") {
		t.Errorf("help: %q", out)
	}
}

// TestCLIRerun: `run --rerun STAGE` runs that stage's tasks again though
// they are checkpointed (and only what their new outputs change); an id
// outside the job is a usage error.
func TestCLIRerun(t *testing.T) {
	dir := t.TempDir()
	job := filepath.Join(dir, "job.yaml")
	os.WriteFile(job, []byte(cliJob), 0o644)
	wd := filepath.Join(dir, "wd")
	if code, _, errs := cli(t, "run", "--quiet", "--workdir", wd, job); code != 0 {
		t.Fatalf("run: %d %s", code, errs)
	}
	cases := []struct {
		rerun string
		code  int
		want  string
	}{
		{"s", 0, "3 tasks run, 2 skipped"},
		{"g", 0, "2 tasks run, 3 skipped"}, // same outputs: s is skipped
		{"g,s", 0, "5 tasks run, 0 skipped"},
		{"nope", 2, `--rerun: stage "nope" is not in the job`},
	}
	for _, c := range cases {
		code, out, errs := cli(t, "run", "--quiet", "--rerun", c.rerun, "--workdir", wd, job)
		if code != c.code || !strings.Contains(out+errs, c.want) {
			t.Errorf("--rerun %s: %d %q %q, want %d and %q", c.rerun, code, out, errs, c.code, c.want)
		}
	}
}
