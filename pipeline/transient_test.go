package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// chainKinds: "chain" makes cfg.Count transient tasks act.i, each needing
// act.i-1 (a layer-streamed activation chain); "derive" (dagKinds) makes
// one persistent task per act. failAt makes derive's task for act.<failAt>
// fail (-1: none).
func chainKinds(cnt *counter, failAt int) []Kind {
	chain := funcKind("chain", func(pc *PlanContext, cfg *fakeConfig) ([]*Task, error) {
		var ts []*Task
		for i := 0; i < cfg.Count; i++ {
			key := fmt.Sprintf("act.%d", i)
			t := &Task{Key: key, EstBytes: 100, Transient: true}
			var prev TaskRef
			if i > 0 {
				prev = TaskRef{pc.StageID, fmt.Sprintf("act.%d", i-1)}
				t.Needs = []TaskRef{prev}
			}
			t.Run = func(ctx context.Context, env *TaskEnv) (*Output, error) {
				cnt.inc(pc.StageID)
				s := key
				if i > 0 {
					o, err := env.Input(prev)
					if err != nil {
						return nil, err
					}
					s = strings.TrimRight(string(o.Tensors[0].Data), "\x00") + ">" + key
				}
				return constOutput(key, s), nil
			}
			ts = append(ts, t)
		}
		return ts, nil
	})
	derive := funcKind("derive", func(pc *PlanContext, cfg *fakeConfig) ([]*Task, error) {
		var ts []*Task
		for _, in := range pc.Inputs {
			for i, t := range in.Tasks {
				ref := TaskRef{in.ID, t.Key}
				ts = append(ts, &Task{Key: "q." + t.Key, Needs: []TaskRef{ref}, EstBytes: 100,
					Run: func(ctx context.Context, env *TaskEnv) (*Output, error) {
						if i == failAt {
							return nil, errors.New("injected failure")
						}
						cnt.inc(pc.StageID)
						o, err := env.Input(ref)
						if err != nil {
							return nil, err
						}
						return constOutput("q", strings.TrimRight(string(o.Tensors[0].Data), "\x00")+"|"+cfg.Format), nil
					}})
			}
		}
		return ts, nil
	})
	return []Kind{chain, derive}
}

const chainDoc = `version: 1
stages:
  - {id: acts, kind: chain, with: {count: 6}}
  - {id: layers, kind: derive, needs: [acts]}
`

func countBlobs(t *testing.T, workdir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(filepath.Join(workdir, blobDirName), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".arrow") {
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestTransientOutputsDropped: transient blobs are deleted once their
// users are done, a resumed run skips them, a user that must run again
// gets its dropped input recomputed (once), and outputs stay the same.
func TestTransientOutputsDropped(t *testing.T) {
	wd := t.TempDir()
	run := func(failAt int, set ...string) (*counter, RunStats, error) {
		cnt := &counter{}
		stats, err := runPlan(t, loadPlan(t, testRegistry(t, chainKinds(cnt, failAt)...), chainDoc, set...), wd, Runner{Workers: 3})
		return cnt, stats, err
	}
	cnt, stats, err := run(-1)
	if err != nil || cnt.get("acts") != 6 || cnt.get("layers") != 6 {
		t.Fatalf("first run: %+v %v", stats, err)
	}
	if n := countBlobs(t, wd); n != 6 {
		t.Errorf("%d blobs after the run, want 6 (the transient ones dropped)", n)
	}
	_, stats, err = run(-1)
	if err != nil || stats.Executed != 0 || stats.Skipped != 12 {
		t.Fatalf("resume: %+v %v", stats, err)
	}
	// A changed downstream config re-runs every layer task; each needs its
	// dropped activation, recomputed: once, or twice when the recompute of
	// act.i+1 comes after act.i was dropped again (its own user done).
	cnt, stats, err = run(-1, "stages.layers.with.format=int4")
	if err != nil || cnt.get("layers") != 6 || cnt.get("acts") < 6 || cnt.get("acts") > 11 {
		t.Fatalf("after a config change: layers %d acts %d %+v %v", cnt.get("layers"), cnt.get("acts"), stats, err)
	}
	if n := countBlobs(t, wd); n != 12 {
		t.Errorf("%d blobs, want 12 (6 layers of each config)", n)
	}
	st, err := OpenStore(wd, StoreOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range st.Entries() {
		if e.Key != "q.act.5" || !st.HasBlob(e) {
			continue
		}
		o, err := st.Get(e)
		if err != nil {
			t.Fatal(err)
		}
		got := strings.TrimRight(string(o.Tensors[0].Data), "\x00")
		if !strings.HasPrefix(got, "act.0>act.1>act.2>act.3>act.4>act.5|") {
			t.Errorf("q.act.5 = %q", got)
		}
	}
}

// TestTransientResumeAfterFailure: a run that fails at layer 2 resumes
// without recomputing anything before it.
func TestTransientResumeAfterFailure(t *testing.T) {
	wd := t.TempDir()
	run := func(failAt int) (*counter, RunStats, error) {
		cnt := &counter{}
		stats, err := runPlan(t, loadPlan(t, testRegistry(t, chainKinds(cnt, failAt)...), chainDoc), wd, Runner{Workers: 1})
		return cnt, stats, err
	}
	if _, _, err := run(2); err == nil {
		t.Fatal("injected failure did not fail the run")
	}
	cnt, stats, err := run(-1)
	if err != nil {
		t.Fatal(err)
	}
	if cnt.get("layers") != 4 || cnt.get("acts") > 3 {
		t.Errorf("resume re-ran %d layer tasks (want 4) and %d activation tasks (want <= 3): %+v", cnt.get("layers"), cnt.get("acts"), stats)
	}
}

// TestStatusCountsDroppedTransientDone: status reports a finished job with
// dropped transient outputs as complete.
func TestStatusCountsDroppedTransientDone(t *testing.T) {
	wd := t.TempDir()
	cnt := &counter{}
	plan := loadPlan(t, testRegistry(t, chainKinds(cnt, -1)...), chainDoc)
	if _, err := runPlan(t, plan, wd, Runner{Workers: 2}); err != nil {
		t.Fatal(err)
	}
	st, err := OpenStore(wd, StoreOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	ss := Status(plan, st)
	for _, s := range ss {
		if s.Pending != 0 {
			t.Errorf("stage %s: %d pending %v", s.ID, s.Pending, s.PendingKeys)
		}
	}
}

// TestTransientOnDemand: a transient task runs when a user is about to be
// able to start, not as soon as its own needs are done, so transient
// outputs (rotated weights) are made layer by layer.
func TestTransientOnDemand(t *testing.T) {
	src := funcKind("rot", func(pc *PlanContext, cfg *fakeConfig) ([]*Task, error) {
		var ts []*Task
		for i := 0; i < cfg.Count; i++ {
			key := fmt.Sprintf("rot.%d", i)
			ts = append(ts, &Task{Key: key, EstBytes: 1, Transient: true, Run: func(ctx context.Context, env *TaskEnv) (*Output, error) {
				return constOutput(key, key), nil
			}})
		}
		return ts, nil
	})
	chain := funcKind("layer", func(pc *PlanContext, cfg *fakeConfig) ([]*Task, error) {
		var ts []*Task
		for i, in := range pc.Inputs[0].Tasks {
			t := &Task{Key: fmt.Sprintf("layer.%d", i), EstBytes: 1, Needs: []TaskRef{{pc.Inputs[0].ID, in.Key}}}
			if i > 0 {
				t.Needs = append(t.Needs, TaskRef{pc.StageID, fmt.Sprintf("layer.%d", i-1)})
			}
			t.Run = func(ctx context.Context, env *TaskEnv) (*Output, error) { return constOutput("l", t.Key), nil }
			ts = append(ts, t)
		}
		return ts, nil
	})
	doc := `version: 1
stages:
  - {id: rot, kind: rot, with: {count: 8}}
  - {id: layers, kind: layer, needs: [rot]}
`
	var mu sync.Mutex
	var order []string
	st, err := OpenStore(t.TempDir(), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r := Runner{Store: st, Workers: 4, Events: func(e Event) {
		if e.Type == EventStarted {
			mu.Lock()
			order = append(order, e.Key)
			mu.Unlock()
		}
	}}
	if _, err := r.Run(context.Background(), loadPlan(t, testRegistry(t, src, chain), doc)); err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, k := range order {
		pos[k] = i
	}
	for i := 2; i < 8; i++ {
		// rot.i is asked for once layer.i-1 runs (layer.i's other need).
		if pos[fmt.Sprintf("rot.%d", i)] < pos[fmt.Sprintf("layer.%d", i-2)] {
			t.Errorf("rot.%d started before layer.%d: %v", i, i-2, order)
		}
	}
	if n := countBlobs(t, st.Dir()); n != 8 {
		t.Errorf("%d blobs, want the 8 layer outputs", n)
	}
}
