// Package report assembles what a marlin run measured — per-tensor weight
// error, bits per weight, perplexity and KL of the quantized model against
// the unquantized one, kernel and end-to-end throughput — into report.json
// and a self-contained report.html whose plots are PNGs drawn with
// gonum.org/v1/plot and embedded as data URIs (no network, no scripts).
//
// The validate and benchmark stages fill the Validation and Benchmark parts
// (they store them as JSON in their task outputs, so `marlin-run report
// WORKDIR` rebuilds the report from checkpoints alone); the quantize stage's
// per-tensor reports fill Tensors.
package report

import (
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"time"

	"github.com/marlin-llm/marlin/internal/atomicfile"
	"github.com/marlin-llm/marlin/model/tensorname"
	"github.com/marlin-llm/marlin/quant"
)

// Meta keys under which stages store their part of the report as JSON in
// their task outputs.
const (
	MetaValidation = "report.validation"
	MetaBenchmark  = "report.benchmark"
)

// File names written by Write.
const (
	JSONFile = "report.json"
	HTMLFile = "report.html"
)

// Doc is the whole report.
type Doc struct {
	Name      string         `json:"name"`
	Generated time.Time      `json:"generated"`
	Summary   *Summary       `json:"summary,omitempty"`
	Tensors   []TensorMetric `json:"tensors,omitempty"`
	// Validation and Benchmark are nil when the run had no such stage.
	Validation *Validation `json:"validation,omitempty"`
	Benchmark  *Benchmark  `json:"benchmark,omitempty"`
}

// Summary aggregates the tensors.
type Summary struct {
	Tensors       int            `json:"tensors"`
	Weights       int64          `json:"weights"`
	BitsPerWeight float64        `json:"bits_per_weight"`
	AvgCosine     float64        `json:"avg_cosine"`
	MinCosine     float64        `json:"min_cosine"`
	MinTensor     string         `json:"min_cosine_tensor"`
	Formats       map[string]int `json:"formats"`
}

// TensorMetric is one quantized tensor's error against its unquantized
// weights. SQNRdB is capped at MaxSQNR (JSON has no infinity).
type TensorMetric struct {
	Name          string  `json:"name"`
	Format        string  `json:"format"`
	Layer         int     `json:"layer"` // -1 outside decoder layers
	Weights       int64   `json:"weights"`
	MSE           float64 `json:"mse"`
	MaxAbsErr     float64 `json:"max_abs_err"`
	Cosine        float64 `json:"cosine"`
	SQNRdB        float64 `json:"sqnr_db"`
	BitsPerWeight float64 `json:"bits_per_weight"`
}

// MaxSQNR stands in for an exact (infinite-SQNR) tensor.
const MaxSQNR = 200

// LayerOf returns the decoder layer index in a tensor name ("layers.N."
// under any root), or -1.
func LayerOf(name string) int { return tensorname.Parse(name).Layer }

// FromQuant converts quant reports.
func FromQuant(reps []quant.Report) []TensorMetric {
	out := make([]TensorMetric, 0, len(reps))
	for _, r := range reps {
		s := r.SQNRdB
		if math.IsInf(s, 1) || s > MaxSQNR {
			s = MaxSQNR
		}
		out = append(out, TensorMetric{
			Name: r.Name, Format: r.Format, Layer: LayerOf(r.Name), Weights: int64(r.Rows) * int64(r.Cols),
			MSE: finite(r.MSE), MaxAbsErr: finite(r.MaxAbsErr), Cosine: finite(r.Cosine), SQNRdB: finite(s),
			BitsPerWeight: finite(r.BitsPerWeight),
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}

// Summarize aggregates tensor metrics (nil when there are none).
func Summarize(ts []TensorMetric) *Summary {
	if len(ts) == 0 {
		return nil
	}
	s := &Summary{Tensors: len(ts), MinCosine: math.Inf(1), Formats: map[string]int{}}
	var bits, cos float64
	for _, t := range ts {
		s.Weights += t.Weights
		bits += t.BitsPerWeight * float64(t.Weights)
		cos += t.Cosine
		if t.Cosine < s.MinCosine {
			s.MinCosine, s.MinTensor = t.Cosine, t.Name
		}
		s.Formats[t.Format]++
	}
	if s.Weights > 0 {
		s.BitsPerWeight = bits / float64(s.Weights)
	}
	s.AvgCosine = cos / float64(len(ts))
	return s
}

// Validation is the validate stage's result.
type Validation struct {
	Model   string `json:"model"`
	Packed  string `json:"packed"`
	Text    string `json:"text"`
	Window  int    `json:"window"`
	Windows int    `json:"windows"`
	Tokens  int    `json:"tokens"`
	// Backend ran the quantized model (from its packed weights through the
	// fused dequant kernels).
	Backend     string  `json:"backend"`
	RefPPL      float64 `json:"ref_ppl"`
	QuantPPL    float64 `json:"quant_ppl"`
	PPLIncrease float64 `json:"ppl_increase"` // (quant − ref) / ref
	KL          float64 `json:"kl"`
	MaxKL       float64 `json:"max_kl"`
	Top1        float64 `json:"top1"`
	// Method names the quantization method(s) (for "ppl by method").
	Method string  `json:"method"`
	Checks []Check `json:"checks,omitempty"`
	// RequestedWindows is the number of windows the job asked for; Windows
	// is smaller when the text is too short (Warnings say so).
	RequestedWindows int      `json:"requested_windows,omitempty"`
	Warnings         []string `json:"warnings,omitempty"`
}

// Check is one threshold of the job file and its outcome.
type Check struct {
	Metric string  `json:"metric"`
	Value  float64 `json:"value"`
	Limit  float64 `json:"limit"`
	// Max is true for an upper limit (value must be ≤ limit).
	Max     bool   `json:"max"`
	Pass    bool   `json:"pass"`
	Message string `json:"message"`
}

// Benchmark is the benchmark stage's result.
type Benchmark struct {
	Backend string         `json:"backend"`
	Threads int            `json:"threads"`
	Note    string         `json:"note,omitempty"`
	Kernels []KernelResult `json:"kernels"`
	E2E     []E2EResult    `json:"e2e"`
}

// KernelResult is one GEMM/GEMV measurement on one projection's shape.
type KernelResult struct {
	Backend string  `json:"backend"`
	Format  string  `json:"format"` // "f32" for the dense SGEMM baseline
	Op      string  `json:"op"`     // "gemv" (1 row) or "gemm"
	Rows    int     `json:"rows"`
	Out     int     `json:"out"`
	In      int     `json:"in"`
	Seconds float64 `json:"seconds"` // per call (best of several)
	GFLOPs  float64 `json:"gflops"`
	GBs     float64 `json:"gbs"` // weight bytes read per second
}

// E2EResult is end-to-end prefill and decode throughput of one model.
type E2EResult struct {
	Backend      string  `json:"backend"`
	Format       string  `json:"format"`
	PromptTokens int     `json:"prompt_tokens"`
	DecodeTokens int     `json:"decode_tokens"`
	PrefillTokS  float64 `json:"prefill_tok_s"`
	DecodeTokS   float64 `json:"decode_tok_s"`
	WeightBytes  int64   `json:"weight_bytes"`
}

// Render returns the contents of report.json and report.html.
func Render(d *Doc) (js, html []byte, err error) {
	js, err = json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, nil, fmt.Errorf("report: %w", err)
	}
	html, err = HTML(d)
	if err != nil {
		return nil, nil, err
	}
	return append(js, '\n'), html, nil
}

// Write writes report.json and report.html into dir (each temp + fsync +
// rename) and returns their names.
func Write(dir string, d *Doc) ([]string, error) {
	js, html, err := Render(d)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, JSONFile), js); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, HTMLFile), html); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	return []string{JSONFile, HTMLFile}, nil
}
