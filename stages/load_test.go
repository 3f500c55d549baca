package stages

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marlin-llm/marlin/internal/assets"
	"github.com/marlin-llm/marlin/model/gguf"
	"github.com/marlin-llm/marlin/model/safetensors"
	"github.com/marlin-llm/marlin/pipeline"
	"github.com/marlin-llm/marlin/quant"
)

func planLoad(t *testing.T, cfg LoadConfig) []*pipeline.Task {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	st, err := LoadKind().New(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := st.Plan(context.Background(), &pipeline.PlanContext{StageID: "load", JobDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return tasks
}

func TestLoadPlanAndRun(t *testing.T) {
	dir := assets.Model(t, "qwen3moe-nano")
	ck, err := safetensors.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()

	tasks := planLoad(t, LoadConfig{Path: dir})
	if len(tasks) != len(ck.Names()) {
		t.Fatalf("%d tasks for %d tensors", len(tasks), len(ck.Names()))
	}
	for _, task := range tasks {
		ti, _ := ck.Info(task.Key)
		if task.Meta[MetaDType] != "BF16" || task.Meta[MetaShape] != quant.FormatShape(ti.Shape) ||
			task.Meta[MetaBytes] != fmt.Sprint(ti.Size()) || task.Meta[MetaModel] != "qwen3_moe" {
			t.Errorf("%s: meta %v", task.Key, task.Meta)
		}
		if !strings.Contains(task.Fingerprint, filepath.Base(ti.File)) || !strings.Contains(task.Fingerprint, "header=") {
			t.Errorf("%s: fingerprint %q", task.Key, task.Fingerprint)
		}
		out, err := task.Run(context.Background(), &pipeline.TaskEnv{})
		if err != nil {
			t.Fatal(err)
		}
		want, _ := ck.Tensor(task.Key)
		if len(out.Tensors) != 1 || out.Tensors[0].Name != task.Key || !bytes.Equal(out.Tensors[0].Data, want.Data) {
			t.Fatalf("%s: output differs", task.Key)
		}
	}

	// Include/exclude and grouping.
	tasks = planLoad(t, LoadConfig{Path: dir, Include: []string{"model.layers.0.*", "lm_head.weight"},
		Exclude: []string{"*.experts.*"}, GroupSmall: 4096})
	var keys []string
	groups := 0
	for _, task := range tasks {
		keys = append(keys, task.Key)
		if strings.HasPrefix(task.Key, "group.") {
			groups++
			names := strings.Split(task.Meta[MetaTensors], ",")
			out, err := task.Run(context.Background(), &pipeline.TaskEnv{})
			if err != nil || len(out.Tensors) != len(names) {
				t.Fatalf("group %s: %v", task.Key, err)
			}
			for i, tt := range out.Tensors {
				if tt.Name != names[i] || len(tt.Data) >= 4096 {
					t.Errorf("group member %s (%d bytes)", tt.Name, len(tt.Data))
				}
			}
		}
	}
	for _, k := range keys {
		if strings.Contains(k, "experts") || (!strings.Contains(k, "layers.0.") && k != "lm_head.weight" && !strings.HasPrefix(k, "group.")) {
			t.Errorf("unexpected task %s", k)
		}
	}
	if groups != 1 {
		t.Errorf("%d groups (want the norms in one): %v", groups, keys)
	}

	if _, err := (&loadStage{cfg: LoadConfig{Path: dir, Include: []string{"nothing*"}}}).Plan(context.Background(), &pipeline.PlanContext{}); err == nil {
		t.Error("empty selection accepted")
	}
	if err := (&LoadConfig{Path: dir, Include: []string{"[bad"}}).Validate(); err == nil {
		t.Error("bad glob accepted")
	}
	if _, err := (&loadStage{cfg: LoadConfig{Path: filepath.Join(t.TempDir(), "missing")}}).Plan(context.Background(), &pipeline.PlanContext{}); err == nil {
		t.Error("missing path accepted")
	}
}

func TestLoadGGUF(t *testing.T) {
	p := assets.Shared(t, "gguf", "qwen3-nano-f16.gguf")
	f, err := gguf.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tasks := planLoad(t, LoadConfig{Path: p, Include: []string{"blk.0.*"}})
	if len(tasks) != 11 {
		t.Errorf("%d tasks for blk.0", len(tasks))
	}
	for _, task := range tasks {
		ti, _ := f.Info(task.Key)
		out, err := task.Run(context.Background(), &pipeline.TaskEnv{})
		if err != nil {
			t.Fatal(err)
		}
		want, _ := f.TensorData(task.Key)
		if task.Meta[MetaDType] != ti.Type.String() || !bytes.Equal(out.Tensors[0].Data, want) {
			t.Errorf("%s: %v", task.Key, task.Meta)
		}
	}
}

// TestLoadFingerprintChanges checks that rewriting a file changes the
// fingerprint (so resume re-runs its tasks).
func TestLoadFingerprintChanges(t *testing.T) {
	src := filepath.Join(assets.Model(t, "qwen3-nano"), "model.safetensors")
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "model.safetensors")
	os.WriteFile(p, b, 0o644)
	before := planLoad(t, LoadConfig{Path: p, Include: []string{"model.norm.weight"}})[0].Fingerprint
	os.Chtimes(p, time.Now(), time.Now().Add(time.Hour))
	after := planLoad(t, LoadConfig{Path: p, Include: []string{"model.norm.weight"}})[0].Fingerprint
	if before == after {
		t.Errorf("fingerprint unchanged after touching the file: %s", before)
	}
}

// TestLoadJobEndToEnd runs a job (load → stats) through the real runner
// twice: the second run skips everything.
func TestLoadJobEndToEnd(t *testing.T) {
	model := assets.Model(t, "qwen3-nano")
	dir := t.TempDir()
	job := fmt.Sprintf("version: 1\nname: t\nworkdir: wd\nstages:\n  - {id: load, kind: load, with: {path: %q, include: [\"model.layers.1.*\"], group_small: 2KiB}}\n  - {id: stats, kind: stats, needs: [load]}\n", model)
	jp := filepath.Join(dir, "job.yaml")
	os.WriteFile(jp, []byte(job), 0o644)
	reg, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	for run := 0; run < 2; run++ {
		j, err := pipeline.Load(jp, reg, pipeline.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		plan, err := pipeline.PlanJob(context.Background(), j, nil)
		if err != nil {
			t.Fatal(err)
		}
		store, err := pipeline.OpenStore(j.Workdir, pipeline.StoreOptions{})
		if err != nil {
			t.Fatal(err)
		}
		stats, err := (&pipeline.Runner{Store: store}).Run(context.Background(), plan)
		store.Close()
		if err != nil {
			t.Fatal(err)
		}
		if run == 0 && (stats.Executed == 0 || stats.Skipped != 0) || run == 1 && stats.Executed != 0 {
			t.Errorf("run %d: %+v", run, stats)
		}
	}
}
