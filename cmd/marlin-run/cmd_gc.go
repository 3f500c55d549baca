package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/marlin-llm/marlin/pipeline"
)

func gcCommand() *command {
	var dryRun bool
	return &command{
		Name:    "gc",
		Usage:   "[--dry-run] JOB.yaml",
		Summary: "delete checkpoints the job no longer uses (outputs of changed configs)",
		Job:     true,
		Flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&dryRun, "dry-run", false, "only report what would be deleted")
		},
		Run: func(ctx context.Context, a *app, args []string) error {
			job, plan, err := a.planJob(ctx, args)
			if err != nil {
				return err
			}
			store, err := pipeline.OpenStore(job.Workdir, pipeline.StoreOptions{})
			if err != nil {
				return err
			}
			defer store.Close()
			keep := pipeline.DoneIDs(plan, store)
			n, freed, err := store.Compact(keep, dryRun)
			if err != nil {
				return err
			}
			verb := "deleted"
			if dryRun {
				verb = "would delete"
			}
			fmt.Fprintf(a.Stdout, "%s %d blobs (%s); kept %d\n", verb, n, pipeline.ByteSize(freed), len(keep))
			return nil
		},
	}
}
