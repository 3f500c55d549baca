package stages

// Reporting: the benchmark's JSON, table and the run report.

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/marlin-llm/marlin/pipeline"
	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/report"
)

// publish writes the benchmark's results: the JSON (and the task's Meta),
// the table (to the run's display and a .txt next to the JSON) and, unless
// no_report, the run report built from the outputs of needs.
func (s *benchmarkStage) publish(env *pipeline.TaskEnv, res *report.Benchmark, needs []pipeline.TaskRef, jobName string) (*pipeline.Output, error) {
	js, err := json.Marshal(res)
	if err != nil {
		return nil, err
	}
	out := &pipeline.Output{Meta: map[string]string{report.MetaBenchmark: string(js)}}
	name := s.cfg.Out
	if name == "" {
		name = "benchmark.json"
	}
	pretty, _ := json.MarshalIndent(res, "", "  ")
	if err := env.WriteArtifact(name, append(pretty, '\n')); err != nil {
		return nil, err
	}
	// The table goes to the run's display (env.Text: stderr, not in
	// --log-format json) and, for the record, to benchmark.txt next
	// to the JSON.
	var tbl strings.Builder
	WriteBenchTable(&tbl, res)
	if env.Text != nil {
		fmt.Fprint(env.Text, tbl.String())
	}
	txt := strings.TrimSuffix(name, filepath.Ext(name)) + ".txt"
	if err := env.WriteArtifact(txt, []byte(tbl.String())); err != nil {
		return nil, err
	}
	if !s.cfg.NoReport {
		doc := &report.Doc{Name: jobName, Generated: time.Now().UTC(), Benchmark: res}
		if err := collectReport(env, needs, doc); err != nil {
			return nil, err
		}
		js, html, err := report.Render(doc)
		if err != nil {
			return nil, err
		}
		if err := env.WriteArtifact(report.JSONFile, js); err != nil {
			return nil, err
		}
		if err := env.WriteArtifact(report.HTMLFile, html); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// collectReport fills doc's tensors and validation from the outputs of refs.
func collectReport(env *pipeline.TaskEnv, refs []pipeline.TaskRef, doc *report.Doc) error {
	var reps []quant.Report
	for _, r := range refs {
		o, err := env.Input(r)
		if err != nil {
			return err
		}
		if err := AddToReport(doc, o.Meta, &reps); err != nil {
			return fmt.Errorf("%s/%s: %w", r.Stage, r.Key, err)
		}
	}
	if len(reps) > 0 {
		doc.Tensors = report.FromQuant(reps)
		doc.Summary = report.Summarize(doc.Tensors)
	}
	return nil
}

// AddToReport adds what one task output's Meta holds for the report: a
// validation, a benchmark, or quantize reports (appended to reps).
func AddToReport(doc *report.Doc, meta map[string]string, reps *[]quant.Report) error {
	if js := meta[report.MetaValidation]; js != "" {
		var v report.Validation
		if err := json.Unmarshal([]byte(js), &v); err != nil {
			return fmt.Errorf("%s: %w", report.MetaValidation, err)
		}
		doc.Validation = &v
	}
	if js := meta[report.MetaBenchmark]; js != "" {
		var b report.Benchmark
		if err := json.Unmarshal([]byte(js), &b); err != nil {
			return fmt.Errorf("%s: %w", report.MetaBenchmark, err)
		}
		doc.Benchmark = &b
	}
	rs, err := reportsOf(meta)
	if err != nil {
		return fmt.Errorf("%s: %w", metaQuantReports, err)
	}
	*reps = append(*reps, rs...)
	return nil
}

// WriteBenchTable prints the results as two aligned tables.
func WriteBenchTable(w io.Writer, r *report.Benchmark) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "model\tbackend\tprompt\tprefill tok/s\tdecode tok/s\tweights MiB\tdecode vs f32\t")
	var f32dec float64
	for _, e := range r.E2E {
		if e.Format == "f32" {
			f32dec = e.DecodeTokS
		}
	}
	for _, e := range r.E2E {
		ratio := "-"
		if f32dec > 0 {
			ratio = fmt.Sprintf("%.2fx", e.DecodeTokS/f32dec)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.1f\t%.1f\t%.2f\t%s\t\n", e.Format, e.Backend, e.PromptTokens, e.PrefillTokS, e.DecodeTokS, float64(e.WeightBytes)/(1<<20), ratio)
	}
	fmt.Fprintln(tw, "\t\t\t\t\t\t\t")
	fmt.Fprintln(tw, "kernel\tformat\trows×out×in\tµs/call\tGFLOP/s\tweight GB/s\t\t")
	for _, k := range r.Kernels {
		fmt.Fprintf(tw, "%s\t%s\t%d×%d×%d\t%.1f\t%.2f\t%.2f\t\t\n", k.Op, k.Format, k.Rows, k.Out, k.In, 1e6*k.Seconds, k.GFLOPs, k.GBs)
	}
	tw.Flush()
}
