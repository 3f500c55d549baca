package pipeline

import (
	"fmt"
	"io"
	"os"
)

// StageStatus counts a stage's tasks by state.
type StageStatus struct {
	ID, Kind string
	Total    int
	// Done tasks have a journal record whose blob exists with the recorded
	// size and whose artifacts in out/ have the recorded size and
	// modification time (status does not re-hash; `run` verifies digests).
	Done int
	// Pending tasks still have to run (or have inputs that do).
	Pending int
	// PendingKeys are the keys of the pending tasks, in plan order.
	PendingKeys []string
}

// Status computes, without running anything, which tasks a run would skip:
// task identities are derived in plan order from the journal's digests; a
// task whose input is pending is pending too.
func Status(plan *Plan, store *Store) []StageStatus {
	st, _ := statusWalk(plan, store)
	return st
}

// DoneIDs returns the identities of the plan's tasks that are done, as
// Status determines them.
func DoneIDs(plan *Plan, store *Store) map[string]bool {
	_, ids := statusWalk(plan, store)
	return ids
}

func statusWalk(plan *Plan, store *Store) ([]StageStatus, map[string]bool) {
	ids := map[string]bool{}
	digest := map[TaskRef]string{}
	idx := map[string]int{}
	out := make([]StageStatus, len(plan.Stages))
	for i, sp := range plan.Stages {
		out[i] = StageStatus{ID: sp.ID, Kind: sp.Kind, Total: len(sp.Tasks)}
		idx[sp.ID] = i
	}
	for _, ref := range plan.Order {
		t := plan.Task(ref)
		js := plan.JobStage(ref.Stage)
		st := &out[idx[ref.Stage]]
		inputs := make([]string, len(t.Needs))
		ok := true
		for i, n := range t.Needs {
			d, has := digest[n]
			if !has {
				ok = false
				break
			}
			inputs[i] = d
		}
		if ok {
			id := TaskID(*js.Kind, js.ConfigJSON, t, inputs)
			if e, found := store.Lookup(id); found {
				fi, err := os.Stat(store.BlobPath(id))
				dropped := t.Transient && err != nil // its users were done (see Task.Transient)
				if dropped || err == nil && fi.Size() == e.Size && store.artifactsUnchanged(e) {
					digest[ref] = e.Digest
					ids[id] = true
					st.Done++
					continue
				}
			}
		}
		st.Pending++
		st.PendingKeys = append(st.PendingKeys, ref.Key)
	}
	return out, ids
}

// WriteStatus prints a status table; with listPending > 0 it also lists up
// to that many pending task keys per stage.
func WriteStatus(w io.Writer, plan *Plan, st []StageStatus, listPending int) error {
	done, total := 0, 0
	for _, s := range st {
		done += s.Done
		total += s.Total
	}
	fmt.Fprintf(w, "job %s (workdir %s): %d/%d tasks done\n", plan.Job.Name, plan.Job.Workdir, done, total)
	for _, s := range st {
		if _, err := fmt.Fprintf(w, "  %-16s %-12s done %6d  pending %6d  total %6d\n", s.ID, s.Kind, s.Done, s.Pending, s.Total); err != nil {
			return err
		}
		for i, k := range s.PendingKeys {
			if i == listPending {
				fmt.Fprintf(w, "      ... %d more\n", len(s.PendingKeys)-i)
				break
			}
			fmt.Fprintf(w, "      pending %s\n", k)
		}
	}
	return nil
}
