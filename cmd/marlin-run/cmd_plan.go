package main

import (
	"context"
	"flag"

	"github.com/marlin-llm/marlin/pipeline"
)

func planCommand() *command {
	var format string
	return &command{
		Name:    "plan",
		Usage:   "[--format text|dot] JOB.yaml",
		Summary: "print the stage graph with task counts and memory estimates",
		Job:     true,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&format, "format", "text", "output format: text or dot (Graphviz)")
		},
		Run: func(ctx context.Context, a *app, args []string) error {
			if len(args) != 1 {
				return usagef("want exactly one job file")
			}
			if format != "text" && format != "dot" {
				return usagef("--format must be text or dot")
			}
			job, err := a.loadJob(args[0])
			if err != nil {
				return err
			}
			plan, err := pipeline.PlanJob(ctx, job, a.logger())
			if err != nil {
				return err
			}
			if format == "dot" {
				return plan.WriteDot(a.Stdout)
			}
			return plan.WriteText(a.Stdout)
		},
	}
}
