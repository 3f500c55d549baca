package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunDisplayByTerminalSize: a terminal that reports width 0 (CI
// runners, script(1), some `docker -t`) gets the plain per-stage summary
// like a pipe; only a terminal with a width gets progress bars.
func TestRunDisplayByTerminalSize(t *testing.T) {
	dir := t.TempDir()
	job := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(job, []byte(cliJob), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		cols  int
		tty   bool
		plain bool
	}{
		{"pipe", 0, false, true},
		{"terminal 0x0", 0, true, true},
		{"terminal 80 columns", 80, true, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			a := &app{Stdout: &out, Stderr: &errb, termWidth: func(io.Writer) (int, bool) { return c.cols, c.tty }}
			code := runApp(context.Background(), []string{"run", "--fresh", "--workdir", filepath.Join(dir, "wd"), job}, a)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errb.String())
			}
			got := errb.String()
			plain := strings.Contains(got, "g: started: 2 tasks") && strings.Contains(got, "s: done: 3 run")
			if plain != c.plain {
				t.Errorf("plain summary = %v, want %v; stderr:\n%s", plain, c.plain, got)
			}
			if !c.plain && !strings.Contains(got, "3/3") {
				t.Errorf("no progress bar on stderr:\n%s", got)
			}
		})
	}
}

// TestRunPlainOutputIsSummary: the default non-terminal output of a job
// is a few lines per stage in one format (no per-task lines, no
// per-tensor logs); -v restores the per-task lines.
func TestRunPlainOutputIsSummary(t *testing.T) {
	dir := t.TempDir()
	job := filepath.Join(dir, "job.yaml")
	doc := `version: 1
name: sum
resources: {workers: 2}
stages:
  - {id: g, kind: synthetic, with: {seed: 1, layers: 8, tensors: [{name: "l.{layer}.w", shape: [64, 32]}]}}
  - {id: q, kind: quantize, needs: [g], with: {default: {format: int4, group_size: 32}, report: q.json}}
`
	if err := os.WriteFile(job, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	wd := filepath.Join(dir, "wd")
	code, _, errs := cli(t, "run", "--workdir", wd, job)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(errs), "\n")
	// per stage: started + done; plus at most a few stage-level log lines
	// (the quantize summary)
	if len(lines) > 2*2+2 {
		t.Errorf("%d lines for 2 stages of 8 tasks:\n%s", len(lines), errs)
	}
	// q: one task per tensor and one for the report
	for _, want := range []string{"g: started: 8 tasks", "g: done: 8 run", "q: started: 9 tasks", "q: done: 9 run"} {
		if !strings.Contains(errs, want) {
			t.Errorf("no line %q in:\n%s", want, errs)
		}
	}
	if strings.Contains(errs, "DEBUG quantized") {
		t.Errorf("per-tensor log lines in the default output:\n%s", errs)
	}
	code, _, errs = cli(t, "run", "-v", "--fresh", "--workdir", wd, job)
	if code != 0 || strings.Count(errs, " done ") != 17 || !strings.Contains(errs, "DEBUG quantized") {
		t.Errorf("-v: exit %d, want 17 done lines and per-tensor logs:\n%s", code, errs)
	}
}

// TestBenchmarkTableOnlyInText: the benchmark's plain-text table goes to
// stderr with the text display and not at all with --log-format json
// (stdout then holds only JSON events; stderr only JSON logs).
func TestBenchmarkTableOnlyInText(t *testing.T) {
	model, err := filepath.Abs("../../demo/qwen3-nano")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(model, "model.safetensors")); err != nil {
		t.Skip("bundled demo model absent:", err)
	}
	dir := t.TempDir()
	job := filepath.Join(dir, "job.yaml")
	doc := strings.ReplaceAll(`version: 1
name: tbl
resources: {workers: 2, backend: cpu}
stages:
  - {id: load, kind: load, with: {path: MODEL}}
  - {id: quant, kind: quantize, needs: [load], with: {default: {format: mxfp4}, rules: [{match: "model.embed_tokens.weight", format: skip}]}}
  - {id: pack, kind: pack, needs: [quant], with: {format: native, out: packed, model: MODEL}}
  - {id: bench, kind: benchmark, needs: [pack], with: {packed: packed, prompt_tokens: 8, decode_tokens: 4, repeats: 1, no_report: true}}
`, "MODEL", model)
	if err := os.WriteFile(job, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	const header = "decode tok/s"
	cases := []struct {
		name      string
		args      []string
		wantTable bool
	}{
		{"json", []string{"--log-format", "json"}, false},
		{"text", nil, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"run", "--fresh", "--workdir", filepath.Join(dir, "wd")}, c.args...)
			code, out, errs := cli(t, append(args, job)...)
			if code != 0 {
				t.Fatalf("exit %d\n%s", code, errs)
			}
			if got := strings.Contains(errs, header); got != c.wantTable {
				t.Errorf("table on stderr = %v, want %v:\n%s", got, c.wantTable, errs)
			}
			if !c.wantTable {
				for _, stream := range []string{out, errs} {
					for _, l := range strings.Split(strings.TrimSpace(stream), "\n") {
						if !strings.HasPrefix(l, "{") {
							t.Errorf("non-JSON line in json mode: %q", l)
						}
					}
				}
			}
		})
	}
}

// TestWorkersRule: a negative worker count is refused alike on the
// command line and in the job file; 0 means the default in both.
func TestWorkersRule(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name string
		job  string
		args []string
		code int
		want string
	}{
		{"flag -1", cliJob, []string{"--workers", "-1"}, 2, "--workers must be >= 0"},
		{"file -1", strings.Replace(cliJob, "workers: 2", "workers: -1", 1), nil, 1, "resources.workers: must be >= 0"},
		{"flag 0", cliJob, []string{"--workers", "0"}, 0, ""},
		{"file 0", strings.Replace(cliJob, "workers: 2", "workers: 0", 1), nil, 0, ""},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			job := filepath.Join(dir, fmt.Sprint(i, ".yaml"))
			if err := os.WriteFile(job, []byte(c.job), 0o644); err != nil {
				t.Fatal(err)
			}
			args := append([]string{"run", "--quiet", "--workdir", filepath.Join(dir, fmt.Sprint("wd", i))}, c.args...)
			code, _, errs := cli(t, append(args, job)...)
			if code != c.code || !strings.Contains(errs, c.want) {
				t.Errorf("exit %d, want %d; stderr %q, want %q", code, c.code, errs, c.want)
			}
		})
	}
}
