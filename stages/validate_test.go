package stages

import (
	"math"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/report"
)

func TestParseFraction(t *testing.T) {
	for _, c := range []struct {
		in   string
		want float64
		ok   bool
	}{
		{"3%", 0.03, true}, {" 3 % ", 0.03, true}, {"0.03", 0.03, true}, {"-50%", -0.5, true}, {"150%", 1.5, true},
		{"", 0, false}, {"%", 0, false}, {"3%%", 0, false}, {"abc", 0, false}, {"NaN", 0, false}, {"Inf%", 0, false},
	} {
		got, err := ParseFraction(c.in)
		if (err == nil) != c.ok || (c.ok && math.Abs(got-c.want) > 1e-15) {
			t.Errorf("ParseFraction(%q) = %v, %v; want %v ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
}

func FuzzParseFraction(f *testing.F) {
	for _, s := range []string{"3%", "0.03", "-1e308%", "1e309", "%", " 2.5 %"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseFraction(s)
		if err == nil && (math.IsNaN(v) || math.IsInf(v, 0)) {
			t.Errorf("ParseFraction(%q) = %v without error", s, v)
		}
	})
}

func TestValidateConfigErrors(t *testing.T) {
	nan := math.NaN()
	for _, c := range []struct {
		cfg  ValidateConfig
		want string
	}{
		{ValidateConfig{}, "model: required"},
		{ValidateConfig{Model: "m", Packed: "../x", Text: "t"}, "packed: must be a relative path"},
		{ValidateConfig{Model: "m", Packed: "p", Text: "t", MaxPPLIncrease: "lots"}, "max_ppl_increase: want a percentage"},
		{ValidateConfig{Model: "m", Packed: "p", Text: "t", MaxKL: &nan}, "max_kl: must be finite"},
		{ValidateConfig{Model: "m", Packed: "p", Text: "t", Window: 1}, "window: must be at least 2"},
		{ValidateConfig{Model: "m", Text: "t"}, "packed: required (or gguf)"},
		{ValidateConfig{Model: "m", Packed: "p", GGUF: "g.gguf", Text: "t"}, "gguf: give packed or gguf, not both"},
		{ValidateConfig{Model: "m", GGUF: "/g.gguf", Text: "t"}, "gguf: must be a relative path"},
	} {
		err := c.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want %q", c.cfg, err, c.want)
		}
	}
	ok := ValidateConfig{Model: "m", Packed: "p", Text: "t", MaxPPLIncrease: "3%"}
	if err := ok.Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
}

// TestChecks checks threshold arithmetic and messages on known values.
func TestChecks(t *testing.T) {
	kl, top1, cos := 0.05, 0.95, 0.999
	s := &validateStage{cfg: ValidateConfig{MaxPPLIncrease: "3%", MaxKL: &kl, MinTop1: &top1, MinCosine: &cos}}
	v := &report.Validation{PPLIncrease: 0.05, KL: 0.01, Top1: 0.9}
	ts := []report.TensorMetric{{Name: "a", Cosine: 0.9995}, {Name: "b", Cosine: 0.998}}
	cs := s.checks(v, ts)
	if len(cs) != 4 {
		t.Fatalf("%d checks, want 4", len(cs))
	}
	want := []struct {
		pass bool
		msg  string
	}{
		{false, "ppl_increase 5.000% exceeds the limit 3.000% by 2.000%"},
		{true, "kl 0.01 within 0.05"},
		{false, "top1 0.9 is below the limit 0.95 by 0.05"},
		{false, "min_cosine (b) 0.998 is below the limit 0.999 by 0.001"},
	}
	for i, w := range want {
		if cs[i].Pass != w.pass || cs[i].Message != w.msg {
			t.Errorf("check %d: pass=%v %q, want pass=%v %q", i, cs[i].Pass, cs[i].Message, w.pass, w.msg)
		}
	}
	err := (&ValidationError{Failed: []report.Check{cs[0], cs[2]}}).Error()
	if !strings.HasPrefix(err, "validation failed: ppl_increase") || !strings.Contains(err, "; top1") {
		t.Errorf("error %q", err)
	}
}

// FuzzAddToReport feeds arbitrary Meta JSON (as a corrupt checkpoint
// could hold) to the report collector: errors, never panics.
func FuzzAddToReport(f *testing.F) {
	f.Add(`{"ref_ppl":1,"checks":[{"metric":"kl"}]}`, `{"e2e":[{"format":"f32"}]}`, `[{"Name":"a","Rows":1,"Cols":2}]`)
	f.Add(`null`, `{"kernels":null}`, `[]`)
	f.Add(`{`, `[1]`, `{"x":1}`)
	f.Fuzz(func(t *testing.T, v, b, q string) {
		doc := &report.Doc{}
		var reps []quant.Report
		meta := map[string]string{report.MetaValidation: v, report.MetaBenchmark: b, "quant.reports": q}
		if err := AddToReport(doc, meta, &reps); err == nil {
			doc.Tensors = report.FromQuant(reps)
			doc.Summary = report.Summarize(doc.Tensors)
			if _, err := report.HTML(doc); err != nil {
				t.Fatalf("valid parts do not render: %v", err)
			}
		}
	})
}
