// Command marlin-run runs marlin job files: declarative YAML pipelines that
// load, transform, quantize and export model weights with resumable
// checkpoints.
//
// Each subcommand lives in its own cmd_<name>.go file and is listed in
// commands() (commands.go); reusable logic belongs in package pipeline.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first Ctrl-C the run stops cleanly; restoring the
		// default handler lets a second one kill the process at once.
		<-ctx.Done()
		stop()
	}()
	code := runCLI(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
