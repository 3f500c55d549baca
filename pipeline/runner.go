package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"
)

// Runner executes a Plan against a Store.
//
// Scheduling: a task is queued once every task it needs is done. Queued
// tasks start through an errgroup limited to Workers goroutines and are
// admitted by a semaphore.Weighted holding Memory bytes: a task acquires
// its EstBytes before Run and releases them after its output is stored.
// The semaphore is FIFO, so a large task is not starved by small ones.
//
// Before any task starts, Run refuses a plan holding a task whose estimate
// alone exceeds the budget or the machine's physical memory, with an
// *OverBudgetError naming the tasks, their estimates, the budget and the
// machine's memory (Plan.CheckMemory): such a task would either break the
// budget or kill the process with the runtime's out-of-memory fatal error
// once the tasks before it had run. With AllowOverBudget (or the job's
// resources.allow_over_budget) such a task runs anyway, holding the whole
// budget, i.e. alone.
//
// Resume: a task's identity (TaskID) covers its kind, config, key, Meta,
// Fingerprint and the digests of its inputs. Before running, the runner
// looks the identity up in the journal, re-hashes the blob (and any
// artifacts) and skips the task when they match; a missing, truncated or
// altered blob is recomputed. A changed config therefore re-runs that
// stage and, transitively, those downstream tasks whose input digests
// changed — nothing else.
//
// The first failing task cancels the run; its error names the task.
type Runner struct {
	// Store holds checkpoints (required).
	Store *Store
	// Workers bounds tasks in flight (0: the job's resources.workers,
	// which defaults to GOMAXPROCS).
	Workers int
	// Memory is the admission budget in bytes (0: the job's
	// resources.memory; negative: unlimited).
	Memory int64
	// MachineMemory is the memory no task's estimate may exceed, in bytes
	// (0: the machine's physical memory, MachineMemory(); negative: not
	// checked).
	MachineMemory int64
	// AllowOverBudget runs tasks whose estimate exceeds the budget or the
	// machine's memory (each alone) instead of refusing the plan; the
	// job's resources.allow_over_budget does the same.
	AllowOverBudget bool
	// Events receives task events (may be nil).
	Events EventHandler
	// Log is the structured logger (nil: discard).
	Log *slog.Logger
	// Rerun names stages whose tasks run even when the journal holds
	// their outputs (`run --rerun`: re-measure a benchmark). Their new
	// outputs replace the old ones under the same identities; downstream
	// tasks re-run when a digest changed.
	Rerun []string
	// Text receives human-readable results that stages print for the
	// reader of the run (the benchmark table); nil discards them, as in
	// --log-format json, where the same data is in the events and files.
	Text io.Writer
}

// RunStats summarizes a run.
type RunStats struct {
	Executed int   // tasks run
	Skipped  int   // tasks found in the store
	Bytes    int64 // blob bytes written
	// Recomputed counts journal entries found invalid and recomputed.
	Recomputed int
}

type taskState struct {
	ref     TaskRef
	task    *Task
	js      *JobStage
	pending int
	users   []*taskState
	entry   JournalEntry
	// needs are the distinct states of task.Needs.
	needs []*taskState
	// usersLeft counts users not finished yet (transient tasks: the blob
	// is dropped when it reaches zero). Only the dispatch loop touches it.
	usersLeft int
	// mu guards entry and dropped while a dropped transient output is
	// recomputed for a user that must run.
	mu      sync.Mutex
	dropped bool
	// pins counts running tasks about to read this output: a transient
	// blob is not dropped while pinned.
	pins int
	// Dispatch state (the dispatch loop only): idle is a transient task
	// whose needs are done but that no user has asked for yet; queued is
	// set once it is handed to a worker, done once it finished.
	idle, queued, done bool
}

// Run executes the plan. It returns when every task is done or skipped,
// or after the first failure (or ctx cancellation) once tasks in flight
// have stopped.
//
// The steps: settle the limits (workers, budget, the memory check), link
// the task states (newRun), then dispatch tasks as their needs finish
// (dispatch), each of which is skipped when the store holds its output
// (runOne) or executed (execute).
func (r *Runner) Run(ctx context.Context, plan *Plan) (RunStats, error) {
	if r.Store == nil {
		return RunStats{}, errors.New("runner: no store")
	}
	workers, budget, err := r.limits(plan)
	if err != nil {
		return RunStats{}, err
	}
	rerun, err := r.rerunStages(plan)
	if err != nil {
		return RunStats{}, err
	}
	ru := r.newRun(ctx, plan, workers, budget, rerun)
	cancelled := ru.dispatch()
	err = ru.g.Wait()
	if err == nil && cancelled {
		err = ctx.Err()
		if err == nil {
			err = context.Canceled
		}
	}
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		err = fmt.Errorf("run interrupted: %w", err)
	}
	return ru.stats, err
}

// limits resolves the worker count and the memory budget (Runner fields
// first, then the job's resources) and, unless over-budget tasks are
// allowed, refuses a plan holding a task that cannot fit
// (Plan.CheckMemory).
func (r *Runner) limits(plan *Plan) (workers int, budget int64, err error) {
	workers = r.Workers
	if workers <= 0 {
		workers = plan.Job.Resources.Workers
	}
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	budget = r.Memory
	if budget == 0 {
		budget = plan.Job.Resources.Memory
	}
	if !r.AllowOverBudget && !plan.Job.Resources.AllowOverBudget {
		machine := r.MachineMemory
		if machine == 0 {
			machine = MachineMemory()
		}
		if err := plan.CheckMemory(MemoryLimits{Budget: budget, Machine: machine}); err != nil {
			return 0, 0, err
		}
	}
	return workers, budget, nil
}

// rerunStages checks Rerun against the plan and returns it as a set.
func (r *Runner) rerunStages(plan *Plan) (map[string]bool, error) {
	rerun := map[string]bool{}
	for _, id := range r.Rerun {
		if plan.JobStage(id) == nil {
			return nil, fmt.Errorf("rerun: unknown stage %q", id)
		}
		rerun[id] = true
	}
	return rerun, nil
}

// run is the state of one Runner.Run.
type run struct {
	r      *Runner
	plan   *Plan
	log    *slog.Logger
	budget int64
	sem    *semaphore.Weighted // nil: no budget
	rerun  map[string]bool
	states map[TaskRef]*taskState

	evMu sync.Mutex

	statsMu sync.Mutex
	stats   RunStats

	g    *errgroup.Group
	gctx context.Context
	// doneCh carries finished tasks from the workers to the dispatch loop.
	doneCh chan *taskState
	// ready are the tasks to hand to workers (the dispatch loop only).
	ready []*taskState
}

// newRun sets up a run: logger, admission semaphore, worker group and the
// task states linked to their needs and users.
func (r *Runner) newRun(ctx context.Context, plan *Plan, workers int, budget int64, rerun map[string]bool) *run {
	ru := &run{r: r, plan: plan, log: r.Log, budget: budget, rerun: rerun}
	if ru.log == nil {
		ru.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if budget > 0 {
		ru.sem = semaphore.NewWeighted(budget)
	}
	ru.states = make(map[TaskRef]*taskState, len(plan.Order))
	for _, ref := range plan.Order {
		ru.states[ref] = &taskState{ref: ref, task: plan.Task(ref), js: plan.JobStage(ref.Stage)}
	}
	for _, ref := range plan.Order {
		st := ru.states[ref]
		seen := map[TaskRef]bool{}
		for _, n := range st.task.Needs {
			if seen[n] {
				continue
			}
			seen[n] = true
			st.pending++
			st.needs = append(st.needs, ru.states[n])
			ru.states[n].users = append(ru.states[n].users, st)
			ru.states[n].usersLeft++
		}
	}
	ru.doneCh = make(chan *taskState, len(plan.Order))
	ru.g, ru.gctx = errgroup.WithContext(ctx)
	ru.g.SetLimit(workers)
	return ru
}

// emit stamps and delivers an event (one at a time).
func (ru *run) emit(e Event) {
	if ru.r.Events == nil {
		return
	}
	e.Time = time.Now()
	ru.evMu.Lock()
	defer ru.evMu.Unlock()
	ru.r.Events(e)
}

// count updates the run's statistics.
func (ru *run) count(f func(*RunStats)) {
	ru.statsMu.Lock()
	f(&ru.stats)
	ru.statsMu.Unlock()
}

// dropIfUnused deletes a transient output's blob once no user needs it.
func (ru *run) dropIfUnused(ns *taskState) {
	if !ns.task.Transient {
		return
	}
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if ns.usersLeft == 0 && ns.pins == 0 && !ns.dropped {
		if err := ru.r.Store.DropBlob(ns.entry); err != nil {
			ru.log.Warn("dropping an intermediate output", "task", ns.ref.String(), "err", err)
		}
		ns.dropped = true
	}
}

// taskID is st's identity: its task and the digests of its inputs.
func (ru *run) taskID(st *taskState) string {
	inputs := make([]string, len(st.task.Needs))
	for i, n := range st.task.Needs {
		ns := ru.states[n]
		ns.mu.Lock()
		inputs[i] = ns.entry.Digest
		ns.mu.Unlock()
	}
	return TaskID(*st.js.Kind, st.js.ConfigJSON, st.task, inputs)
}

// materialize recomputes the dropped transient outputs st needs (and,
// recursively, theirs), so that st can run.
func (ru *run) materialize(st *taskState) error {
	for _, ns := range st.needs {
		ns.mu.Lock()
		dropped := ns.dropped
		ns.mu.Unlock()
		if !dropped {
			continue
		}
		if err := ru.execute(ns, ""); err != nil {
			return err
		}
	}
	return nil
}

// execute runs st's task (its inputs present), stores its output and
// records the entry. An empty id recomputes a dropped transient output for
// a user.
func (ru *run) execute(st *taskState, id string) error {
	materialized := id == ""
	if materialized {
		// Recomputing a dropped transient output for a user; st.mu
		// keeps a second user from recomputing it too. When done, it
		// is dropped again if every user has finished meanwhile.
		st.mu.Lock()
		if !st.dropped {
			st.mu.Unlock()
			return nil // another user recomputed it
		}
		ru.log.Info("recomputing a dropped intermediate output", "task", st.ref.String())
		defer ru.dropIfUnused(st) // runs after the unlock below
		defer st.mu.Unlock()
	}
	// Pin the needs while st reads them; afterwards a need recomputed
	// for st after its users had finished is dropped again.
	for _, ns := range st.needs {
		ns.mu.Lock()
		ns.pins++
		ns.mu.Unlock()
	}
	defer func() {
		for _, ns := range st.needs {
			ns.mu.Lock()
			ns.pins--
			ns.mu.Unlock()
			ru.dropIfUnused(ns)
		}
	}()
	if err := ru.materialize(st); err != nil {
		return err
	}
	if id == "" {
		id = ru.taskID(st)
	}
	t := st.task
	w := t.EstBytes
	if ru.sem != nil {
		if w > ru.budget {
			w = ru.budget
		}
		if err := ru.sem.Acquire(ru.gctx, w); err != nil {
			return err
		}
		defer ru.sem.Release(w)
	}
	ru.emit(Event{Type: EventStarted, Stage: st.ref.Stage, Key: st.ref.Key, Bytes: t.EstBytes})
	start := time.Now()
	env := ru.taskEnv(st)
	out, err := runTask(ru.gctx, t, env)
	if err == nil {
		err = ru.gctx.Err()
	}
	if err == nil {
		if out == nil {
			out = &Output{}
		}
		err = env.recordArtifacts(out)
	}
	if err != nil {
		secs := time.Since(start).Seconds()
		ru.emit(Event{Type: EventFailed, Stage: st.ref.Stage, Key: st.ref.Key, Seconds: secs, Err: err.Error()})
		return fmt.Errorf("task %s: %w", st.ref, err)
	}
	e, err := ru.r.Store.Put(id, st.ref, out, time.Since(start).Seconds())
	if err != nil {
		ru.emit(Event{Type: EventFailed, Stage: st.ref.Stage, Key: st.ref.Key, Err: err.Error()})
		return fmt.Errorf("task %s: %w", st.ref, err)
	}
	st.entry = e
	st.dropped = false
	if ru.sem != nil && w >= ru.budget/4 {
		// A task holding a quarter of the budget or more leaves as
		// much garbage: collect it before its bytes are released, so
		// the next admitted task does not find the heap still full
		// (the GC limit alone lags when other processes hold the CPU).
		// out is dead here, so its tensors are collected too.
		out = nil
		runtime.GC()
	}
	ru.count(func(s *RunStats) { s.Executed++; s.Bytes += e.Size })
	ru.emit(Event{Type: EventDone, Stage: st.ref.Stage, Key: st.ref.Key, Bytes: e.Size, Seconds: e.Seconds})
	return nil
}

// taskEnv is what st's task sees: the output directory, a logger, progress
// reporting (at most one event every 100ms, and the last) and its inputs.
func (ru *run) taskEnv(st *taskState) *TaskEnv {
	var progMu sync.Mutex
	var lastProg time.Time
	return &TaskEnv{
		OutDir: ru.r.Store.OutDir(),
		Log:    ru.log.With("task", st.ref.String()),
		Text:   ru.r.Text,
		Progress: func(done, total int64) {
			// at most one progress event per task every 100ms (and the last)
			now := time.Now()
			progMu.Lock()
			skip := now.Sub(lastProg) < 100*time.Millisecond && done < total
			if !skip {
				lastProg = now
			}
			progMu.Unlock()
			if !skip {
				ru.emit(Event{Type: EventProgress, Stage: st.ref.Stage, Key: st.ref.Key, Done: done, Total: total})
			}
		},
		Input: func(ref TaskRef) (*Output, error) {
			for _, n := range st.task.Needs {
				if n == ref {
					ns := ru.states[ref]
					ns.mu.Lock()
					e := ns.entry
					ns.mu.Unlock()
					return ru.r.Store.Get(e)
				}
			}
			return nil, fmt.Errorf("task %s did not declare a need for %s", st.ref, ref)
		},
	}
}

// runOne skips st when the journal holds a valid output for its identity
// (and its stage is not rerun), and otherwise executes it.
func (ru *run) runOne(st *taskState) error {
	if err := ru.gctx.Err(); err != nil {
		return err
	}
	if ru.skip(st) {
		return nil
	}
	if err := ru.materialize(st); err != nil {
		return err
	}
	return ru.execute(st, ru.taskID(st))
}

// skip looks st's identity up in the store and reports whether st is done
// already: its blob verifies, or it is a transient output dropped after
// its users finished. An invalid checkpoint is counted as recomputed.
func (ru *run) skip(st *taskState) bool {
	e, ok := ru.r.Store.Lookup(ru.taskID(st))
	if !ok || ru.rerun[st.ref.Stage] {
		return false
	}
	if st.task.Transient && !ru.r.Store.HasBlob(e) {
		// Dropped after its users finished: skipped while they
		// stay done (materialize recomputes it otherwise).
		st.entry, st.dropped = e, true
		ru.count(func(s *RunStats) { s.Skipped++ })
		ru.emit(Event{Type: EventSkipped, Stage: st.ref.Stage, Key: st.ref.Key, Bytes: e.Size})
		return true
	}
	if err := ru.r.Store.Verify(e); err != nil {
		ru.log.Warn("checkpoint invalid, recomputing", "task", st.ref.String(), "err", err)
		ru.count(func(s *RunStats) { s.Recomputed++ })
		return false
	}
	st.entry = e
	ru.count(func(s *RunStats) { s.Skipped++ })
	ru.emit(Event{Type: EventSkipped, Stage: st.ref.Stage, Key: st.ref.Key, Bytes: e.Size})
	return true
}

// Transient tasks run on demand: once its needs are done, a transient
// task waits (idle) until one of its users could start as soon as its
// transient needs are computed, i.e. every need of the user is done,
// queued or idle. So a layer's rotated weights are made when the
// layer's activations are, not all at the start of the run, and the
// workdir holds about one layer's transient outputs.

// enqueue makes st (its needs done) ready, or idle when it is transient
// and has users, and tells its users.
func (ru *run) enqueue(st *taskState) {
	if st.task.Transient && len(st.users) > 0 {
		st.idle = true
		for _, u := range st.users {
			ru.demand(u)
		}
		return
	}
	st.queued = true
	ru.ready = append(ru.ready, st)
	for _, u := range st.users {
		ru.demand(u)
	}
}

// demand readies u's idle needs once every need of u is done, queued or
// idle.
func (ru *run) demand(u *taskState) {
	if u.done {
		return
	}
	for _, n := range u.needs {
		if !n.done && !n.queued && !n.idle {
			return
		}
	}
	for _, n := range u.needs {
		if n.idle {
			n.idle, n.queued = false, true
			ru.ready = append(ru.ready, n)
			for _, uu := range n.users {
				if uu != u {
					ru.demand(uu)
				}
			}
		}
	}
}

// dispatch hands ready tasks to the workers and follows their completion
// until every task is done or the run is cancelled (it then returns true;
// tasks in flight are left to the caller's g.Wait).
func (ru *run) dispatch() (cancelled bool) {
	order := ru.plan.Order
	for _, ref := range order {
		if st := ru.states[ref]; st.pending == 0 && !st.queued && !st.idle {
			ru.enqueue(st)
		}
	}
	completed, dispatched := 0, 0
	for completed < len(order) {
		for len(ru.ready) > 0 {
			st := ru.ready[0]
			ru.ready = ru.ready[1:]
			if ru.gctx.Err() != nil {
				return true
			}
			ru.emit(Event{Type: EventQueued, Stage: st.ref.Stage, Key: st.ref.Key, Bytes: st.task.EstBytes})
			dispatched++
			ru.g.Go(func() error {
				if err := ru.runOne(st); err != nil {
					return err
				}
				ru.doneCh <- st
				return nil
			})
		}
		if len(ru.ready) == 0 && dispatched == completed && completed < len(order) {
			// Nothing runs or waits: would only happen if idle transient
			// tasks were never asked for. Run them rather than stall.
			for _, ref := range order {
				if st := ru.states[ref]; st.idle {
					st.idle, st.queued = false, true
					ru.ready = append(ru.ready, st)
				}
			}
			if len(ru.ready) > 0 {
				continue
			}
		}
		select {
		case st := <-ru.doneCh:
			completed++
			ru.finished(st)
		case <-ru.gctx.Done():
			return true
		}
	}
	return false
}

// finished records that st is done: its needs lose a user (a transient one
// may be dropped) and its users lose a pending need.
func (ru *run) finished(st *taskState) {
	st.done = true
	for _, ns := range st.needs {
		ns.mu.Lock()
		ns.usersLeft--
		ns.mu.Unlock()
		ru.dropIfUnused(ns)
	}
	for _, u := range st.users {
		u.pending--
		if u.pending == 0 {
			ru.enqueue(u)
		}
		ru.demand(u)
	}
}

// runTask calls t.Run, turning a panic into an error naming it.
func runTask(ctx context.Context, t *Task, env *TaskEnv) (out *Output, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return t.Run(ctx, env)
}
