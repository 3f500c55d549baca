// Command demosummary prints the results table of a finished run (`make
// demo` calls it after marlin-run): quantization summary, quality against
// the unquantized model, throughput and output files, read from the run's
// report.json (written by the benchmark stage, or `marlin-run report`).
//
//	go run ./internal/demosummary runs/nano-demo/out
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/marlin-llm/marlin/report"
	"github.com/marlin-llm/marlin/stages"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: demosummary OUTDIR")
		os.Exit(2)
	}
	if err := summarize(os.Stdout, os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "demosummary:", err)
		os.Exit(1)
	}
}

// summarize writes the tables for the run output directory out.
func summarize(w io.Writer, out string) error {
	b, err := os.ReadFile(filepath.Join(out, "report.json"))
	if err != nil {
		return err
	}
	var d report.Doc
	if err := json.Unmarshal(b, &d); err != nil {
		return fmt.Errorf("report.json: %w", err)
	}
	fmt.Fprintf(w, "\n== results: %s\n\n", out)
	if s := d.Summary; s != nil {
		var fs []string
		for f, n := range s.Formats {
			fs = append(fs, fmt.Sprintf("%d %s", n, f))
		}
		sort.Strings(fs)
		fmt.Fprintf(w, "quantized %d tensors (%s): %.2f bits/weight on average, cosine to BF16 mean %.4f, min %.4f (%s)\n\n",
			s.Tensors, strings.Join(fs, ", "), s.BitsPerWeight, s.AvgCosine, s.MinCosine, s.MinTensor)
	}
	if v := d.Validation; v != nil {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "quality (%d tokens of %s)\tunquantized\t%s\t\n", v.Tokens, filepath.Base(v.Text), v.Method)
		fmt.Fprintf(tw, "perplexity\t%.3f\t%.3f (%+.2f%%)\t\n", v.RefPPL, v.QuantPPL, 100*v.PPLIncrease)
		fmt.Fprintf(tw, "KL divergence (nats/token)\t-\t%.4f\t\n", v.KL)
		fmt.Fprintf(tw, "top-1 agreement\t-\t%.1f%%\t\n", 100*v.Top1)
		tw.Flush()
		for _, c := range v.Checks {
			status := "pass"
			if !c.Pass {
				status = "FAIL"
			}
			fmt.Fprintf(w, "  gate %s: %s\n", status, c.Message)
		}
		fmt.Fprintln(w)
	}
	if bm := d.Benchmark; bm != nil {
		fmt.Fprintf(w, "speed (%s backend, %d threads; %s)\n", bm.Backend, bm.Threads, bm.Note)
		stages.WriteBenchTable(w, bm)
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "outputs:")
	ents, err := os.ReadDir(out)
	if err != nil {
		return err
	}
	for _, e := range ents {
		size, err := du(filepath.Join(out, e.Name()))
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "  %-28s %8.2f MiB\n", e.Name(), float64(size)/(1<<20))
	}
	return nil
}

// du is the total size of the regular files under p.
func du(p string) (int64, error) {
	var n int64
	err := filepath.WalkDir(p, func(_ string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	return n, err
}
