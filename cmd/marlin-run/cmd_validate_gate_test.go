package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/internal/assets"
)

// gateJob quantizes qwen3-nano with RTN MXFP4, packs it natively, validates
// it from the packed weights and benchmarks it (small sizes). THRESH is
// replaced by the validate stage's thresholds.
const gateJob = `version: 1
name: gate
resources: {workers: 2, backend: cpu}
stages:
  - {id: load, kind: load, with: {path: MODEL}}
  - id: quant
    kind: quantize
    needs: [load]
    with:
      default: {format: mxfp4, method: rtn}
      rules:
        - {match: "model.embed_tokens.weight", format: skip}
  - {id: pack, kind: pack, needs: [quant], with: {format: native, out: packed, model: MODEL}}
  - {id: validate, kind: validate, needs: [pack], with: {model: MODEL, packed: packed, text: TEXT, window: 64, windows: 4, THRESH}}
  - {id: bench, kind: benchmark, needs: [validate], with: {packed: packed, prompt_tokens: 16, decode_tokens: 8, repeats: 1}}
`

func writeGateJob(t *testing.T, thresh string) (job, wd string) {
	t.Helper()
	model := assets.Model(t, "qwen3-nano")
	text, err := filepath.Abs("../../demo/eval.txt")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	job = filepath.Join(dir, "job.yaml")
	s := strings.NewReplacer("MODEL", model, "TEXT", text, "THRESH", thresh).Replace(gateJob)
	if err := os.WriteFile(job, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return job, filepath.Join(dir, "wd")
}

// TestValidateGate is issue 11's CLI acceptance: an impossible threshold
// fails `marlin-run run` with exit code 1 and a message naming the metric
// and the margin; reasonable thresholds pass, and the benchmark writes
// report.html/report.json, which `marlin-run report` rebuilds.
func TestValidateGate(t *testing.T) {
	// The quantized model cannot be 50% better than the original.
	job, wd := writeGateJob(t, `max_ppl_increase: "-50%", min_cosine: 0.9`)
	code, _, errs := cli(t, "run", "--quiet", "--workdir", wd, job)
	if code != 1 {
		t.Fatalf("impossible threshold: exit %d, want 1; stderr:\n%s", code, errs)
	}
	if !strings.Contains(errs, "ppl_increase") || !strings.Contains(errs, "exceeds the limit -50.000% by") {
		t.Errorf("message does not name the metric and margin:\n%s", errs)
	}
	if strings.Contains(errs, "min_cosine") {
		t.Errorf("a passing threshold is reported as failed:\n%s", errs)
	}

	job, wd = writeGateJob(t, `max_ppl_increase: "25%", max_kl: 0.5, min_top1: 0.5, min_cosine: 0.9, min_sqnr_db: 10`)
	code, out, errs := cli(t, "run", "--quiet", "--workdir", wd, job)
	if code != 0 {
		t.Fatalf("run: exit %d\n%s\n%s", code, out, errs)
	}
	for _, f := range []string{"validate.json", "benchmark.json", "report.json", "report.html"} {
		if _, err := os.Stat(filepath.Join(wd, "out", f)); err != nil {
			t.Error(err)
		}
	}
	html, err := os.ReadFile(filepath.Join(wd, "out", "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(html), "data:image/png;base64,"); n < 4 {
		t.Errorf("report.html embeds %d plots, want at least 4", n)
	}
	os.Remove(filepath.Join(wd, "out", "report.html"))
	code, out, errs = cli(t, "report", wd)
	if code != 0 || !strings.Contains(out, "report.html") {
		t.Fatalf("report: exit %d\n%s\n%s", code, out, errs)
	}
	html2, err := os.ReadFile(filepath.Join(wd, "out", "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Validation", "Benchmark", "model.layers.3.mlp.down_proj.weight", "decode tok/s"} {
		if !strings.Contains(string(html2), want) {
			t.Errorf("rebuilt report lacks %q", want)
		}
	}
	if code, _, _ := cli(t, "report", t.TempDir()); code == 0 {
		t.Error("report of an empty directory succeeded")
	}
}
