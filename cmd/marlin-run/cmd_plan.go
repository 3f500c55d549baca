package main

import (
	"context"
	"flag"

	"github.com/marlin-llm/marlin/pipeline"
)

func planCommand() *command {
	var format string
	var overBudget bool
	return &command{
		Name:    "plan",
		Usage:   "[--format text|dot] JOB.yaml",
		Summary: "print the stage graph with task counts and memory estimates (exit 1 when run would refuse a task over the memory budget)",
		Job:     true,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&format, "format", "text", "output `text|dot`: text or dot (Graphviz)")
			fs.BoolVar(&overBudget, "allow-over-budget", false, "do not fail on tasks over the memory budget or the machine's memory (as run --allow-over-budget)")
		},
		Run: func(ctx context.Context, a *app, args []string) error {
			if format != "text" && format != "dot" {
				return usagef("--format must be text or dot")
			}
			job, plan, err := a.planJob(ctx, args)
			if err != nil {
				return err
			}
			if format == "dot" {
				err = plan.WriteDot(a.Stdout)
			} else {
				err = plan.WriteText(a.Stdout)
			}
			if err != nil || overBudget || job.Resources.AllowOverBudget {
				return err
			}
			// What run would refuse (Runner.Run makes the same check).
			return plan.CheckMemory(pipeline.MemoryLimits{Budget: job.Resources.Memory, Machine: pipeline.MachineMemory()})
		},
	}
}
