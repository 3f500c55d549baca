package stages

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/marlin-llm/marlin/internal/assets"
	"github.com/marlin-llm/marlin/kernels"
	"github.com/marlin-llm/marlin/model/arch"
	"github.com/marlin-llm/marlin/model/eval"
	"github.com/marlin-llm/marlin/model/tokenizer"
	"github.com/marlin-llm/marlin/pipeline"
)

// This file measures the perplexity table of testdata/PPL.md (and README's
// "Measured results") through the pipeline users run: every row is a job
// load → [calibrate →] quantize planned with pipeline.PlanJob and run by
// pipeline.Runner, and the quantize stage's outputs (packed weights
// dequantized, MR-GPTQ's online rotations undone) are scored with
// model/eval on valid.txt.

// pplRow is one row of the table: the quantize stage's default block (a
// YAML flow mapping) and whether the job calibrates (gptq, mr-gptq).
type pplRow struct {
	name  string // key in the JSON output and for MARLIN_PPL_ROWS
	label string // markdown label
	spec  string // quantize default: {...}; "" for the F32 model itself
	calib bool
}

// pplRules keep what the goldens keep: embeddings, lm_head and MoE routers
// as they are (norms and biases are 1-D, nemotron_h's conv1d 3-D: never
// quantized). Every other 2-D model.layers.* (backbone.layers.*) weight is
// quantized with the default.
const pplRules = `
        - {match: "model.embed_tokens.weight", format: skip}
        - {match: "backbone.embeddings.weight", format: skip}
        - {match: "lm_head.weight", format: skip}
        - {match: "*.mlp.gate.weight", format: skip}
        - {match: "*.mixer.gate.weight", format: skip}`

// pplRows is the table. GPTQ rows: act-order with static groups (the stage
// always uses static groups), clip-ratio scale search 1.00..0.70, damp
// 0.01; MR-GPTQ rows: the same plus the block Hadamard rotation of every
// Linear's input (block = group, online, no rotate stage); clip_ratios: [1]
// is MR-GPTQ without scale search. RTN INT rows use F32 scales (the
// goldens' definition), GPTQ INT rows the format's F16 scales.
func pplRows() []pplRow {
	gptq := func(f string) string { return "{" + f + ", method: gptq, actorder: true, scale_search: true}" }
	return []pplRow{
		{"f32", "F32", "", false},
		{"rtn int4-g128", "RTN INT4-g128", "{format: int4, group_size: 128, scale: f32}", false},
		{"gptq int4-g128", "GPTQ INT4-g128", gptq("format: int4, group_size: 128"), true},
		{"rtn int3-g128", "RTN INT3-g128", "{format: int3, group_size: 128, scale: f32}", false},
		{"gptq int3-g128", "GPTQ INT3-g128", gptq("format: int3, group_size: 128"), true},
		{"rtn int2-g64", "RTN INT2-g64", "{format: int2, group_size: 64, scale: f32}", false},
		{"gptq int2-g64", "GPTQ INT2-g64", gptq("format: int2, group_size: 64"), true},
		{"rtn mxfp4", "RTN MXFP4", "{format: mxfp4}", false},
		{"gptq mxfp4", "GPTQ MXFP4", gptq("format: mxfp4"), true},
		{"mr-gptq mxfp4", "MR-GPTQ MXFP4", "{format: mxfp4, method: mr-gptq}", true},
		{"rtn nvfp4", "RTN NVFP4", "{format: nvfp4}", false},
		{"gptq nvfp4", "GPTQ NVFP4", gptq("format: nvfp4"), true},
		{"mr-gptq nvfp4", "MR-GPTQ NVFP4", "{format: nvfp4, method: mr-gptq}", true},
		{"gptq int4-g128 nosearch", "GPTQ INT4-g128 without scale search", "{format: int4, group_size: 128, method: gptq, actorder: true}", true},
		{"gptq int3-g128 nosearch", "GPTQ INT3-g128 without scale search", "{format: int3, group_size: 128, method: gptq, actorder: true}", true},
		{"mr-gptq mxfp4 nosearch", "MR-GPTQ MXFP4 without scale search", "{format: mxfp4, method: mr-gptq, clip_ratios: [1]}", true},
	}
}

// pplSweepRows (MARLIN_PPL_SWEEP=1) are the GPTQ variants the quantize
// stage can express: act-order on/off × scale search on/off, groups always
// static; MR-GPTQ always uses act-order.
func pplSweepRows() []pplRow {
	var rows []pplRow
	for _, f := range []struct{ name, spec string }{
		{"int4", "format: int4, group_size: 128"}, {"int3", "format: int3, group_size: 128"},
		{"mxfp4", "format: mxfp4"}, {"nvfp4", "format: nvfp4"},
	} {
		for _, v := range []struct{ tag, opts string }{
			{"static", "actorder: false"},
			{"ao-static", "actorder: true"},
			{"static+search", "actorder: false, scale_search: true"},
			{"ao-static+search", "actorder: true, scale_search: true"},
		} {
			name := fmt.Sprintf("gptq %s %s", f.name, v.tag)
			rows = append(rows, pplRow{name, name, fmt.Sprintf("{%s, method: gptq, %s}", f.spec, v.opts), true})
		}
		if f.name == "mxfp4" || f.name == "nvfp4" {
			for _, v := range []struct{ tag, opts string }{{"ao-static", "clip_ratios: [1]"}, {"ao-static+search", "scale_search: true"}} {
				name := fmt.Sprintf("mr-gptq %s %s", f.name, v.tag)
				rows = append(rows, pplRow{name, name, fmt.Sprintf("{%s, method: mr-gptq, %s}", f.spec, v.opts), true})
			}
		}
	}
	return rows
}

// pplJob is the job of one row.
func pplJob(dir, calibText string, r pplRow, samples int, calibWith string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "version: 1\nstages:\n  - {id: load, kind: load, with: {path: %q}}\n", dir)
	from := "load"
	if r.calib {
		fmt.Fprintf(&b, "  - {id: calib, kind: calibrate, needs: [load], with: {model: %q, text: %q, samples: %d, seq_len: 256, precision: f64%s}}\n",
			dir, calibText, samples, calibWith)
		from = "calib"
	}
	fmt.Fprintf(&b, "  - id: quant\n    kind: quantize\n    needs: [%s]\n    with:\n      default: %s\n      rules:%s\n      report: quant-report.json\n",
		from, r.spec, pplRules)
	return b.String()
}

// pplGoldenKey maps a row to its key in the model's golden.json.
var pplGoldenKey = map[string]string{
	"f32": "ppl_f32", "rtn int4-g128": "ppl_rtn_int4_g128_sym_f32", "rtn int3-g128": "ppl_rtn_int3_g128_sym_f32",
	"rtn int2-g64": "ppl_rtn_int2_g64_sym_f32", "rtn mxfp4": "ppl_rtn_mxfp4_f32", "rtn nvfp4": "ppl_rtn_nvfp4_f32",
}

// TestPerplexityTable measures the perplexity table (MARLIN_PPL=model[,model...]
// to run; slow). MARLIN_PPL_CALIB sets the calibration windows (default
// 128 × 256 tokens), MARLIN_PPL_ROWS is a regexp on row names (the F32 row
// always runs), MARLIN_PPL_WINDOWS the evaluation windows (default 64),
// MARLIN_PPL_SWEEP=1 replaces the rows by the GPTQ variants,
// MARLIN_PPL_CALIB_WITH adds calibrate settings (e.g. "true_sequential:
// false"), and
// MARLIN_PPL_OUT names a directory for ppl_table.json and ppl_table.md.
// Shared assets: ../shared/testdata or MARLIN_TESTDATA.
func TestPerplexityTable(t *testing.T) {
	models := os.Getenv("MARLIN_PPL")
	if models == "" {
		t.Skip("set MARLIN_PPL=qwen3-nano (or a comma list) to measure the perplexity table")
	}
	rows := pplRows()
	if os.Getenv("MARLIN_PPL_SWEEP") != "" {
		rows = append(rows[:1], pplSweepRows()...)
	}
	var filter *regexp.Regexp
	if v := os.Getenv("MARLIN_PPL_ROWS"); v != "" {
		filter = regexp.MustCompile(v)
	}
	nCalib := envInt(t, "MARLIN_PPL_CALIB", 128)
	evalWindows := envInt(t, "MARLIN_PPL_WINDOWS", 64)
	calibWith := ""
	if v := os.Getenv("MARLIN_PPL_CALIB_WITH"); v != "" {
		calibWith = ", " + v // e.g. "true_sequential: false"
	}
	const window = 256
	reg, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	calibText := assets.Shared(t, "corpus", "calib.txt")
	ctx := context.Background()
	out := map[string]map[string][2]float64{}
	var md strings.Builder
	for _, model := range strings.Split(models, ",") {
		dir := assets.Model(t, model)
		valid := pplTokenize(t, dir, assets.Shared(t, "corpus", "valid.txt"))
		var golden map[string]any
		if b, err := os.ReadFile(filepath.Join(dir, "golden.json")); err == nil {
			_ = json.Unmarshal(b, &golden)
		}
		out[model] = map[string][2]float64{}
		fmt.Fprintf(&md, "\n| %s | ppl | llama | golden ppl |\n|---|---|---|---|\n", model)
		t.Logf("%s: calibration %d windows of %d tokens (fewer if calib.txt is shorter), evaluation %d windows", model, nCalib, window, evalWindows)
		for _, r := range rows {
			if filter != nil && r.spec != "" && !filter.MatchString(r.name) {
				continue
			}
			start := time.Now()
			var m *arch.Model
			note := ""
			if r.spec == "" {
				if m, err = arch.Load(dir, arch.Options{Backend: kernels.NewCPU(kernels.Options{})}); err != nil {
					t.Fatal(err)
				}
			} else {
				m, note = pplQuantize(t, reg, dir, pplJob(dir, calibText, r, nCalib, calibWith))
			}
			qt := time.Since(start)
			p, err := eval.Perplexity(ctx, m, valid, eval.Options{Window: window, Windows: evalWindows})
			if err != nil {
				t.Fatal(err)
			}
			pl, err := eval.Perplexity(ctx, m, valid, eval.Options{Window: window, Windows: evalWindows, LlamaCpp: true})
			if err != nil {
				t.Fatal(err)
			}
			out[model][r.name] = [2]float64{p.PPL, pl.PPL}
			g := ""
			if v, ok := golden[pplGoldenKey[r.name]].(float64); ok {
				g = fmt.Sprintf("%.4f", v)
			}
			fmt.Fprintf(&md, "| %s | %.4f | %.4f | %s |\n", r.label, p.PPL, pl.PPL, g)
			writePPLOut(t, out, md.String()) // after every row: a run cut short keeps what it measured
			t.Logf("%-14s %-24s ppl %8.4f  llama.cpp-protocol %8.4f  (pipeline %v, eval %v%s)", model, r.name, p.PPL, pl.PPL,
				qt.Round(100*time.Millisecond), (time.Since(start) - qt).Round(100*time.Millisecond), note)
		}
	}
	b, _ := json.MarshalIndent(out, "", " ")
	t.Logf("table: %s", b)
	t.Logf("markdown:\n%s", md.String())
}

// writePPLOut writes the table so far to MARLIN_PPL_OUT (when set) as
// ppl_table.json ({model: {row: [ppl, llama]}}) and ppl_table.md.
func writePPLOut(t *testing.T, out map[string]map[string][2]float64, md string) {
	t.Helper()
	d := os.Getenv("MARLIN_PPL_OUT")
	if d == "" {
		return
	}
	b, err := json.MarshalIndent(out, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "ppl_table.json"), append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "ppl_table.md"), []byte(md), 0o644); err != nil {
		t.Fatal(err)
	}
}

// pplQuantize plans and runs one row's job in a fresh store and returns
// the model of its quantized weights and a note on the routed experts
// whose Hessians were shrunk, pooled or replaced by RTN.
func pplQuantize(t *testing.T, reg *pipeline.Registry, dir, doc string) (*arch.Model, string) {
	t.Helper()
	_, plan := mustPlanYAML(t, reg, t.TempDir(), doc)
	wd, err := os.MkdirTemp("", "marlin-ppl-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(wd)
	st, err := pipeline.OpenStore(wd, pipeline.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := (&pipeline.Runner{Store: st}).Run(context.Background(), plan); err != nil {
		t.Fatal(err)
	}
	_, ts := quantOutputs(t, st)
	m := effectiveModel(t, dir, ts)
	note := ""
	if data, err := os.ReadFile(filepath.Join(st.OutDir(), "quant-report.json")); err == nil {
		var rep QuantizeReport
		if err := json.Unmarshal(data, &rep); err != nil {
			t.Fatal(err)
		}
		policies := rep.policies()
		if len(rep.Experts) > 0 {
			note = fmt.Sprintf(", %d routed-expert projections: %v", len(rep.Experts), policies)
		}
		note = fmt.Sprintf(", %d tensors at %.3f bits/weight", rep.Summary.Tensors, rep.Summary.BitsPerWeight) + note
	}
	return m, note
}

func pplTokenize(t *testing.T, dir, file string) []int32 {
	t.Helper()
	tok, err := tokenizer.Load(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := tok.Encode(string(b))
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func envInt(t *testing.T, key string, def int) int {
	t.Helper()
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive integer", key, v)
	}
	return n
}
