package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/pipeline"
)

// overBudgetJob is a synthetic job of one tensor under a 1MiB budget.
const overBudgetJob = `version: 1
name: over-budget
resources: {memory: 1MiB, workers: 2}
stages:
  - id: w
    kind: synthetic
    with:
      dtype: %s
      tensors: [{name: big, shape: %s}]
  - {id: s, kind: stats, needs: [w], with: {out: stats.json}}
`

// TestRunRefusesTaskOverBudget: a task whose estimate exceeds the budget
// (or the machine's memory) is refused before anything runs, with the
// estimate, the budget and the machine's memory in the message, by run
// and plan alike; --allow-over-budget (or resources.allow_over_budget)
// runs it. The huge case is a 128GiB tensor (192GiB with its float32
// scratch), which without the check dies with "fatal error: out of
// memory" on any ordinary machine.
func TestRunRefusesTaskOverBudget(t *testing.T) {
	// run sets the Go GC's memory limit from the budget: restore it for
	// the other tests of this process.
	limit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(limit) })
	machine := "machine memory not checked"
	if m := pipeline.MachineMemory(); m > 0 {
		machine = "machine memory " + pipeline.ByteSize(m).String()
	}
	cases := []struct {
		name        string
		dtype       string
		shape       string
		args        []string
		wantRefusal []string // nil: the run succeeds
	}{
		{"small over budget", "F32", "[512, 512]", nil,
			[]string{"w/big estimates 2MiB", "budget 1MiB", machine, "--allow-over-budget"}},
		{"huge", "F64", "[131072, 131072]", nil,
			[]string{"w/big estimates 192GiB", "budget 1MiB", machine}},
		{"allowed by flag", "F32", "[512, 512]", []string{"--allow-over-budget"}, nil},
		{"allowed by the job", "F32", "[512, 512]", []string{"--set", "resources.allow_over_budget=true"}, nil},
		{"within budget", "F32", "[128, 512]", nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			job := filepath.Join(dir, "job.yaml")
			if err := os.WriteFile(job, []byte(fmt.Sprintf(overBudgetJob, c.dtype, c.shape)), 0o644); err != nil {
				t.Fatal(err)
			}
			wd := filepath.Join(dir, "wd")
			// plan takes the same flags and refuses what run refuses
			pcode, pout, perr := cli(t, append(append([]string{"plan", "--workdir", wd}, c.args...), job)...)
			code, out, errs := cli(t, append(append([]string{"run", "--quiet", "--workdir", wd}, c.args...), job)...)
			if c.wantRefusal == nil {
				if code != 0 || !strings.Contains(out, "3 tasks run") {
					t.Fatalf("run: exit %d, %q %q", code, out, errs)
				}
				if pcode != 0 {
					t.Errorf("plan: exit %d, %q", pcode, perr)
				}
				return
			}
			if code != 1 {
				t.Fatalf("run: exit %d, want 1 (refused); %q %q", code, out, errs)
			}
			for _, w := range c.wantRefusal {
				if !strings.Contains(errs, w) {
					t.Errorf("run's message %q lacks %q", errs, w)
				}
				if !strings.Contains(perr, w) {
					t.Errorf("plan's message %q lacks %q", perr, w)
				}
			}
			if pcode != 1 || !strings.Contains(pout, "refused") {
				t.Errorf("plan: exit %d, want 1 and the plan marking the refusal; %q", pcode, pout)
			}
			if data, _ := os.ReadFile(filepath.Join(wd, "journal.jsonl")); len(data) > 0 {
				t.Errorf("a refused run journaled tasks: %s", data)
			}
		})
	}
}

// TestValidatePlanChecksBudget: validate --plan checks the tasks'
// estimates against resources.memory (not the machine's memory: CI
// machines are not the ones that run jobs).
func TestValidatePlanChecksBudget(t *testing.T) {
	dir := t.TempDir()
	job := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(job, []byte(fmt.Sprintf(overBudgetJob, "F32", "[512, 512]")), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"validate", job}, 0, "ok " + job},
		{[]string{"validate", "--plan", job}, 1, "w/big estimates 2MiB, s/w/big estimates 1.2MiB; budget 1MiB (resources.memory), machine memory not checked"},
		{[]string{"validate", "--plan", "--set", "resources.allow_over_budget=true", job}, 0, "ok " + job},
		{[]string{"validate", "--plan", "--set", "resources.memory=4MiB", job}, 0, "ok " + job},
	}
	for _, c := range cases {
		code, out, errs := cli(t, c.args...)
		if code != c.code || !strings.Contains(out+errs, c.want) {
			t.Errorf("%v: exit %d, want %d with %q; %q %q", c.args, code, c.code, c.want, out, errs)
		}
	}
}
