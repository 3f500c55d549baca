package report

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marlin-llm/marlin/quant"
)

func TestLayerOf(t *testing.T) {
	for in, want := range map[string]int{
		"model.layers.12.mlp.down_proj.weight": 12, "layers.0.x": 0, "lm_head.weight": -1,
		"model.embed_tokens.weight": -1, "model.mylayers.3.x": -1,
	} {
		if got := LayerOf(in); got != want {
			t.Errorf("LayerOf(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestFromQuantAndSummarize(t *testing.T) {
	ts := FromQuant([]quant.Report{
		{Name: "model.layers.1.a", Format: "mxfp4", Rows: 2, Cols: 32, Cosine: 0.99, SQNRdB: 20, BitsPerWeight: 4.25},
		{Name: "model.layers.0.b", Format: "int8", Rows: 2, Cols: 96, Cosine: 1, SQNRdB: math.Inf(1), BitsPerWeight: 8.5, MSE: math.NaN()},
	})
	if ts[0].Name != "model.layers.0.b" || ts[0].SQNRdB != MaxSQNR || ts[0].MSE != 0 || ts[0].Layer != 0 || ts[0].Weights != 192 {
		t.Errorf("%+v", ts[0])
	}
	s := Summarize(ts)
	// (64·4.25 + 192·8.5) / 256 = 7.4375
	if s.Weights != 256 || s.BitsPerWeight != 7.4375 || s.MinCosine != 0.99 || s.MinTensor != "model.layers.1.a" {
		t.Errorf("%+v", s)
	}
	if Summarize(nil) != nil {
		t.Error("summary of nothing")
	}
}

// TestWrite renders a full report: JSON that round-trips, and HTML with one
// embedded PNG per plot and no external references.
func TestWrite(t *testing.T) {
	ts := FromQuant([]quant.Report{
		{Name: "model.layers.0.q", Format: "mxfp4", Rows: 4, Cols: 32, Cosine: 0.99, SQNRdB: 19, BitsPerWeight: 4.25},
		{Name: "model.layers.1.q", Format: "mxfp4", Rows: 4, Cols: 32, Cosine: 0.98, SQNRdB: 18, BitsPerWeight: 4.25},
		{Name: "lm_head", Format: "bf16", Rows: 4, Cols: 32, Cosine: 1, SQNRdB: 50, BitsPerWeight: 16},
	})
	d := &Doc{Name: "t<est>", Generated: time.Unix(0, 0).UTC(), Tensors: ts, Summary: Summarize(ts),
		Validation: &Validation{RefPPL: 10, QuantPPL: 10.5, PPLIncrease: 0.05, KL: 0.01, Top1: 0.9, Method: "mxfp4 rtn",
			Checks: []Check{{Metric: "ppl_increase", Value: 0.05, Limit: 0.03, Max: true, Message: "ppl_increase 5% exceeds"}}},
		Benchmark: &Benchmark{Backend: "cpu", Threads: 2,
			Kernels: []KernelResult{{Format: "f32", Op: "gemv", Rows: 1, Out: 8, In: 8, Seconds: 1e-6, GFLOPs: 1}},
			E2E:     []E2EResult{{Format: "f32", PrefillTokS: 100, DecodeTokS: 10}, {Format: "mxfp4", PrefillTokS: 90, DecodeTokS: 15}}},
	}
	dir := t.TempDir()
	if _, err := Write(dir, d); err != nil {
		t.Fatal(err)
	}
	js, err := os.ReadFile(filepath.Join(dir, JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	var back Doc
	if err := json.Unmarshal(js, &back); err != nil || back.Validation.QuantPPL != 10.5 || len(back.Tensors) != 3 {
		t.Fatalf("round trip: %v %+v", err, back)
	}
	html, err := os.ReadFile(filepath.Join(dir, HTMLFile))
	if err != nil {
		t.Fatal(err)
	}
	h := string(html)
	if n := strings.Count(h, `src="data:image/png;base64,`); n != 5 {
		t.Errorf("%d embedded plots, want 5", n)
	}
	for _, bad := range []string{"http://", "https://", "<script", "t<est>"} {
		if strings.Contains(h, bad) {
			t.Errorf("report.html contains %q", bad)
		}
	}
	for _, want := range []string{"t&lt;est&gt;", "5.000%", "class=\"l fail\"", "mxfp4 rtn"} {
		if !strings.Contains(h, want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
	// An empty report still renders.
	if _, err := HTML(&Doc{Name: "empty"}); err != nil {
		t.Error(err)
	}
}
