package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// counter counts task executions per stage.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) inc(stage string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[stage]++
}

func (c *counter) get(stage string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[stage]
}

// dagKinds: "src" makes cfg.Count tasks whose output depends on the
// config's format; "derive" makes one task per upstream task and
// transforms its input.
func dagKinds(cnt *counter) []Kind {
	src := funcKind("src", func(pc *PlanContext, cfg *fakeConfig) ([]*Task, error) {
		var ts []*Task
		for i := 0; i < cfg.Count; i++ {
			key := fmt.Sprintf("t%03d", i)
			ts = append(ts, &Task{Key: key, EstBytes: 100, Run: func(ctx context.Context, env *TaskEnv) (*Output, error) {
				cnt.inc(pc.StageID)
				return constOutput(key, cfg.Format+":"+key), nil
			}})
		}
		return ts, nil
	})
	derive := funcKind("derive", func(pc *PlanContext, cfg *fakeConfig) ([]*Task, error) {
		var ts []*Task
		for _, in := range pc.Inputs {
			for _, t := range in.Tasks {
				ref := TaskRef{in.ID, t.Key}
				ts = append(ts, &Task{Key: in.ID + "." + t.Key, Needs: []TaskRef{ref}, EstBytes: 100,
					Run: func(ctx context.Context, env *TaskEnv) (*Output, error) {
						cnt.inc(pc.StageID)
						o, err := env.Input(ref)
						if err != nil {
							return nil, err
						}
						return constOutput("d", string(o.Tensors[0].Data)+"+"+cfg.Format), nil
					}})
			}
		}
		return ts, nil
	})
	return []Kind{src, derive}
}

func loadPlan(t *testing.T, reg *Registry, doc string, set ...string) *Plan {
	t.Helper()
	dir := t.TempDir()
	job, err := LoadBytes(filepath.Join(dir, "job.yaml"), []byte(doc), reg, LoadOptions{Set: set})
	if err != nil {
		t.Fatal(err)
	}
	plan, err := PlanJob(context.Background(), job, nil)
	if err != nil {
		t.Fatal(err)
	}
	return plan
}

func runPlan(t *testing.T, plan *Plan, workdir string, r Runner) (RunStats, error) {
	t.Helper()
	st, err := OpenStore(workdir, StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r.Store = st
	return r.Run(context.Background(), plan)
}

const dagDoc = `version: 1
stages:
  - {id: a, kind: src, with: {count: 4}}
  - {id: b, kind: src, with: {count: 3}}
  - {id: ad, kind: derive, needs: [a]}
  - {id: bd, kind: derive, needs: [b]}
  - {id: all, kind: derive, needs: [ad, bd]}
`

func TestConfigChangeRerunsOnlyDependents(t *testing.T) {
	cnt := &counter{}
	reg := testRegistry(t, dagKinds(cnt)...)
	wd := t.TempDir()
	stats, err := runPlan(t, loadPlan(t, reg, dagDoc), wd, Runner{Workers: 3})
	if err != nil {
		t.Fatal(err)
	}
	if stats.Executed != 4+3+4+3+7 {
		t.Fatalf("first run executed %d", stats.Executed)
	}
	// Unchanged job: nothing runs.
	cnt = &counter{}
	reg = testRegistry(t, dagKinds(cnt)...)
	stats, err = runPlan(t, loadPlan(t, reg, dagDoc), wd, Runner{Workers: 3})
	if err != nil || stats.Executed != 0 || stats.Skipped != 21 {
		t.Fatalf("second run: %+v %v", stats, err)
	}
	// Change b's config: b, bd and the 3 tasks of `all` that derive from
	// bd re-run; a, ad and the other 4 tasks of `all` do not.
	cnt = &counter{}
	reg = testRegistry(t, dagKinds(cnt)...)
	stats, err = runPlan(t, loadPlan(t, reg, dagDoc, "stages.b.with.format=int4"), wd, Runner{Workers: 3})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"a": 0, "b": 3, "ad": 0, "bd": 3, "all": 3}
	for s, n := range want {
		if got := cnt.get(s); got != n {
			t.Errorf("stage %s executed %d tasks, want %d", s, got, n)
		}
	}
	if stats.Executed != 9 || stats.Skipped != 12 {
		t.Errorf("stats %+v", stats)
	}
	// Changing a downstream-only config re-runs only that stage.
	cnt = &counter{}
	reg = testRegistry(t, dagKinds(cnt)...)
	stats, err = runPlan(t, loadPlan(t, reg, dagDoc, "stages.b.with.format=int4", "stages.all.with.format=mxfp4"), wd, Runner{Workers: 3})
	if err != nil || stats.Executed != 7 || cnt.get("all") != 7 {
		t.Errorf("downstream change: %+v %v all=%d", stats, err, cnt.get("all"))
	}
}

// TestKindVersionRerunsItsTasks: bumping a kind's Version (its outputs
// changed) recomputes every task of that kind and their dependents on
// resume, and nothing else.
func TestKindVersionRerunsItsTasks(t *testing.T) {
	wd := t.TempDir()
	run := func(deriveVersion int) (*counter, RunStats) {
		cnt := &counter{}
		ks := dagKinds(cnt)
		ks[1].Version = deriveVersion
		stats, err := runPlan(t, loadPlan(t, testRegistry(t, ks...), dagDoc), wd, Runner{Workers: 3})
		if err != nil {
			t.Fatal(err)
		}
		return cnt, stats
	}
	run(0)
	if _, stats := run(0); stats.Executed != 0 {
		t.Fatalf("unchanged job re-ran %d tasks", stats.Executed)
	}
	cnt, stats := run(1)
	if stats.Executed != 4+3+7 || cnt.get("a") != 0 || cnt.get("b") != 0 || cnt.get("all") != 7 {
		t.Errorf("after a version bump of derive: %+v, a=%d b=%d all=%d", stats, cnt.get("a"), cnt.get("b"), cnt.get("all"))
	}
	if _, stats := run(1); stats.Executed != 0 {
		t.Errorf("second run at version 1 re-ran %d tasks", stats.Executed)
	}
}

func TestCorruptBlobRecomputed(t *testing.T) {
	cnt := &counter{}
	reg := testRegistry(t, dagKinds(cnt)...)
	plan := loadPlan(t, reg, dagDoc)
	wd := t.TempDir()
	if _, err := runPlan(t, plan, wd, Runner{Workers: 2}); err != nil {
		t.Fatal(err)
	}
	orig := snapshot(t, filepath.Join(wd, "blobs"))
	var blobs []string
	for p := range orig {
		blobs = append(blobs, p)
	}
	if len(blobs) < 3 {
		t.Fatalf("only %d blobs", len(blobs))
	}
	// flip one byte in one blob, truncate another, delete a third
	b0 := filepath.Join(wd, "blobs", blobs[0])
	data := append([]byte(nil), orig[blobs[0]]...)
	data[len(data)/2] ^= 0x40
	if err := os.WriteFile(b0, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(wd, "blobs", blobs[1]), int64(len(orig[blobs[1]])/3)); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(wd, "blobs", blobs[2])); err != nil {
		t.Fatal(err)
	}
	stats, err := runPlan(t, plan, wd, Runner{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if stats.Recomputed != 3 || stats.Executed != 3 {
		t.Errorf("stats %+v, want 3 recomputed and executed", stats)
	}
	if got := snapshot(t, filepath.Join(wd, "blobs")); !sameTree(got, orig) {
		t.Error("blobs after recompute differ from the originals")
	}
}

func TestRunnerConcurrencyOverlaps(t *testing.T) {
	const workers = 4
	var arrived atomic.Int32
	release := make(chan struct{})
	var once sync.Once
	k := funcKind("barrier", func(pc *PlanContext, cfg *fakeConfig) ([]*Task, error) {
		var ts []*Task
		for i := 0; i < 2*workers; i++ {
			ts = append(ts, &Task{Key: fmt.Sprint(i), Run: func(ctx context.Context, env *TaskEnv) (*Output, error) {
				if arrived.Add(1) == workers {
					once.Do(func() { close(release) })
				}
				select {
				case <-release: // all `workers` tasks were running at the same time
					return &Output{}, nil
				case <-time.After(20 * time.Second):
					return nil, fmt.Errorf("barrier: only %d tasks arrived", arrived.Load())
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}})
		}
		return ts, nil
	})
	reg := testRegistry(t, k)
	plan := loadPlan(t, reg, "version: 1\nstages:\n  - {id: x, kind: barrier}\n")
	stats, err := runPlan(t, plan, t.TempDir(), Runner{Workers: workers})
	if err != nil {
		t.Fatal(err)
	}
	if stats.Executed != 2*workers {
		t.Errorf("executed %d", stats.Executed)
	}
}

func TestRunnerWorkerLimit(t *testing.T) {
	var inflight, peak atomic.Int32
	k := funcKind("w", func(pc *PlanContext, cfg *fakeConfig) ([]*Task, error) {
		var ts []*Task
		for i := 0; i < 40; i++ {
			ts = append(ts, &Task{Key: fmt.Sprint(i), Run: func(ctx context.Context, env *TaskEnv) (*Output, error) {
				n := inflight.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				for j := 0; j < 100; j++ {
					runtimeYield()
				}
				inflight.Add(-1)
				return &Output{}, nil
			}})
		}
		return ts, nil
	})
	plan := loadPlan(t, testRegistry(t, k), "version: 1\nstages:\n  - {id: x, kind: w}\n")
	if _, err := runPlan(t, plan, t.TempDir(), Runner{Workers: 3}); err != nil {
		t.Fatal(err)
	}
	if p := peak.Load(); p > 3 {
		t.Errorf("peak %d tasks in flight with 3 workers", p)
	}
}

func TestMemoryAdmissionNeverExceedsBudget(t *testing.T) {
	const budget = 1000
	var inflight, peak atomic.Int64
	var mu sync.Mutex
	var aloneViolations []string
	sizes := []int64{100, 700, 300, 250, 999, 50, 400, 600, 1, 333, 5000, 200, 800, 120, 480, 2000, 90, 10}
	k := funcKind("mem", func(pc *PlanContext, cfg *fakeConfig) ([]*Task, error) {
		var ts []*Task
		for i := 0; i < 6; i++ {
			for j, sz := range sizes {
				key := fmt.Sprintf("%d.%d", i, j)
				ts = append(ts, &Task{Key: key, EstBytes: sz, Run: func(ctx context.Context, env *TaskEnv) (*Output, error) {
					w := min(sz, budget)
					n := inflight.Add(w)
					if sz > budget && n != budget {
						mu.Lock()
						aloneViolations = append(aloneViolations, key)
						mu.Unlock()
					}
					for {
						p := peak.Load()
						if n <= p || peak.CompareAndSwap(p, n) {
							break
						}
					}
					for k := 0; k < 50; k++ {
						runtimeYield()
					}
					inflight.Add(-w)
					return &Output{}, nil
				}})
			}
		}
		return ts, nil
	})
	plan := loadPlan(t, testRegistry(t, k), "version: 1\nresources: {memory: 1000, allow_over_budget: true}\nstages:\n  - {id: m, kind: mem}\n")
	stats, err := runPlan(t, plan, t.TempDir(), Runner{Workers: 8})
	if err != nil {
		t.Fatal(err)
	}
	if stats.Executed != 6*len(sizes) {
		t.Errorf("executed %d", stats.Executed)
	}
	if p := peak.Load(); p > budget {
		t.Errorf("peak admitted bytes %d > budget %d", p, budget)
	}
	if len(aloneViolations) > 0 {
		t.Errorf("oversized tasks did not run alone: %v", aloneViolations)
	}
}

func TestFirstErrorCancelsAndNamesTask(t *testing.T) {
	var started atomic.Int32
	k := funcKind("f", func(pc *PlanContext, cfg *fakeConfig) ([]*Task, error) {
		var ts []*Task
		for i := 0; i < 50; i++ {
			ts = append(ts, &Task{Key: fmt.Sprint(i), Run: func(ctx context.Context, env *TaskEnv) (*Output, error) {
				started.Add(1)
				if i == 3 {
					return nil, errors.New("boom")
				}
				<-ctx.Done() // the others wait for the cancellation
				return nil, ctx.Err()
			}})
		}
		return ts, nil
	})
	plan := loadPlan(t, testRegistry(t, k), "version: 1\nstages:\n  - {id: s, kind: f}\n")
	var failed atomic.Int32
	_, err := runPlan(t, plan, t.TempDir(), Runner{Workers: 4, Events: func(e Event) {
		if e.Type == EventFailed {
			failed.Add(1)
		}
	}})
	if err == nil || !strings.Contains(err.Error(), "task s/3: boom") {
		t.Fatalf("err = %v", err)
	}
	if n := started.Load(); n >= 50 {
		t.Errorf("all %d tasks started despite the failure", n)
	}
}

func TestPanicBecomesError(t *testing.T) {
	k := funcKind("p", func(pc *PlanContext, cfg *fakeConfig) ([]*Task, error) {
		return []*Task{{Key: "x", Run: func(ctx context.Context, env *TaskEnv) (*Output, error) { panic("oops") }}}, nil
	})
	plan := loadPlan(t, testRegistry(t, k), "version: 1\nstages:\n  - {id: s, kind: p}\n")
	_, err := runPlan(t, plan, t.TempDir(), Runner{})
	if err == nil || !strings.Contains(err.Error(), "task s/x: panic: oops") {
		t.Fatalf("err = %v", err)
	}
}

func TestCancellationLeavesNoPartialFiles(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var done atomic.Int32
	k := funcKind("c", func(pc *PlanContext, cfg *fakeConfig) ([]*Task, error) {
		var ts []*Task
		for i := 0; i < 30; i++ {
			ts = append(ts, &Task{Key: fmt.Sprint(i), Run: func(ctx context.Context, env *TaskEnv) (*Output, error) {
				if i < 10 {
					done.Add(1)
					return constOutput("x", strings.Repeat("y", 1000+i)), nil
				}
				// an export writing a large file, interrupted half-way
				f, err := CreateAtomic(filepath.Join(env.OutDir, fmt.Sprintf("export-%d.bin", i)))
				if err != nil {
					return nil, err
				}
				defer f.Abort()
				if _, err := f.Write(bytes.Repeat([]byte{1}, 4096)); err != nil {
					return nil, err
				}
				if done.Load() >= 10 {
					cancel()
				}
				<-ctx.Done()
				return nil, ctx.Err()
			}})
		}
		return ts, nil
	})
	plan := loadPlan(t, testRegistry(t, k), "version: 1\nstages:\n  - {id: s, kind: c}\n")
	wd := t.TempDir()
	st, err := OpenStore(wd, StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = (&Runner{Store: st, Workers: 4}).Run(ctx, plan)
	st.Close()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	// No temporary or partial files anywhere; every blob is journaled and valid.
	st, err = OpenStore(wd, StoreOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	journaled := map[string]bool{}
	for _, e := range st.Entries() {
		if err := st.Verify(e); err != nil {
			t.Errorf("journaled blob invalid: %v", err)
		}
		journaled[st.BlobPath(e.ID)] = true
	}
	filepath.WalkDir(wd, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		switch {
		case strings.Contains(d.Name(), tempMarker):
			t.Errorf("temporary file left: %s", p)
		case strings.HasSuffix(p, ".arrow") && !journaled[p]:
			t.Errorf("blob not in journal: %s", p)
		case strings.Contains(p, string(filepath.Separator)+"out"+string(filepath.Separator)):
			t.Errorf("partial export left: %s", p)
		}
		return nil
	})
	if len(journaled) < 10 {
		t.Errorf("only %d tasks journaled before the cancellation", len(journaled))
	}
}

func TestPlanRejectsBadTaskGraphs(t *testing.T) {
	mk := func(name string, needs func(pc *PlanContext) [][]TaskRef) Kind {
		return funcKind(name, func(pc *PlanContext, cfg *fakeConfig) ([]*Task, error) {
			var ts []*Task
			for i, n := range needs(pc) {
				ts = append(ts, &Task{Key: fmt.Sprint(i), Needs: n, Run: func(context.Context, *TaskEnv) (*Output, error) { return nil, nil }})
			}
			return ts, nil
		})
	}
	kinds := []Kind{
		mk("cyc", func(pc *PlanContext) [][]TaskRef {
			return [][]TaskRef{{{pc.StageID, "1"}}, {{pc.StageID, "2"}}, {{pc.StageID, "0"}}}
		}),
		mk("unknown", func(pc *PlanContext) [][]TaskRef { return [][]TaskRef{{{"a", "nope"}}} }),
		mk("notup", func(pc *PlanContext) [][]TaskRef { return [][]TaskRef{{{"side", "0"}}} }),
		mk("chain", func(pc *PlanContext) [][]TaskRef {
			// sequential: task i needs task i-1 of this stage and of the input
			return [][]TaskRef{{{"a", "0"}}, {{pc.StageID, "0"}, {"a", "0"}}, {{pc.StageID, "1"}}}
		}),
		mk("leaf", func(pc *PlanContext) [][]TaskRef { return [][]TaskRef{nil} }),
	}
	reg := testRegistry(t, kinds...)
	for _, c := range []struct{ kind, want string }{
		{"cyc", "task cycle among"},
		{"unknown", "needs unknown task a/nope"},
		{"notup", `stage "side" is not upstream`},
		{"chain", ""},
	} {
		doc := "version: 1\nstages:\n  - {id: a, kind: leaf}\n  - {id: side, kind: leaf}\n  - {id: x, kind: " + c.kind + ", needs: [a]}\n"
		job, err := LoadBytes("j.yaml", []byte(doc), reg, LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		plan, err := PlanJob(context.Background(), job, nil)
		if c.want == "" {
			if err != nil {
				t.Errorf("%s: %v", c.kind, err)
			} else if got := fmt.Sprint(plan.Order); got != "[a/0 side/0 x/0 x/1 x/2]" {
				t.Errorf("%s: order %s", c.kind, got)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.kind, err, c.want)
		}
	}
}

func TestStoreLockAndTornJournal(t *testing.T) {
	wd := t.TempDir()
	st, err := OpenStore(wd, StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenStore(wd, StoreOptions{}); err == nil || !strings.Contains(err.Error(), "in use by another run") {
		t.Errorf("second open: %v", err)
	}
	task := &Task{Key: "k"}
	id := TaskID(Kind{Name: "kind"}, []byte(`{}`), task, nil)
	if _, err := st.Put(id, TaskRef{"s", "k"}, constOutput("t", "hello"), 0.1); err != nil {
		t.Fatal(err)
	}
	st.Close()
	// a run killed while appending leaves a torn line
	jf := filepath.Join(wd, journalName)
	f, _ := os.OpenFile(jf, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"id":"abc","stage":"s","ke`)
	f.Close()
	// and a temp file of an interrupted blob write
	tmp := filepath.Join(wd, blobDirName, ".x.arrow"+tempMarker+"123")
	os.WriteFile(tmp, []byte("partial"), 0o644)
	st, err = OpenStore(wd, StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	e, ok := st.Lookup(id)
	if !ok {
		t.Fatal("entry lost")
	}
	if err := st.Verify(e); err != nil {
		t.Fatal(err)
	}
	out, err := st.Get(e)
	if err != nil || string(out.Tensors[0].Data[:5]) != "hello" {
		t.Fatalf("get: %v", err)
	}
	if _, err := os.Stat(tmp); !errors.Is(err, fs.ErrNotExist) {
		t.Error("temp file not cleaned up")
	}
	data, _ := os.ReadFile(jf)
	if !bytes.HasSuffix(data, []byte("\n")) || bytes.Contains(data, []byte(`"ke`+"\n")) {
		t.Errorf("torn journal line not truncated: %q", data)
	}
}

func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameTree(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !bytes.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// TestArtifactResume: an exported file recorded with AddArtifact is
// re-checked on resume; deleting or altering it re-runs the exporting task
// only.
func TestArtifactResume(t *testing.T) {
	cnt := &counter{}
	k := funcKind("export", func(pc *PlanContext, cfg *fakeConfig) ([]*Task, error) {
		return []*Task{{Key: "file", Run: func(ctx context.Context, env *TaskEnv) (*Output, error) {
			cnt.inc(pc.StageID)
			rel := "sub/model.bin"
			if err := WriteFileAtomic(filepath.Join(env.OutDir, rel), []byte("exported:"+cfg.Format)); err != nil {
				return nil, err
			}
			out := &Output{}
			return out, out.AddArtifact(env.OutDir, rel)
		}}}, nil
	})
	reg := testRegistry(t, append(dagKinds(cnt), k)...)
	plan := loadPlan(t, reg, "version: 1\nstages:\n  - {id: a, kind: src, with: {count: 2}}\n  - {id: x, kind: export, needs: [a]}\n")
	wd := t.TempDir()
	art := filepath.Join(wd, "out", "sub", "model.bin")
	for i, mutate := range []func(){
		func() {},
		func() {}, // untouched: skipped
		func() { os.Remove(art) },
		func() { os.WriteFile(art, []byte("tampered"), 0o644) },
	} {
		mutate()
		before := cnt.get("x")
		stats, err := runPlan(t, plan, wd, Runner{})
		if err != nil {
			t.Fatal(err)
		}
		wantRun := i != 1
		if got := cnt.get("x") - before; (got == 1) != wantRun || cnt.get("a") != 2 {
			t.Errorf("step %d: export ran %d times, src %d times (stats %+v)", i, got, cnt.get("a"), stats)
		}
		if b, err := os.ReadFile(art); err != nil || string(b) != "exported:fp4" {
			t.Errorf("step %d: artifact %q, %v", i, b, err)
		}
	}
}

func TestCompactRemovesStaleCheckpoints(t *testing.T) {
	cnt := &counter{}
	reg := testRegistry(t, dagKinds(cnt)...)
	wd := t.TempDir()
	if _, err := runPlan(t, loadPlan(t, reg, dagDoc), wd, Runner{}); err != nil {
		t.Fatal(err)
	}
	changed := loadPlan(t, reg, dagDoc, "stages.b.with.format=int4")
	if _, err := runPlan(t, changed, wd, Runner{}); err != nil {
		t.Fatal(err)
	}
	st, err := OpenStore(wd, StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	keep := DoneIDs(changed, st)
	if len(keep) != 21 {
		t.Fatalf("%d done ids", len(keep))
	}
	if n, _, err := st.Compact(keep, true); err != nil || n != 9 {
		t.Fatalf("dry run: %d, %v", n, err)
	}
	n, freed, err := st.Compact(keep, false)
	if err != nil || n != 9 || freed <= 0 {
		t.Fatalf("compact: %d %d %v", n, freed, err)
	}
	if len(st.Entries()) != 21 {
		t.Errorf("%d journal entries after compaction", len(st.Entries()))
	}
	st.Close()
	// the current config is intact, the old one is gone
	stats, err := runPlan(t, changed, wd, Runner{})
	if err != nil || stats.Executed != 0 {
		t.Errorf("after compact: %+v %v", stats, err)
	}
	stats, err = runPlan(t, loadPlan(t, reg, dagDoc), wd, Runner{})
	if err != nil || stats.Executed != 9 {
		t.Errorf("old config after compact: %+v %v", stats, err)
	}
}

// TestTaskEnvArtifacts: files written through TaskEnv.WriteArtifact and
// ArtifactPath are recorded without Output.AddArtifact and restored when
// deleted, altered or replaced by a link; a link in place of the file is
// replaced, never written through; a link on the way to it is refused.
func TestTaskEnvArtifacts(t *testing.T) {
	cnt := &counter{}
	k := funcKind("export", func(pc *PlanContext, cfg *fakeConfig) ([]*Task, error) {
		return []*Task{{Key: "file", Run: func(ctx context.Context, env *TaskEnv) (*Output, error) {
			cnt.inc(pc.StageID)
			if err := env.WriteArtifact("sub/a.json", []byte("a:"+cfg.Format)); err != nil {
				return nil, err
			}
			p, err := env.ArtifactPath("sub/b.bin")
			if err != nil {
				return nil, err
			}
			return nil, WriteFileAtomic(p, []byte("b:"+cfg.Format))
		}}}, nil
	})
	reg := testRegistry(t, k)
	const doc = "version: 1\nstages:\n  - {id: x, kind: export}\n"
	plan := loadPlan(t, reg, doc)
	wd := t.TempDir()
	dir := t.TempDir()
	arts := []string{filepath.Join(wd, "out", "sub", "a.json"), filepath.Join(wd, "out", "sub", "b.bin")}
	outside := []string{filepath.Join(dir, "a"), filepath.Join(dir, "b")}
	want := []string{"a:fp4", "b:fp4"}
	otherSettings := func() {
		if _, err := runPlan(t, loadPlan(t, reg, doc, "stages.x.with.format=int4"), wd, Runner{}); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range []struct {
		name   string
		mutate func(art, outside string) // nil: untouched
		once   func()
	}{
		{name: "first run"},
		{name: "untouched"},
		{name: "deleted", mutate: func(art, _ string) { os.Remove(art) }},
		{name: "altered", mutate: func(art, _ string) { os.WriteFile(art, []byte("tampered"), 0o644) }},
		{name: "link to a copy", mutate: func(art, outside string) {
			b, _ := os.ReadFile(art)
			os.WriteFile(outside, b, 0o644)
			os.Remove(art)
			os.Symlink(outside, art)
		}},
		{name: "other settings", once: otherSettings},
		// the other run replaces the links: it must not write "int4" behind them
		{name: "link, then other settings", mutate: func(art, outside string) {
			os.Remove(outside)
			os.Rename(art, outside)
			os.Symlink(outside, art)
		}, once: otherSettings},
	} {
		wantRun := i == 0 || c.mutate != nil || c.once != nil
		for j := range arts {
			if c.mutate != nil {
				c.mutate(arts[j], outside[j])
			}
		}
		if c.once != nil {
			c.once()
		}
		if i > 0 {
			st, err := OpenStore(wd, StoreOptions{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			pending := 0
			for _, s := range Status(plan, st) {
				pending += s.Pending
			}
			st.Close()
			if (pending == 1) != wantRun {
				t.Errorf("%s: status says %d pending", c.name, pending)
			}
		}
		before := cnt.get("x")
		if _, err := runPlan(t, plan, wd, Runner{}); err != nil {
			t.Fatal(err)
		}
		if ran := cnt.get("x") - before; (ran == 1) != wantRun {
			t.Errorf("%s: export ran %d times", c.name, ran)
		}
		for j, art := range arts {
			if fi, err := os.Lstat(art); err != nil || !fi.Mode().IsRegular() {
				t.Errorf("%s: %s is not a regular file (%v)", c.name, art, err)
			}
			if b, err := os.ReadFile(art); err != nil || string(b) != want[j] {
				t.Errorf("%s: artifact %q, %v", c.name, b, err)
			}
			if b, err := os.ReadFile(outside[j]); err == nil && string(b) != want[j] {
				t.Errorf("%s: wrote through the link: %q", c.name, b)
			}
		}
	}

	// a directory link inside out/ is refused, and nothing lands behind it
	wd2 := t.TempDir()
	target := t.TempDir()
	if err := os.MkdirAll(filepath.Join(wd2, "out"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(wd2, "out", "sub")); err != nil {
		t.Fatal(err)
	}
	if _, err := runPlan(t, plan, wd2, Runner{}); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("directory link: err = %v, want a refusal", err)
	}
	if ents, _ := os.ReadDir(target); len(ents) != 0 {
		t.Errorf("wrote through the directory link: %v", ents)
	}
}
