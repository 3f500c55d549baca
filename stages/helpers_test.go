package stages

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/marlin-llm/marlin/pipeline"
)

// mustPlanYAML loads a job document as if read from dir/job.yaml and plans
// it, failing the test on any error.
func mustPlanYAML(t *testing.T, reg *pipeline.Registry, dir, doc string) (*pipeline.Job, *pipeline.Plan) {
	t.Helper()
	job, err := pipeline.LoadBytes(filepath.Join(dir, "job.yaml"), []byte(doc), reg, pipeline.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	plan, err := pipeline.PlanJob(context.Background(), job, nil)
	if err != nil {
		t.Fatal(err)
	}
	return job, plan
}

// mustPlanDoc is mustPlanYAML with the stages' registry (NewRegistry).
func mustPlanDoc(t *testing.T, dir, doc string) (*pipeline.Job, *pipeline.Plan) {
	t.Helper()
	reg, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	return mustPlanYAML(t, reg, dir, doc)
}

// mustRunPlan runs plan to completion with the given workers (0: the
// runner's default) in a store at storeDir, which is closed when the test
// ends.
func mustRunPlan(t *testing.T, plan *pipeline.Plan, storeDir string, workers int) *pipeline.Store {
	t.Helper()
	st, err := pipeline.OpenStore(storeDir, pipeline.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := (&pipeline.Runner{Store: st, Workers: workers}).Run(context.Background(), plan); err != nil {
		t.Fatal(err)
	}
	return st
}
