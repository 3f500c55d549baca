package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
)

// sizedKind plans one task per size in cfg.Rules (the match field holds
// the size in bytes) and counts the tasks that ran.
func sizedKind(ran *atomic.Int32) Kind {
	return funcKind("sized", func(pc *PlanContext, cfg *fakeConfig) ([]*Task, error) {
		var ts []*Task
		for i, r := range cfg.Rules {
			var sz int64
			if _, err := fmt.Sscan(r.Match, &sz); err != nil {
				return nil, err
			}
			ts = append(ts, &Task{Key: fmt.Sprint("t", i), EstBytes: sz, Run: func(ctx context.Context, env *TaskEnv) (*Output, error) {
				ran.Add(1)
				return &Output{}, nil
			}})
		}
		return ts, nil
	})
}

// TestOverBudgetRefusedBeforeAnythingRuns: a plan holding a task whose
// estimate alone exceeds the budget or the machine's memory is refused
// before any task starts, with the estimate, the budget and the machine's
// memory in the message; the runner's AllowOverBudget or the job's
// resources.allow_over_budget runs it anyway.
func TestOverBudgetRefusedBeforeAnythingRuns(t *testing.T) {
	sizes := func(s ...int) string {
		var b strings.Builder
		for _, v := range s {
			fmt.Fprintf(&b, "{match: '%d'}, ", v)
		}
		return "[" + strings.TrimSuffix(b.String(), ", ") + "]"
	}
	cases := []struct {
		name      string
		resources string
		tasks     string
		runner    Runner
		want      []string // substrings of the error; nil: the run succeeds
	}{
		{"within budget", "{memory: 1000}", sizes(10, 1000, 20), Runner{MachineMemory: -1}, nil},
		{"over budget", "{memory: 1000}", sizes(10, 5000, 20), Runner{MachineMemory: -1},
			[]string{"1 task's memory estimate exceeds the memory budget", "x/t1 estimates 4.9KiB", "budget 1000B", "machine memory not checked", "allow_over_budget"}},
		{"runner budget override", "{memory: 1MiB}", sizes(10, 5000, 20), Runner{Memory: 2000, MachineMemory: -1},
			[]string{"x/t1 estimates 4.9KiB", "budget 2KiB"}},
		{"over machine memory", "{}", sizes(10, 5000, 3000), Runner{MachineMemory: 4000},
			[]string{"1 task's memory estimate exceeds the machine's memory", "x/t1 estimates 4.9KiB", "budget unlimited", "machine memory 3.9KiB"}},
		{"over both", "{memory: 1000}", sizes(5000), Runner{MachineMemory: 2000},
			[]string{"exceeds the memory budget and the machine's memory", "budget 1000B", "machine memory 2KiB"}},
		{"many, largest first", "{memory: 100}", sizes(101, 102, 103, 104, 105, 106, 107, 108), Runner{MachineMemory: -1},
			[]string{"8 tasks' memory estimates exceed the memory budget: x/t7 estimates 108B, x/t6 estimates 107B, x/t5", "x/t3 estimates 104B and 3 more"}},
		{"allowed by the runner", "{memory: 1000}", sizes(10, 5000, 20), Runner{MachineMemory: 2000, AllowOverBudget: true}, nil},
		{"allowed by the job", "{memory: 1000, allow_over_budget: true}", sizes(10, 5000, 20), Runner{MachineMemory: 2000}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var ran atomic.Int32
			doc := fmt.Sprintf("version: 1\nresources: %s\nstages:\n  - {id: x, kind: sized, with: {rules: %s}}\n", c.resources, c.tasks)
			plan := loadPlan(t, testRegistry(t, sizedKind(&ran)), doc)
			stats, err := runPlan(t, plan, t.TempDir(), c.runner)
			if c.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if stats.Executed != plan.NumTasks() {
					t.Errorf("executed %d of %d tasks", stats.Executed, plan.NumTasks())
				}
				return
			}
			var obe *OverBudgetError
			if !errors.As(err, &obe) {
				t.Fatalf("got %v, want an OverBudgetError", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if n := ran.Load(); n != 0 {
				t.Errorf("%d tasks ran before the refusal", n)
			}
		})
	}
}

func TestParseMemTotal(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		err  string
	}{
		{"MemTotal:       16318480 kB\nMemFree:         1234 kB\n", 16318480 << 10, ""},
		{"MemFree:         1234 kB\nMemTotal: 8 kB\n", 8 << 10, ""},
		{"MemFree:         1234 kB\n", 0, "no MemTotal"},
		{"MemTotal: lots kB\n", 0, "malformed"},
		{"MemTotal: 12 MB\n", 0, "malformed"},
		{"MemTotal: -12 kB\n", 0, "malformed"},
	}
	for _, c := range cases {
		got, err := parseMemTotal(strings.NewReader(c.in))
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: err %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q: %d, %v; want %d", c.in, got, err, c.want)
		}
	}
}
