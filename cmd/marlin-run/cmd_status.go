package main

import (
	"context"
	"flag"

	"github.com/marlin-llm/marlin/pipeline"
)

func statusCommand() *command {
	var list int
	return &command{
		Name:    "status",
		Usage:   "JOB.yaml",
		Summary: "show done/pending tasks per stage (reads the journal; runs nothing)",
		Job:     true,
		Flags: func(fs *flag.FlagSet) {
			fs.IntVar(&list, "list", 0, "also list up to `N` pending task keys per stage")
		},
		Run: func(ctx context.Context, a *app, args []string) error {
			job, plan, err := a.planJob(ctx, args)
			if err != nil {
				return err
			}
			store, err := pipeline.OpenStore(job.Workdir, pipeline.StoreOptions{ReadOnly: true})
			if err != nil {
				return err
			}
			defer store.Close()
			return pipeline.WriteStatus(a.Stdout, plan, pipeline.Status(plan, store), list)
		},
	}
}
