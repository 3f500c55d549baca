package calib

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marlin-llm/marlin/internal/assets"
	"github.com/marlin-llm/marlin/kernels"
	"github.com/marlin-llm/marlin/model/arch"
	"github.com/marlin-llm/marlin/model/eval"
	"github.com/marlin-llm/marlin/model/tokenizer"
	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/quant/gptq"
)

// quantizable selects what the testdata goldens quantize: every Linear of
// the decoder layers except the MoE routers.
func quantizable(p *arch.Proj) bool {
	return p.Layer() >= 0 && !routerRe.MatchString(p.Name())
}

func tokenize(t testing.TB, model, file string) []int32 {
	t.Helper()
	tok, err := tokenizer.Load(filepath.Join(assets.Model(t, model), "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(assets.Shared(t, "corpus", file))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := tok.Encode(string(b))
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func loadModel(t testing.TB, name string) *arch.Model {
	t.Helper()
	m, err := arch.Load(assets.Model(t, name), arch.Options{Backend: kernels.NewCPU(kernels.Options{})})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

type tableRow struct {
	name   string
	method string
	format string
	group  int
	scale  quant.ScaleType
	opt    *gptq.Options // nil: the method's default
}

// sweepRows are GPTQ variants (act-order/static groups/scale search).
func sweepRows() []tableRow {
	var rows []tableRow
	variants := []struct {
		tag string
		opt gptq.Options
	}{
		{"plain", gptq.Options{}},
		{"ao-static", gptq.Options{ActOrder: true, StaticGroups: true}},
		{"plain+search", gptq.Options{ClipRatios: gptq.DefaultClipRatios()}},
		{"ao-static+search", gptq.Options{ActOrder: true, StaticGroups: true, ClipRatios: gptq.DefaultClipRatios()}},
	}
	for _, f := range []struct {
		name  string
		group int
	}{{"int4", 128}, {"int3", 128}, {"mxfp4", 0}, {"nvfp4", 0}} {
		for _, m := range []string{"gptq", "mr-gptq"} {
			for _, v := range variants {
				if m == "mr-gptq" && (f.name == "int4" || f.name == "int3") {
					continue
				}
				o := v.opt
				rows = append(rows, tableRow{name: fmt.Sprintf("%s %s %s", m, f.name, v.tag), method: m, format: f.name, group: f.group, opt: &o})
			}
		}
	}
	return rows
}

func format(t testing.TB, r tableRow) quant.Format {
	f, err := quant.Lookup(r.format)
	if err != nil {
		t.Fatal(err)
	}
	if r.group != 0 && r.group != f.GroupSize {
		if f, err = f.WithGroupSize(r.group); err != nil {
			t.Fatal(err)
		}
	}
	if r.scale != quant.ScaleNone {
		if f, err = f.WithScale(r.scale); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// quantizeModel applies one table row to m (calibrating on calib for the
// GPTQ family, sequentially, true-sequential). GPTQ rows use act-order with
// static groups and the clip-ratio scale search; MR-GPTQ rows the paper's
// settings (gptq.MROptions) on top of the block rotation.
func quantizeModel(t testing.TB, m *arch.Model, r tableRow, calib []int32, window int) *Report {
	ctx := context.Background()
	mt := &Method{Name: r.method, Format: format(t, r)}
	switch r.method {
	case "gptq":
		mt.GPTQ = gptq.Options{ActOrder: true, StaticGroups: true, ClipRatios: gptq.DefaultClipRatios()}
	case "mr-gptq":
		mt.GPTQ = gptq.MROptions()
	}
	if r.opt != nil {
		mt.GPTQ = *r.opt
	}
	if r.method == "rtn" {
		for _, p := range m.Projs() {
			if quantizable(p) {
				if _, err := mt.Apply(ctx, p, nil); err != nil {
					t.Fatal(err)
				}
			}
		}
		return nil
	}
	rep, err := Sequential(ctx, m, calib, Options{Window: window, TrueSequential: true, Precision: gptq.F64}, quantizable,
		func(ctx context.Context, ps []*arch.Proj, hess map[string]*gptq.Hessian) error {
			_, err := mt.ApplyAll(ctx, ps, hess, 0)
			return err
		})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestPerplexityTable measures the perplexity table on the
// testdata nano models (MARLIN_PPL=model[,model...] to run; slow).
// MARLIN_PPL_ROWS filters rows by name substring; MARLIN_PPL_CALIB sets the
// number of calibration windows (default 128 × 256 tokens).
func TestPerplexityTable(t *testing.T) {
	models := os.Getenv("MARLIN_PPL")
	if models == "" {
		t.Skip("set MARLIN_PPL=qwen3-nano (or a comma list) to measure the perplexity table")
	}
	rows := []tableRow{
		{"f32", "none", "", 0, 0, nil},
		{"rtn int4-g128", "rtn", "int4", 128, quant.ScaleF32, nil},
		{"gptq int4-g128", "gptq", "int4", 128, 0, nil},
		{"rtn int3-g128", "rtn", "int3", 128, quant.ScaleF32, nil},
		{"gptq int3-g128", "gptq", "int3", 128, 0, nil},
		{"rtn int2-g64", "rtn", "int2", 64, quant.ScaleF32, nil},
		{"gptq int2-g64", "gptq", "int2", 64, 0, nil},
		{"rtn mxfp4", "rtn", "mxfp4", 0, 0, nil},
		{"gptq mxfp4", "gptq", "mxfp4", 0, 0, nil},
		{"mr-gptq mxfp4", "mr-gptq", "mxfp4", 0, 0, nil},
		{"rtn nvfp4", "rtn", "nvfp4", 0, 0, nil},
		{"gptq nvfp4", "gptq", "nvfp4", 0, 0, nil},
		{"mr-gptq nvfp4", "mr-gptq", "nvfp4", 0, 0, nil},
		{"gptq int4-g128 nosearch", "gptq", "int4", 128, 0, &gptq.Options{ActOrder: true, StaticGroups: true}},
		{"gptq int3-g128 nosearch", "gptq", "int3", 128, 0, &gptq.Options{ActOrder: true, StaticGroups: true}},
		{"mr-gptq mxfp4 nosearch", "mr-gptq", "mxfp4", 0, 0, &gptq.Options{ActOrder: true, StaticGroups: true}},
	}
	if os.Getenv("MARLIN_PPL_SWEEP") != "" {
		rows = append(rows[:1], sweepRows()...)
	}
	filter := os.Getenv("MARLIN_PPL_ROWS")
	nCalib := 128
	if v := os.Getenv("MARLIN_PPL_CALIB"); v != "" {
		fmt.Sscan(v, &nCalib)
	}
	const window = 256
	evalWindows := 64
	if v := os.Getenv("MARLIN_PPL_WINDOWS"); v != "" {
		fmt.Sscan(v, &evalWindows)
	}
	out := map[string]map[string][2]float64{}
	for _, model := range strings.Split(models, ",") {
		valid := tokenize(t, model, "valid.txt")
		calib := tokenize(t, model, "calib.txt")
		nCal := min(nCalib, len(calib)/window)
		calib = calib[:nCal*window]
		var golden map[string]any
		if b, err := os.ReadFile(filepath.Join(assets.Model(t, model), "golden.json")); err == nil {
			_ = json.Unmarshal(b, &golden)
		}
		out[model] = map[string][2]float64{}
		t.Logf("%s: %d calibration tokens (%d windows of %d), golden %v", model, len(calib), nCal, window, golden)
		for _, r := range rows {
			if filter != "" && !strings.Contains(r.name, filter) && r.method != "none" {
				continue
			}
			start := time.Now()
			m := loadModel(t, model)
			var rep *Report
			if r.method != "none" {
				rep = quantizeModel(t, m, r, calib, window)
			}
			qt := time.Since(start)
			ctx := context.Background()
			p, err := eval.Perplexity(ctx, m, valid, eval.Options{Window: 256, Windows: evalWindows})
			if err != nil {
				t.Fatal(err)
			}
			pl, err := eval.Perplexity(ctx, m, valid, eval.Options{Window: 256, Windows: evalWindows, LlamaCpp: true})
			if err != nil {
				t.Fatal(err)
			}
			out[model][r.name] = [2]float64{p.PPL, pl.PPL}
			cold := 0
			if rep != nil {
				for _, e := range rep.Experts {
					if e.Policy != "own" {
						cold++
					}
				}
			}
			t.Logf("%-14s %-16s ppl %8.4f  llama.cpp-protocol %8.4f  (quantize %v, %d expert projs below threshold)", model, r.name, p.PPL, pl.PPL, qt.Round(time.Second), cold)
		}
	}
	b, _ := json.MarshalIndent(out, "", " ")
	t.Logf("table: %s", b)
	if dir := os.Getenv("MARLIN_PPL_OUT"); dir != "" {
		_ = os.WriteFile(filepath.Join(dir, "ppl_table.json"), b, 0o644)
	}
}
