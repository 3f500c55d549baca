// Command customstage shows a custom stage kind written outside marlin
// (prune.go: row-wise magnitude pruning, under 100 lines) registered next
// to the built-in kinds and used from a YAML job file like any other:
//
//	go run ./examples/customstage examples/customstage/job.yaml
//
// The job loads the bundled qwen3-nano, prunes 25% of every MLP row,
// quantizes to MXFP4 and writes GGUF and native outputs; checkpoints make
// a second run skip everything.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"

	"github.com/marlin-llm/marlin/pipeline"
	"github.com/marlin-llm/marlin/stages"
)

// run loads the job file with the built-in kinds plus prune and runs it.
func run(ctx context.Context, file string, opts pipeline.LoadOptions, events io.Writer) (string, pipeline.RunStats, error) {
	reg, err := stages.NewRegistry()
	if err != nil {
		return "", pipeline.RunStats{}, err
	}
	if err := reg.Register(PruneKind()); err != nil {
		return "", pipeline.RunStats{}, err
	}
	job, err := pipeline.Load(file, reg, opts)
	if err != nil {
		return "", pipeline.RunStats{}, err
	}
	plan, err := pipeline.PlanJob(ctx, job, nil)
	if err != nil {
		return "", pipeline.RunStats{}, err
	}
	store, err := pipeline.OpenStore(job.Workdir, pipeline.StoreOptions{})
	if err != nil {
		return "", pipeline.RunStats{}, err
	}
	defer store.Close()
	stats, err := (&pipeline.Runner{Store: store, Events: pipeline.PlainLines(events)}).Run(ctx, plan)
	return store.OutDir(), stats, err
}

func main() {
	workdir := flag.String("workdir", "", "override the job's workdir")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: customstage [-workdir DIR] JOB.yaml")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	out, stats, err := run(ctx, flag.Arg(0), pipeline.LoadOptions{Workdir: *workdir}, os.Stderr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("ran %d tasks, skipped %d; outputs in %s\n", stats.Executed, stats.Skipped, out)
}
