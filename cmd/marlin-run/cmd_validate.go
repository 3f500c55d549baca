package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/marlin-llm/marlin/pipeline"
)

func validateCommand() *command {
	var plan bool
	return &command{
		Name:    "validate",
		Usage:   "[--plan] JOB.yaml...",
		Summary: "check job files against the JSON Schema and semantically (exit 1 on any error)",
		Job:     true,
		Flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&plan, "plan", false, "also plan each job (reads the files stages plan from) and check its tasks' memory estimates against resources.memory")
		},
		Run: func(ctx context.Context, a *app, args []string) error {
			if len(args) == 0 {
				return usagef("want at least one job file")
			}
			sv, err := pipeline.NewSchemaValidator(a.Registry)
			if err != nil {
				return err
			}
			failed := 0
			for _, f := range args {
				if err := validateOne(ctx, a, sv, f, plan); err != nil {
					failed++
					fmt.Fprintln(a.Stderr, err)
					continue
				}
				fmt.Fprintf(a.Stdout, "ok %s\n", f)
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d files invalid", failed, len(args))
			}
			return nil
		},
	}
}

func validateOne(ctx context.Context, a *app, sv *pipeline.SchemaValidator, file string, plan bool) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	opts := pipeline.LoadOptions{Set: a.set, Workdir: a.workdir}
	schemaErr := sv.ValidateBytes(file, data, opts)
	job, loadErr := pipeline.LoadBytes(file, data, a.Registry, opts)
	if schemaErr != nil || loadErr != nil {
		return errors.Join(schemaErr, loadErr)
	}
	if plan {
		p, err := pipeline.PlanJob(ctx, job, a.logger())
		if err != nil {
			return err
		}
		// The budget only: the machine that validates is seldom the one
		// that runs the job.
		if !job.Resources.AllowOverBudget {
			if err := p.CheckMemory(pipeline.MemoryLimits{Budget: job.Resources.Memory}); err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
		}
	}
	return nil
}
