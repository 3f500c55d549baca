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
func (r *Runner) Run(ctx context.Context, plan *Plan) (RunStats, error) {
	var stats RunStats
	if r.Store == nil {
		return stats, errors.New("runner: no store")
	}
	log := r.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	workers := r.Workers
	if workers <= 0 {
		workers = plan.Job.Resources.Workers
	}
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	budget := r.Memory
	if budget == 0 {
		budget = plan.Job.Resources.Memory
	}
	if !r.AllowOverBudget && !plan.Job.Resources.AllowOverBudget {
		machine := r.MachineMemory
		if machine == 0 {
			machine = MachineMemory()
		}
		if err := plan.CheckMemory(MemoryLimits{Budget: budget, Machine: machine}); err != nil {
			return stats, err
		}
	}
	var sem *semaphore.Weighted
	if budget > 0 {
		sem = semaphore.NewWeighted(budget)
	}
	var evMu sync.Mutex
	emit := func(e Event) {
		if r.Events == nil {
			return
		}
		e.Time = time.Now()
		evMu.Lock()
		defer evMu.Unlock()
		r.Events(e)
	}

	rerun := map[string]bool{}
	for _, id := range r.Rerun {
		if plan.JobStage(id) == nil {
			return stats, fmt.Errorf("rerun: unknown stage %q", id)
		}
		rerun[id] = true
	}

	states := make(map[TaskRef]*taskState, len(plan.Order))
	for _, ref := range plan.Order {
		states[ref] = &taskState{ref: ref, task: plan.Task(ref), js: plan.JobStage(ref.Stage)}
	}
	for _, ref := range plan.Order {
		st := states[ref]
		seen := map[TaskRef]bool{}
		for _, n := range st.task.Needs {
			if seen[n] {
				continue
			}
			seen[n] = true
			st.pending++
			st.needs = append(st.needs, states[n])
			states[n].users = append(states[n].users, st)
			states[n].usersLeft++
		}
	}

	var statsMu sync.Mutex
	doneCh := make(chan *taskState, len(plan.Order))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)

	// dropIfUnused deletes a transient output's blob once no user needs it.
	dropIfUnused := func(ns *taskState) {
		if !ns.task.Transient {
			return
		}
		ns.mu.Lock()
		defer ns.mu.Unlock()
		if ns.usersLeft == 0 && ns.pins == 0 && !ns.dropped {
			if err := r.Store.DropBlob(ns.entry); err != nil {
				log.Warn("dropping an intermediate output", "task", ns.ref.String(), "err", err)
			}
			ns.dropped = true
		}
	}
	taskID := func(st *taskState) string {
		inputs := make([]string, len(st.task.Needs))
		for i, n := range st.task.Needs {
			ns := states[n]
			ns.mu.Lock()
			inputs[i] = ns.entry.Digest
			ns.mu.Unlock()
		}
		return TaskID(*st.js.Kind, st.js.ConfigJSON, st.task, inputs)
	}
	// execute runs st's task (its inputs present), stores its output and
	// records the entry.
	var execute func(st *taskState, id string) error
	// materialize recomputes the dropped transient outputs st needs (and,
	// recursively, theirs), so that st can run.
	materialize := func(st *taskState) error {
		for _, ns := range st.needs {
			ns.mu.Lock()
			dropped := ns.dropped
			ns.mu.Unlock()
			if !dropped {
				continue
			}
			if err := execute(ns, ""); err != nil {
				return err
			}
		}
		return nil
	}
	execute = func(st *taskState, id string) error {
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
			log.Info("recomputing a dropped intermediate output", "task", st.ref.String())
			defer dropIfUnused(st) // runs after the unlock below
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
				dropIfUnused(ns)
			}
		}()
		if err := materialize(st); err != nil {
			return err
		}
		if id == "" {
			id = taskID(st)
		}
		t := st.task
		w := t.EstBytes
		if sem != nil {
			if w > budget {
				w = budget
			}
			if err := sem.Acquire(gctx, w); err != nil {
				return err
			}
			defer sem.Release(w)
		}
		emit(Event{Type: EventStarted, Stage: st.ref.Stage, Key: st.ref.Key, Bytes: t.EstBytes})
		start := time.Now()
		var progMu sync.Mutex
		var lastProg time.Time
		env := &TaskEnv{
			OutDir: r.Store.OutDir(),
			Log:    log.With("task", st.ref.String()),
			Text:   r.Text,
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
					emit(Event{Type: EventProgress, Stage: st.ref.Stage, Key: st.ref.Key, Done: done, Total: total})
				}
			},
			Input: func(ref TaskRef) (*Output, error) {
				for _, n := range t.Needs {
					if n == ref {
						ns := states[ref]
						ns.mu.Lock()
						e := ns.entry
						ns.mu.Unlock()
						return r.Store.Get(e)
					}
				}
				return nil, fmt.Errorf("task %s did not declare a need for %s", st.ref, ref)
			},
		}
		out, err := runTask(gctx, t, env)
		if err == nil {
			err = gctx.Err()
		}
		if err == nil {
			if out == nil {
				out = &Output{}
			}
			err = env.recordArtifacts(out)
		}
		if err != nil {
			secs := time.Since(start).Seconds()
			emit(Event{Type: EventFailed, Stage: st.ref.Stage, Key: st.ref.Key, Seconds: secs, Err: err.Error()})
			return fmt.Errorf("task %s: %w", st.ref, err)
		}
		e, err := r.Store.Put(id, st.ref, out, time.Since(start).Seconds())
		if err != nil {
			emit(Event{Type: EventFailed, Stage: st.ref.Stage, Key: st.ref.Key, Err: err.Error()})
			return fmt.Errorf("task %s: %w", st.ref, err)
		}
		st.entry = e
		st.dropped = false
		if sem != nil && w >= budget/4 {
			// A task holding a quarter of the budget or more leaves as
			// much garbage: collect it before its bytes are released, so
			// the next admitted task does not find the heap still full
			// (the GC limit alone lags when other processes hold the CPU).
			// out is dead here, so its tensors are collected too.
			out = nil
			runtime.GC()
		}
		statsMu.Lock()
		stats.Executed++
		stats.Bytes += e.Size
		statsMu.Unlock()
		emit(Event{Type: EventDone, Stage: st.ref.Stage, Key: st.ref.Key, Bytes: e.Size, Seconds: e.Seconds})
		return nil
	}

	runOne := func(st *taskState) error {
		if err := gctx.Err(); err != nil {
			return err
		}
		t := st.task
		id := taskID(st)
		if e, ok := r.Store.Lookup(id); ok && !rerun[st.ref.Stage] {
			if t.Transient && !r.Store.HasBlob(e) {
				// Dropped after its users finished: skipped while they
				// stay done (materialize recomputes it otherwise).
				st.entry, st.dropped = e, true
				statsMu.Lock()
				stats.Skipped++
				statsMu.Unlock()
				emit(Event{Type: EventSkipped, Stage: st.ref.Stage, Key: st.ref.Key, Bytes: e.Size})
				return nil
			}
			if err := r.Store.Verify(e); err == nil {
				st.entry = e
				statsMu.Lock()
				stats.Skipped++
				statsMu.Unlock()
				emit(Event{Type: EventSkipped, Stage: st.ref.Stage, Key: st.ref.Key, Bytes: e.Size})
				return nil
			} else {
				log.Warn("checkpoint invalid, recomputing", "task", st.ref.String(), "err", err)
				statsMu.Lock()
				stats.Recomputed++
				statsMu.Unlock()
			}
		}
		if err := materialize(st); err != nil {
			return err
		}
		return execute(st, taskID(st))
	}

	// Transient tasks run on demand: once its needs are done, a transient
	// task waits (idle) until one of its users could start as soon as its
	// transient needs are computed, i.e. every need of the user is done,
	// queued or idle. So a layer's rotated weights are made when the
	// layer's activations are, not all at the start of the run, and the
	// workdir holds about one layer's transient outputs.
	var ready []*taskState
	var demand func(u *taskState)
	enqueue := func(st *taskState) {
		if st.task.Transient && len(st.users) > 0 {
			st.idle = true
			for _, u := range st.users {
				demand(u)
			}
			return
		}
		st.queued = true
		ready = append(ready, st)
		for _, u := range st.users {
			demand(u)
		}
	}
	demand = func(u *taskState) {
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
				ready = append(ready, n)
				for _, uu := range n.users {
					if uu != u {
						demand(uu)
					}
				}
			}
		}
	}
	for _, ref := range plan.Order {
		if st := states[ref]; st.pending == 0 && !st.queued && !st.idle {
			enqueue(st)
		}
	}
	completed, dispatched := 0, 0
	cancelled := false
dispatch:
	for completed < len(plan.Order) {
		for len(ready) > 0 {
			st := ready[0]
			ready = ready[1:]
			if gctx.Err() != nil {
				cancelled = true
				break dispatch
			}
			emit(Event{Type: EventQueued, Stage: st.ref.Stage, Key: st.ref.Key, Bytes: st.task.EstBytes})
			dispatched++
			g.Go(func() error {
				if err := runOne(st); err != nil {
					return err
				}
				doneCh <- st
				return nil
			})
		}
		if len(ready) == 0 && dispatched == completed && completed < len(plan.Order) {
			// Nothing runs or waits: would only happen if idle transient
			// tasks were never asked for. Run them rather than stall.
			for _, ref := range plan.Order {
				if st := states[ref]; st.idle {
					st.idle, st.queued = false, true
					ready = append(ready, st)
				}
			}
			if len(ready) > 0 {
				continue
			}
		}
		select {
		case st := <-doneCh:
			completed++
			st.done = true
			for _, ns := range st.needs {
				ns.mu.Lock()
				ns.usersLeft--
				ns.mu.Unlock()
				dropIfUnused(ns)
			}
			for _, u := range st.users {
				u.pending--
				if u.pending == 0 {
					enqueue(u)
				}
				demand(u)
			}
		case <-gctx.Done():
			cancelled = true
			break dispatch
		}
	}
	err := g.Wait()
	if err == nil && cancelled {
		err = ctx.Err()
		if err == nil {
			err = context.Canceled
		}
	}
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		err = fmt.Errorf("run interrupted: %w", err)
	}
	return stats, err
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
