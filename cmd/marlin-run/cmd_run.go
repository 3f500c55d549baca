package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/marlin-llm/marlin/pipeline"
)

// summaryInterval is the least time between two progress lines of a
// stage in the plain (non-terminal) display.
const summaryInterval = 5 * time.Second

func runCommand() *command {
	var fresh, resume, quiet, overBudget, verbose bool
	var cpuProfile, memProfile string
	var workers int
	var memory, until, rerun string
	return &command{
		Name:    "run",
		Usage:   "[flags] JOB.yaml",
		Summary: "run a job; continues from the workdir's checkpoints when it has a journal",
		Job:     true,
		Flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&fresh, "fresh", false, "discard the workdir's checkpoints and start over")
			fs.BoolVar(&resume, "resume", true, "continue from checkpoints (the default; --fresh overrides)")
			fs.BoolVar(&quiet, "quiet", false, "no progress display or event lines")
			fs.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the run to `FILE` (go tool pprof)")
			fs.StringVar(&memProfile, "memprofile", "", "write a heap profile to `FILE` (go tool pprof) each time the live heap reaches a new peak: what held the memory at the run's peak")
			fs.BoolVar(&verbose, "v", false, "a line per task event (queued, started, done, ...) instead of bars or the per-stage summary, and debug logs")
			fs.IntVar(&workers, "workers", 0, "override resources.workers with `N` (0: keep the job's)")
			fs.StringVar(&memory, "memory", "", "override resources.memory with `SIZE` (e.g. 8GiB)")
			fs.StringVar(&until, "until", "", "run only these `STAGES` (comma-separated ids) and what they need")
			fs.StringVar(&rerun, "rerun", "", "run these `STAGES` (comma-separated ids) again even when checkpointed, e.g. to re-measure a benchmark")
			fs.BoolVar(&overBudget, "allow-over-budget", false, "run tasks whose memory estimate exceeds the budget or the machine's memory (each alone) instead of refusing the job (resources.allow_over_budget)")
		},
		Run: func(ctx context.Context, a *app, args []string) error {
			if len(args) != 1 {
				return usagef("want exactly one job file")
			}
			a.verbose = verbose
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			if memProfile != "" {
				stop := profilePeaks(memProfile, a.Stderr)
				defer stop()
			}
			if workers < 0 {
				// as resources.workers in a job file
				return usagef("--workers must be >= 0 (0: the job's resources.workers), got %d", workers)
			}
			job, err := a.loadJob(args[0])
			if err != nil {
				return err
			}
			if workers > 0 {
				job.Resources.Workers = workers
			}
			if memory != "" {
				m, err := pipeline.ParseByteSize(memory)
				if err != nil {
					return usagef("--memory: %v", err)
				}
				job.Resources.Memory = int64(m)
			}
			if overBudget {
				job.Resources.AllowOverBudget = true
			}
			if job.Resources.Memory > 0 && os.Getenv("GOMEMLIMIT") == "" {
				// Make the Go GC keep the heap near the admission budget
				// (by default it lets the heap grow to twice the live data).
				// Measured on pipelines/scale-synthetic.yaml with a 128MiB
				// budget: peak RSS 295MB without, 199MB with a limit of
				// budget+64MiB, same run time; on the synthetic GLM-4.7
				// scale test (-width-div 4, 128MiB) budget+16MiB gives
				// 152-155MiB against 175-180MiB for +64MiB, about 10% slower.
				debug.SetMemoryLimit(job.Resources.Memory + 16<<20)
			}
			log := a.logger()
			plan, err := pipeline.PlanJob(ctx, job, log)
			if err != nil {
				return err
			}
			if until != "" {
				if plan, err = plan.Until(strings.Split(until, ",")...); err != nil {
					return usagef("--until: %v", err)
				}
			}
			store, err := pipeline.OpenStore(job.Workdir, pipeline.StoreOptions{Fresh: fresh || !resume})
			if err != nil {
				return err
			}
			defer store.Close()
			r := &pipeline.Runner{Store: store, Log: log}
			if rerun != "" {
				r.Rerun = strings.Split(rerun, ",")
				for _, id := range r.Rerun {
					if plan.JobStage(id) == nil {
						return usagef("--rerun: stage %q is not in the job (or not selected by --until)", id)
					}
				}
			}
			var prog *pipeline.Progress
			var sum *pipeline.Summary
			switch {
			case quiet:
			case a.logFmt == "json":
				r.Events = pipeline.JSONLines(a.Stdout)
			case verbose:
				r.Events = pipeline.PlainLines(a.Stderr)
				r.Text = a.Stderr
			case a.barsOK():
				prog = pipeline.NewProgress(a.Stderr, plan)
				r.Events = prog.Handler()
				r.Text = prog.Writer()
			default:
				sum = pipeline.NewSummary(a.Stderr, plan, summaryInterval)
				r.Events = sum.Handler()
				r.Text = a.Stderr
			}
			start := time.Now()
			stats, err := r.Run(ctx, plan)
			if prog != nil {
				prog.Wait()
			}
			if sum != nil {
				sum.Close()
			}
			if err != nil {
				return err
			}
			peak, havePeak := peakRSS()
			if a.logFmt == "json" {
				attrs := []any{"executed", stats.Executed, "skipped", stats.Skipped, "recomputed", stats.Recomputed,
					"bytes", stats.Bytes, "seconds", time.Since(start).Seconds(), "out", store.OutDir()}
				if havePeak {
					attrs = append(attrs, "peak_rss_bytes", peak)
				}
				log.Info("run finished", attrs...)
				return nil
			}
			mem := ""
			if havePeak {
				mem = ", peak RSS " + pipeline.ByteSize(peak).String()
			}
			fmt.Fprintf(a.Stdout, "%s: %d tasks run, %d skipped, %d recomputed after failed verification, %s written in %.1fs%s; outputs in %s\n",
				job.Name, stats.Executed, stats.Skipped, stats.Recomputed, pipeline.ByteSize(stats.Bytes), time.Since(start).Seconds(), mem, store.OutDir())
			return nil
		},
	}
}
