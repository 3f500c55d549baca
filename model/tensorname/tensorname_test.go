package tensorname

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		want Name
	}{
		{"model.layers.3.self_attn.q_proj.weight", Name{Layer: 3, Root: "model", Prefix: "model.layers.3.", Rest: "self_attn.q_proj.weight",
			Block: "self_attn", Expert: -1, Proj: "q_proj", Param: "weight", Pattern: "self_attn.q_proj.weight"}},
		{"model.layers.12.mlp.experts.7.down_proj.weight", Name{Layer: 12, Root: "model", Prefix: "model.layers.12.", Rest: "mlp.experts.7.down_proj.weight",
			Block: "mlp", Expert: 7, ExpertBlock: "model.layers.12.mlp", Proj: "down_proj", Param: "weight", Pattern: "mlp.experts.*.down_proj.weight"}},
		{"backbone.layers.0.mixer.experts.15.up_proj", Name{Layer: 0, Root: "backbone", Prefix: "backbone.layers.0.", Rest: "mixer.experts.15.up_proj",
			Block: "mixer", Expert: 15, ExpertBlock: "backbone.layers.0.mixer", Proj: "up_proj", Pattern: "mixer.experts.*.up_proj"}},
		{"backbone.layers.4.mixer.A_log", Name{Layer: 4, Root: "backbone", Prefix: "backbone.layers.4.", Rest: "mixer.A_log",
			Block: "mixer", Expert: -1, Proj: "A_log", Pattern: "mixer.A_log"}},
		{"model.layers.1.mlp.gate.e_score_correction_bias", Name{Layer: 1, Root: "model", Prefix: "model.layers.1.", Rest: "mlp.gate.e_score_correction_bias",
			Block: "mlp", Expert: -1, Proj: "e_score_correction_bias", Pattern: "mlp.gate.e_score_correction_bias"}},
		{"model.layers.2.self_attn.o_proj.bias", Name{Layer: 2, Root: "model", Prefix: "model.layers.2.", Rest: "self_attn.o_proj.bias",
			Block: "self_attn", Expert: -1, Proj: "o_proj", Param: "bias", Pattern: "self_attn.o_proj.bias"}},
		{"mtp.layers.0.norm.weight", Name{Layer: 0, Root: "mtp", Prefix: "mtp.layers.0.", Rest: "norm.weight",
			Block: "norm", Expert: -1, Proj: "norm", Param: "weight", Pattern: "norm.weight"}},
		{"model.embed_tokens.weight", Name{Layer: -1, Rest: "model.embed_tokens.weight", Block: "model", Expert: -1, Proj: "embed_tokens", Param: "weight",
			Pattern: "model.embed_tokens.weight"}},
		{"lm_head.weight", Name{Layer: -1, Rest: "lm_head.weight", Block: "lm_head", Expert: -1, Proj: "lm_head", Param: "weight", Pattern: "lm_head.weight"}},
		{"model.layers.x.layers.5.w", Name{Layer: 5, Root: "model.layers.x", Prefix: "model.layers.x.layers.5.", Rest: "w", Block: "w", Expert: -1, Proj: "w", Pattern: "w"}},
		{"model.layers.99999999999999999999.mlp.weight", Name{Layer: -1, Rest: "model.layers.99999999999999999999.mlp.weight", Block: "model", Expert: -1,
			Proj: "mlp", Param: "weight", Pattern: "model.layers.99999999999999999999.mlp.weight"}},
		{"", Name{Layer: -1, Expert: -1}},
		{".", Name{Layer: -1, Rest: ".", Expert: -1, Pattern: "."}},
		{"weight", Name{Layer: -1, Rest: "weight", Block: "weight", Expert: -1, Proj: "weight", Pattern: "weight"}},
	}
	for _, tt := range tests {
		got := Parse(tt.name)
		tt.want.Full = tt.name
		if got != tt.want {
			t.Errorf("Parse(%q)\n got %+v\nwant %+v", tt.name, got, tt.want)
		}
	}
}

func TestPredicates(t *testing.T) {
	tests := []struct {
		name                     string
		module                   bool
		inDecoder, expert, route bool
		is                       string // a pattern Is must accept ("" none)
	}{
		{name: "model.layers.1.mlp.experts.3.gate_proj", module: true, inDecoder: true, expert: true, is: "mlp.experts.*.gate_proj"},
		{name: "backbone.layers.1.mixer.experts.3.down_proj.weight", inDecoder: true, expert: true, is: "mixer.experts.*.down_proj.weight"},
		{name: "model.layers.1.mlp.experts.*.gate_proj", module: true, inDecoder: true},
		{name: "model.layers.1.mlp.gate", module: true, inDecoder: true, route: true, is: "mlp.gate"},
		{name: "model.layers.1.mlp.gate.weight", inDecoder: true, is: "mlp.gate.weight"},
		{name: "mtp.layers.0.mlp.experts.1.up_proj.weight", expert: true},
		{name: "model.layers.1.self_attn.experts.3.gate_proj", module: true, inDecoder: true, is: "self_attn.experts.*.gate_proj"},
		{name: "model.norm.weight", is: "model.norm.weight"},
	}
	for _, tt := range tests {
		n := Parse(tt.name)
		if tt.module {
			n = ParseModule(tt.name)
		}
		if inDecoder(n) != tt.inDecoder || n.ExpertProj() != tt.expert || n.Router() != tt.route {
			t.Errorf("%s: in decoder %v ExpertProj %v Router %v, want %v %v %v", tt.name,
				inDecoder(n), n.ExpertProj(), n.Router(), tt.inDecoder, tt.expert, tt.route)
		}
		if tt.is != "" && !n.Is(tt.is) {
			t.Errorf("%s: Is(%q) false (Pattern %q)", tt.name, tt.is, n.Pattern)
		}
		if n.Expert < 0 && n.Is(n.Pattern) && strings.Contains(n.Pattern, "experts.*.") {
			t.Errorf("%s: Is(its own literal pattern %q) true without an expert index", tt.name, n.Pattern)
		}
	}
}

// The regular expressions the parser replaced, kept as the reference it
// must agree with.
var (
	oldReportLayer = regexp.MustCompile(`(?:^|\.)layers\.(\d+)\.`)
	oldCalibExpert = regexp.MustCompile(`^(.*\.(?:mlp|mixer))\.experts\.(\d+)\.(gate_proj|up_proj|down_proj)$`)
	oldRouter      = regexp.MustCompile(`\.(?:mlp|mixer)\.gate$`)
	oldLlamaLayer  = regexp.MustCompile(`^(?:model|backbone)\.layers\.(\d+)\.(.+)$`)
	oldLlamaExpert = regexp.MustCompile(`^(?:mlp|mixer)\.experts\.(\d+)\.(gate|up|down)_proj\.weight$`)
)

// inDecoder is hfconfig's test for the roots of today's families.
func inDecoder(n Name) bool { return n.Layer >= 0 && (n.Root == "model" || n.Root == "backbone") }

func atoiOr(s string, def int) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return def
	}
	return n
}

// longDigits matches a run of digits too long for an int: the old code
// and the parser part ways there (the parser reads no index).
var longDigits = regexp.MustCompile(`\d{19}`)

// checkAgainstRegexps compares the parser with the regular expressions it
// replaced.
func checkAgainstRegexps(t *testing.T, s string) {
	t.Helper()
	if longDigits.MatchString(s) || strings.ContainsAny(s, "\n*") {
		return
	}
	p, m := Parse(s), ParseModule(s)
	want := -1
	if g := oldReportLayer.FindStringSubmatch(s); g != nil {
		want = atoiOr(g[1], -1)
	}
	if p.Layer != want || m.Layer != want {
		t.Errorf("%q: Layer %d/%d, regexp %d", s, p.Layer, m.Layer, want)
	}
	if g := oldCalibExpert.FindStringSubmatch(s); (g != nil) != m.ExpertProj() {
		t.Errorf("%q: ExpertProj %v, regexp %v", s, m.ExpertProj(), g != nil)
	} else if g != nil && (g[1] != m.ExpertBlock || atoiOr(g[2], -1) != m.Expert || g[3] != m.Proj) {
		t.Errorf("%q: expert %q %d %q, regexp %q", s, m.ExpertBlock, m.Expert, m.Proj, g[1:])
	}
	if oldRouter.MatchString(s) != m.Router() {
		t.Errorf("%q: Router %v, regexp %v", s, m.Router(), !m.Router())
	}
	// export/llamacpp: a decoder-layer tensor and a routed expert's weight.
	if g := oldLlamaLayer.FindStringSubmatch(s); (g != nil) != (inDecoder(p) && p.Rest != "") {
		t.Errorf("%q: llama.cpp layer %v, regexp %v", s, inDecoder(p) && p.Rest != "", g != nil)
	} else if g != nil {
		if g[2] != p.Rest {
			t.Errorf("%q: Rest %q, regexp %q", s, p.Rest, g[2])
		}
		e := oldLlamaExpert.FindStringSubmatch(g[2])
		is := p.Is(MoEPatterns("experts.*.gate_proj.weight", "experts.*.up_proj.weight", "experts.*.down_proj.weight")...)
		if (e != nil) != is || e != nil && atoiOr(e[1], -1) != p.Expert {
			t.Errorf("%q: llama.cpp expert %v %d, regexp %q", s, is, p.Expert, e)
		}
	}
}

var seeds = []string{
	"model.layers.3.self_attn.q_proj.weight", "model.layers.12.mlp.experts.7.down_proj.weight",
	"backbone.layers.0.mixer.experts.15.up_proj", "backbone.layers.0.mixer.experts.15.up_proj.weight",
	"model.layers.1.mlp.gate", "model.layers.1.mlp.gate.weight", "x.mlp.gate", "mlp.gate",
	"model.layers.1.mlp.shared_experts.gate_proj.weight", "model.layers.1.mlp.shared_expert.down_proj.bias",
	"model.layers.0.self_attn.o_proj.bias", "model.layers.0.self_attn.kv_a_proj_with_mqa.weight",
	"model.layers.007.mlp.experts.007.up_proj.weight", "layers.2.x", "model.layers.2.", "model.layers.2",
	"a.layers.x.layers.3.b", "mtp.layers.0.mlp.experts.1.up_proj.weight", ".mlp.experts.1.up_proj",
	"mlp.experts.1.up_proj.weight", "model.layers.1.mlp.experts.2.experts.3.up_proj.weight",
	"model.embed_tokens.weight", "lm_head.weight", "", ".", "..", "layers..", "model.layers.1.mlp.experts.1.weight",
}

// FuzzParse checks the parser's invariants and compares it with the
// regexps it replaced (plain go test runs the seeds).
func FuzzParse(f *testing.F) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n := Parse(s)
		if n.Layer >= 0 && (!strings.HasPrefix(s, n.Prefix) || n.Prefix+n.Rest != s) {
			t.Fatalf("%q: Prefix %q + Rest %q", s, n.Prefix, n.Rest)
		}
		if n.Param != "" && !strings.HasSuffix(s, "."+n.Param) {
			t.Fatalf("%q: Param %q", s, n.Param)
		}
		if n.Expert >= 0 && !strings.HasPrefix(s, n.ExpertBlock+".experts.") {
			t.Fatalf("%q: ExpertBlock %q", s, n.ExpertBlock)
		}
		checkAgainstRegexps(t, s)
	})
}
