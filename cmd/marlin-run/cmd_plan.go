package main

import (
	"context"
	"flag"
)

func planCommand() *command {
	var format string
	return &command{
		Name:    "plan",
		Usage:   "[--format text|dot] JOB.yaml",
		Summary: "print the stage graph with task counts and memory estimates",
		Job:     true,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&format, "format", "text", "output `text|dot`: text or dot (Graphviz)")
		},
		Run: func(ctx context.Context, a *app, args []string) error {
			if format != "text" && format != "dot" {
				return usagef("--format must be text or dot")
			}
			_, plan, err := a.planJob(ctx, args)
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
