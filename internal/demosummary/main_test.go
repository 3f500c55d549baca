package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/report"
)

func TestSummarize(t *testing.T) {
	dir := t.TempDir()
	d := report.Doc{
		Summary:    &report.Summary{Tensors: 3, BitsPerWeight: 4.25, AvgCosine: 0.99, MinCosine: 0.98, MinTensor: "w", Formats: map[string]int{"mxfp4": 3}},
		Validation: &report.Validation{Text: "eval.txt", Tokens: 100, RefPPL: 10, QuantPPL: 10.5, PPLIncrease: 0.05, KL: 0.01, Top1: 0.9, Method: "mxfp4 rtn", Checks: []report.Check{{Pass: false, Message: "ppl_increase 5% above 1%"}}},
		Benchmark:  &report.Benchmark{Backend: "cpu", Threads: 2, E2E: []report.E2EResult{{Backend: "cpu", Format: "f32", DecodeTokS: 100}, {Backend: "cpu", Format: "mxfp4 packed", DecodeTokS: 150}}},
	}
	b, _ := json.Marshal(d)
	if err := os.WriteFile(filepath.Join(dir, "report.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := summarize(&out, dir); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"quantized 3 tensors (3 mxfp4): 4.25 bits/weight", "10.500 (+5.00%)", "90.0%", "gate FAIL: ppl_increase 5% above 1%", "1.50x", "report.json"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
	if err := summarize(&out, t.TempDir()); err == nil {
		t.Error("no error without report.json")
	}
}
