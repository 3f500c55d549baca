package pipeline

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkRunnerTasks measures the runner's per-task cost for tiny tasks
// (plan walk, admission, Arrow blob write with fsync, journal append with
// fsync) on a fresh workdir, and the cost of skipping them on resume.
func BenchmarkRunnerTasks(b *testing.B) {
	const n = 200
	k := funcKind("tiny", func(pc *PlanContext, cfg *fakeConfig) ([]*Task, error) {
		var ts []*Task
		for i := 0; i < n; i++ {
			key := fmt.Sprint(i)
			ts = append(ts, &Task{Key: key, EstBytes: 1 << 10, Run: func(ctx context.Context, env *TaskEnv) (*Output, error) {
				return constOutput(key, "payload-"+key), nil
			}})
		}
		return ts, nil
	})
	reg := NewRegistry()
	reg.MustRegister(k)
	job, err := LoadBytes(b.TempDir()+"/j.yaml", []byte("version: 1\nresources: {workers: 4}\nstages:\n  - {id: s, kind: tiny}\n"), reg, LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	plan, err := PlanJob(context.Background(), job, nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, mode := range []string{"fresh", "resume"} {
		b.Run(mode, func(b *testing.B) {
			wd := b.TempDir()
			if mode == "resume" {
				st, _ := OpenStore(wd, StoreOptions{})
				(&Runner{Store: st}).Run(context.Background(), plan)
				st.Close()
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				st, err := OpenStore(wd, StoreOptions{Fresh: mode == "fresh"})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := (&Runner{Store: st}).Run(context.Background(), plan); err != nil {
					b.Fatal(err)
				}
				st.Close()
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "tasks/s")
		})
	}
}
