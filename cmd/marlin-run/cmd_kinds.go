package main

import (
	"context"
	"fmt"
)

func kindsCommand() *command {
	return &command{
		Name:    "kinds",
		Usage:   "",
		Summary: "list the registered stage kinds",
		Run: func(ctx context.Context, a *app, args []string) error {
			for _, k := range a.Registry.Kinds() {
				fmt.Fprintf(a.Stdout, "%-12s %s\n", k.Name, k.Doc)
			}
			return nil
		},
	}
}
