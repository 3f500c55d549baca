package stages

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/pipeline"
	"github.com/marlin-llm/marlin/report"
)

// TestShortTextWarnsOrFails: calibration or evaluation text holding fewer
// windows than requested is used with a WARN log line and a warning in the
// task's report (calib.report, validate.json), and is an error when the
// job sets a minimum (min_samples, min_windows) above what the text holds.
func TestShortTextWarnsOrFails(t *testing.T) {
	model := demoModel(t)
	eval, err := os.ReadFile(filepath.Join("..", "demo", "eval.txt"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// about 150 tokens: a handful of 32-token windows, far from 128
	if err := os.WriteFile(filepath.Join(dir, "short.txt"), eval[:600], 0o644); err != nil {
		t.Fatal(err)
	}
	const calibStage = `  - {id: calib, kind: calibrate, needs: [load], with: {model: MODEL, text: short.txt, samples: 128, seq_len: 32MIN}}
  - {id: quant, kind: quantize, needs: [calib], with: {default: {format: int4, method: gptq}, rules: [{match: "model.embed_tokens.weight", format: bf16}]}}
`
	const validateStage = `  - {id: quant, kind: quantize, needs: [load], with: {default: {format: int4}, rules: [{match: "model.embed_tokens.weight", format: bf16}]}}
  - {id: native, kind: pack, needs: [quant], with: {format: native, out: nano, model: MODEL}}
  - {id: validate, kind: validate, needs: [native], with: {model: MODEL, packed: nano, text: short.txt, window: 32, windows: 64MIN}}
`
	cases := []struct {
		name, stages, min, wantErr string
	}{
		{"calibrate warns", calibStage, "", ""},
		{"calibrate min_samples", calibStage, ", min_samples: 100", "fewer than min_samples 100"},
		{"validate warns", validateStage, "", ""},
		{"validate min_windows", validateStage, ", min_windows: 60", "fewer than min_windows 60"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			doc := "version: 1\nname: short\nworkdir: work" + string(rune('a'+i)) + "\nresources: {backend: cpu}\nstages:\n  - {id: load, kind: load, with: {path: " + model + "}}\n" +
				strings.NewReplacer("MODEL", model, "MIN", c.min).Replace(c.stages)
			job, plan := mustPlanDoc(t, dir, doc)
			st, err := pipeline.OpenStore(job.Workdir, pipeline.StoreOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			var logBuf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logBuf, nil))
			_, err = (&pipeline.Runner{Store: st, Log: log}).Run(context.Background(), plan)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(logBuf.String(), "level=WARN") || !strings.Contains(logBuf.String(), "shorter than requested") {
				t.Errorf("no WARN line about the short text in\n%s", logBuf.String())
			}
			var warning string
			var windows, requested int
			for _, e := range st.Entries() {
				if !st.HasBlob(e) {
					continue // a dropped transient output (activations)
				}
				o, err := st.Get(e)
				if err != nil {
					t.Fatal(err)
				}
				if js := o.Meta["calib.report"]; js != "" {
					var r struct {
						Warning   string `json:"warning"`
						Windows   int    `json:"windows"`
						Requested int    `json:"requested_windows"`
					}
					if err := json.Unmarshal([]byte(js), &r); err != nil {
						t.Fatal(err)
					}
					warning, windows, requested = r.Warning, r.Windows, r.Requested
				}
				if js := o.Meta[report.MetaValidation]; js != "" {
					var v report.Validation
					if err := json.Unmarshal([]byte(js), &v); err != nil {
						t.Fatal(err)
					}
					warning, windows, requested = strings.Join(v.Warnings, "; "), v.Windows, v.RequestedWindows
				}
			}
			if windows < 1 || windows >= requested || !strings.Contains(warning, "requested windows") {
				t.Errorf("report: %d of %d windows, warning %q", windows, requested, warning)
			}
		})
	}
}
