package main

import (
	"context"
	"flag"

	"github.com/marlin-llm/marlin/pipeline"
)

func schemaCommand() *command {
	var out string
	return &command{
		Name:    "schema",
		Usage:   "[-o FILE]",
		Summary: "print the job file JSON Schema generated from the registered stage kinds",
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&out, "o", "", "write to `FILE` (atomically) instead of stdout")
		},
		Run: func(ctx context.Context, a *app, args []string) error {
			if len(args) != 0 {
				return usagef("takes no arguments")
			}
			b, err := pipeline.GenerateSchema(a.Registry)
			if err != nil {
				return err
			}
			if out != "" {
				return pipeline.WriteFileAtomic(out, b)
			}
			_, err = a.Stdout.Write(b)
			return err
		},
	}
}
