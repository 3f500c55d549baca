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
		return mergeErrors(schemaErr, loadErr)
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

// mergeErrors reports the loader's errors and those schema errors that
// the loader did not also find: both check most fields, and a problem is
// printed once, with the loader's message (it names the known fields and
// suggests fixes), not once per checker.
func mergeErrors(schemaErr, loadErr error) error {
	var out pipeline.ErrorList
	seenPath := map[string]bool{}
	seenMsg := map[string]bool{}
	add := func(e error, schema bool) {
		var pe *pipeline.PosError
		if errors.As(e, &pe) {
			key := pe.File + "\x00" + pe.Origin + "\x00" + pe.Path
			if schema && seenPath[key] {
				return
			}
			seenPath[key] = true
		}
		if seenMsg[e.Error()] {
			return
		}
		seenMsg[e.Error()] = true
		out = append(out, e)
	}
	for _, e := range flatten(loadErr) {
		add(e, false)
	}
	for _, e := range flatten(schemaErr) {
		add(e, true)
	}
	return out
}

// flatten returns the errors of an ErrorList, or err alone (none for nil).
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	var l pipeline.ErrorList
	if errors.As(err, &l) {
		return l
	}
	return []error{err}
}
