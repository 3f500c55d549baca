package main

import (
	"bytes"
	"context"
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
