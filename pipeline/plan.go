package pipeline

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
)

// Plan is a job's task graph: every stage planned, in dependency order.
type Plan struct {
	Job *Job
	// Stages are the planned stages in topological order (file order
	// among independent stages).
	Stages []*StagePlan
	// Order is every task in an order where each task comes after the
	// tasks it needs.
	Order []TaskRef

	tasks  map[TaskRef]*Task
	stages map[string]*JobStage
}

// Task returns the planned task named by ref.
func (p *Plan) Task(ref TaskRef) *Task { return p.tasks[ref] }

// JobStage returns the job stage of a planned stage id.
func (p *Plan) JobStage(id string) *JobStage { return p.stages[id] }

// NumTasks is the number of tasks in the plan.
func (p *Plan) NumTasks() int { return len(p.Order) }

// PlanJob builds the task graph: it constructs each stage from its config,
// calls Plan in dependency order and checks the result (unique keys,
// needs that name tasks of upstream stages or of the same stage, no task
// cycles). log may be nil.
func PlanJob(ctx context.Context, job *Job, log *slog.Logger) (*Plan, error) {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	order, err := stageOrder(job)
	if err != nil {
		return nil, err
	}
	p := &Plan{Job: job, tasks: map[TaskRef]*Task{}, stages: map[string]*JobStage{}}
	planned := map[string]*StagePlan{}
	ancestors := map[string]map[string]bool{}
	for _, js := range order {
		if js.Kind == nil || js.Config == nil {
			return nil, fmt.Errorf("plan: stage %q is not loaded", js.ID)
		}
		anc := map[string]bool{js.ID: true}
		var inputs []*StagePlan
		for _, n := range js.Needs {
			inputs = append(inputs, planned[n])
			for a := range ancestors[n] {
				anc[a] = true
			}
		}
		ancestors[js.ID] = anc
		st, err := js.Kind.New(js.Config)
		if err != nil {
			return nil, fmt.Errorf("%s: stage %q (%s): %w", js.Pos, js.ID, js.Kind.Name, err)
		}
		pc := &PlanContext{
			StageID:   js.ID,
			JobName:   job.Name,
			JobDir:    job.Dir,
			Workdir:   job.Workdir,
			Inputs:    inputs,
			Upstream:  map[string]*StagePlan{},
			Resources: job.Resources,
			Log:       log.With("stage", js.ID),
		}
		for a := range anc {
			if sp := planned[a]; sp != nil {
				pc.Upstream[a] = sp
			}
		}
		tasks, err := st.Plan(ctx, pc)
		if err != nil {
			return nil, fmt.Errorf("%s: plan stage %q (%s): %w", js.Pos, js.ID, js.Kind.Name, err)
		}
		sp := &StagePlan{ID: js.ID, Kind: js.Kind.Name, Tasks: tasks}
		for i, t := range tasks {
			switch {
			case t == nil:
				return nil, fmt.Errorf("plan stage %q: task %d is nil", js.ID, i)
			case t.Key == "":
				return nil, fmt.Errorf("plan stage %q: task %d has an empty key", js.ID, i)
			case t.Run == nil:
				return nil, fmt.Errorf("plan stage %q: task %q has no Run", js.ID, t.Key)
			case t.EstBytes < 0:
				return nil, fmt.Errorf("plan stage %q: task %q has negative EstBytes", js.ID, t.Key)
			}
			ref := TaskRef{Stage: js.ID, Key: t.Key}
			if _, dup := p.tasks[ref]; dup {
				return nil, fmt.Errorf("plan stage %q: duplicate task key %q", js.ID, t.Key)
			}
			p.tasks[ref] = t
		}
		for _, t := range tasks {
			for _, n := range t.Needs {
				if !anc[n.Stage] {
					return nil, fmt.Errorf("plan stage %q: task %q needs %s/%s, but stage %q is not upstream of %q", js.ID, t.Key, n.Stage, n.Key, n.Stage, js.ID)
				}
				if _, ok := p.tasks[n]; !ok {
					return nil, fmt.Errorf("plan stage %q: task %q needs unknown task %s/%s", js.ID, t.Key, n.Stage, n.Key)
				}
			}
		}
		planned[js.ID] = sp
		p.stages[js.ID] = js
		p.Stages = append(p.Stages, sp)
	}
	if err := p.orderTasks(); err != nil {
		return nil, err
	}
	return p, nil
}

// stageOrder sorts stages topologically (Kahn), preferring file order.
func stageOrder(job *Job) ([]*JobStage, error) {
	indeg := map[string]int{}
	users := map[string][]string{}
	byID := map[string]*JobStage{}
	for _, s := range job.Stages {
		byID[s.ID] = s
		indeg[s.ID] += 0
		for _, n := range s.Needs {
			indeg[s.ID]++
			users[n] = append(users[n], s.ID)
		}
	}
	var out []*JobStage
	done := map[string]bool{}
	for len(out) < len(job.Stages) {
		progressed := false
		for _, s := range job.Stages {
			if !done[s.ID] && indeg[s.ID] == 0 {
				done[s.ID] = true
				out = append(out, s)
				for _, u := range users[s.ID] {
					indeg[u]--
				}
				progressed = true
				break
			}
		}
		if !progressed {
			if c := findCycle(job.Stages); c != nil {
				return nil, fmt.Errorf("plan: stage cycle: %s", strings.Join(c, " -> "))
			}
			return nil, fmt.Errorf("plan: stages cannot be ordered (unknown needs?)")
		}
	}
	return out, nil
}

// orderTasks computes p.Order and rejects task cycles.
func (p *Plan) orderTasks() error {
	indeg := make(map[TaskRef]int, len(p.tasks))
	users := make(map[TaskRef][]TaskRef)
	var all []TaskRef
	for _, sp := range p.Stages {
		for _, t := range sp.Tasks {
			ref := TaskRef{sp.ID, t.Key}
			all = append(all, ref)
			seen := map[TaskRef]bool{}
			for _, n := range t.Needs {
				if seen[n] {
					continue
				}
				seen[n] = true
				indeg[ref]++
				users[n] = append(users[n], ref)
			}
		}
	}
	var queue []TaskRef
	for _, r := range all {
		if indeg[r] == 0 {
			queue = append(queue, r)
		}
	}
	for len(queue) > 0 {
		r := queue[0]
		queue = queue[1:]
		p.Order = append(p.Order, r)
		for _, u := range users[r] {
			indeg[u]--
			if indeg[u] == 0 {
				queue = append(queue, u)
			}
		}
	}
	if len(p.Order) != len(all) {
		var stuck []string
		for _, r := range all {
			if indeg[r] > 0 {
				stuck = append(stuck, r.String())
			}
		}
		sort.Strings(stuck)
		if len(stuck) > 5 {
			stuck = append(stuck[:5], "...")
		}
		return fmt.Errorf("plan: task cycle among %s", strings.Join(stuck, ", "))
	}
	return nil
}

// String renders a TaskRef as "stage/key".
func (r TaskRef) String() string { return r.Stage + "/" + r.Key }

// WriteText prints the stage DAG with task counts and memory estimates.
func (p *Plan) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "job %s: %d stages, %d tasks, workdir %s\n", p.Job.Name, len(p.Stages), len(p.Order), p.Job.Workdir)
	for _, sp := range p.Stages {
		js := p.stages[sp.ID]
		var est, maxEst int64
		for _, t := range sp.Tasks {
			est += t.EstBytes
			maxEst = max(maxEst, t.EstBytes)
		}
		needs := "-"
		if len(js.Needs) > 0 {
			needs = strings.Join(js.Needs, ", ")
		}
		note := ""
		if m := p.Job.Resources.Memory; m > 0 && maxEst > m {
			if p.Job.Resources.AllowOverBudget {
				note = fmt.Sprintf("  [largest task exceeds memory %s: runs alone (allow_over_budget)]", ByteSize(m))
			} else {
				note = fmt.Sprintf("  [largest task exceeds memory %s: refused]", ByteSize(m))
			}
		}
		if _, err := fmt.Fprintf(w, "  %-16s kind=%-12s tasks=%-6d est=%-10s max_task=%-10s needs: %s%s\n", sp.ID, sp.Kind, len(sp.Tasks), ByteSize(est), ByteSize(maxEst), needs, note); err != nil {
			return err
		}
	}
	return nil
}

// WriteDot prints the stage DAG in Graphviz dot format.
func (p *Plan) WriteDot(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "digraph %q {\n  rankdir=LR;\n  node [shape=box];\n", p.Job.Name)
	for _, sp := range p.Stages {
		fmt.Fprintf(&b, "  %q [label=%q];\n", sp.ID, fmt.Sprintf("%s\n%s\n%d tasks", sp.ID, sp.Kind, len(sp.Tasks)))
	}
	for _, sp := range p.Stages {
		for _, n := range p.stages[sp.ID].Needs {
			// edge label: number of task-level dependencies crossing it
			cnt := 0
			for _, t := range sp.Tasks {
				for _, r := range t.Needs {
					if r.Stage == n {
						cnt++
					}
				}
			}
			fmt.Fprintf(&b, "  %q -> %q [label=\"%d\"];\n", n, sp.ID, cnt)
		}
	}
	b.WriteString("}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// Until returns the sub-plan that runs only the given stages and the
// stages they depend on (transitively), e.g. to iterate on an early stage
// without running the expensive ones after it.
func (p *Plan) Until(ids ...string) (*Plan, error) {
	keep := map[string]bool{}
	var visit func(id string) error
	visit = func(id string) error {
		js, ok := p.stages[id]
		if !ok {
			return fmt.Errorf("unknown stage %q", id)
		}
		if keep[id] {
			return nil
		}
		keep[id] = true
		for _, n := range js.Needs {
			if err := visit(n); err != nil {
				return err
			}
		}
		return nil
	}
	for _, id := range ids {
		if err := visit(id); err != nil {
			return nil, err
		}
	}
	sub := &Plan{Job: p.Job, tasks: map[TaskRef]*Task{}, stages: map[string]*JobStage{}}
	for _, sp := range p.Stages {
		if keep[sp.ID] {
			sub.Stages = append(sub.Stages, sp)
			sub.stages[sp.ID] = p.stages[sp.ID]
		}
	}
	for _, ref := range p.Order {
		if keep[ref.Stage] {
			sub.Order = append(sub.Order, ref)
			sub.tasks[ref] = p.tasks[ref]
		}
	}
	return sub, nil
}
