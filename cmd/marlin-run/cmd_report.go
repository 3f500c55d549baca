package main

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"
	"sort"
	"time"

	"github.com/marlin-llm/marlin/pipeline"
	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/report"
	"github.com/marlin-llm/marlin/stages"
)

func reportCommand() *command {
	var out, name string
	return &command{
		Name:  "report",
		Usage: "WORKDIR",
		Summary: "rebuild report.html and report.json from a run's checkpoints (quantize reports, validate and " +
			"benchmark results; the latest of each)",
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&out, "out", "", "`DIR` for report.html/report.json (default: WORKDIR/out)")
			fs.StringVar(&name, "name", "", "report `title` (default: the workdir's name)")
		},
		Run: func(ctx context.Context, a *app, args []string) error {
			if len(args) != 1 {
				return usagef("want a workdir")
			}
			store, err := pipeline.OpenStore(args[0], pipeline.StoreOptions{ReadOnly: true})
			if err != nil {
				return err
			}
			defer store.Close()
			if !store.HasJournal() {
				return fmt.Errorf("report: %s has no journal (not a run's workdir?)", args[0])
			}
			entries := store.Entries()
			sort.SliceStable(entries, func(i, j int) bool { return entries[i].Time.Before(entries[j].Time) })
			if name == "" {
				name = filepath.Base(filepath.Clean(args[0]))
			}
			doc := &report.Doc{Name: name, Generated: time.Now().UTC()}
			latest := map[string]quant.Report{}
			for _, e := range entries {
				if err := ctx.Err(); err != nil {
					return err
				}
				o, err := store.Get(e)
				if err != nil {
					return fmt.Errorf("report: %s/%s: %w", e.Stage, e.Key, err)
				}
				var reps []quant.Report
				if err := stages.AddToReport(doc, o.Meta, &reps); err != nil {
					return fmt.Errorf("report: %s/%s: %w", e.Stage, e.Key, err)
				}
				for _, r := range reps {
					latest[r.Name] = r // later entries replace earlier runs' reports
				}
			}
			var reps []quant.Report
			for _, r := range latest {
				reps = append(reps, r)
			}
			doc.Tensors = report.FromQuant(reps)
			doc.Summary = report.Summarize(doc.Tensors)
			if doc.Validation == nil && doc.Benchmark == nil && len(doc.Tensors) == 0 {
				return fmt.Errorf("report: %s holds no quantize, validate or benchmark results", args[0])
			}
			dir := out
			if dir == "" {
				dir = store.OutDir()
			}
			files, err := report.Write(dir, doc)
			if err != nil {
				return err
			}
			for _, f := range files {
				fmt.Fprintln(a.Stdout, filepath.Join(dir, f))
			}
			return nil
		},
	}
}
