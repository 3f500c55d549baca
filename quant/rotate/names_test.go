package rotate

import (
	"regexp"
	"strings"
	"testing"
)

// The regular expressions Plan used before model/tensorname, kept as the
// reference the parser-based classification must agree with.
var (
	oldInputReader = regexp.MustCompile(`^(model\.layers\.\d+)\.self_attn\.(q_proj|k_proj|v_proj|q_a_proj|kv_a_proj_with_mqa)\.weight$`)
	oldPostReader  = regexp.MustCompile(`^(model\.layers\.\d+)\.mlp\.((experts\.\d+\.|shared_experts?\.)?(gate_proj|up_proj)|gate)\.weight$`)
	oldWriter      = regexp.MustCompile(`^model\.layers\.\d+\.(self_attn\.o_proj|mlp\.(experts\.\d+\.|shared_experts?\.)?down_proj)\.(weight|bias)$`)
	oldNorm        = regexp.MustCompile(`^(model\.layers\.\d+\.(input_layernorm|post_attention_layernorm)|model\.norm)\.weight$`)
)

func oldOp(n string) Op {
	op := Op{Name: n, Source: n}
	switch {
	case n == EmbedName:
		op.Role = Embed
	case n == LMHeadName:
		op.Role, op.Norm = Reader, FinalNorm
	case oldNorm.MatchString(n):
		op.Role = Norm
	case oldInputReader.MatchString(n):
		op.Role, op.Norm = Reader, oldInputReader.FindStringSubmatch(n)[1]+".input_layernorm.weight"
	case oldPostReader.MatchString(n):
		op.Role, op.Norm = Reader, oldPostReader.FindStringSubmatch(n)[1]+".post_attention_layernorm.weight"
	case oldWriter.MatchString(n):
		op.Role = Writer
		if oldWriter.FindStringSubmatch(n)[3] == "bias" {
			op.Role = WriterBias
		}
	}
	return op
}

var nameSeeds = []string{
	"model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.kv_a_proj_with_mqa.weight",
	"model.layers.1.mlp.experts.3.up_proj.weight", "model.layers.1.mlp.experts.3.down_proj.bias",
	"model.layers.1.mlp.shared_experts.gate_proj.weight", "model.layers.1.mlp.shared_expert.down_proj.weight",
	"model.layers.1.mlp.gate.weight", "model.layers.2.input_layernorm.weight", "model.norm.weight",
	"model.layers.2.post_attention_layernorm.weight", "model.layers.2.self_attn.o_proj.bias",
	"backbone.layers.0.mixer.in_proj.weight", "model.layers.007.mlp.down_proj.weight",
	"model.layers.1.mlp.experts.*.up_proj.weight", "x.model.layers.1.mlp.up_proj.weight",
	"model.layers.1.layers.2.mlp.up_proj.weight", "model.layers.1.mlp.experts.2.experts.3.up_proj.weight",
}

// opOf is Plan's classification of one name (in a checkpoint holding the
// norm the old rules would fold into it).
func opOf(t *testing.T, n string) Op {
	t.Helper()
	names := []string{EmbedName, LMHeadName, FinalNorm, n}
	if norm := oldOp(n).Norm; norm != "" {
		names = append(names, norm)
	}
	ops, err := Plan(names, false)
	if err != nil {
		t.Fatalf("%q: %v", n, err)
	}
	for _, op := range ops {
		if op.Name == n {
			return op
		}
	}
	t.Fatalf("%q: no op", n)
	return Op{}
}

func checkOp(t *testing.T, n string) {
	if n == "" || n == EmbedName || n == LMHeadName || strings.ContainsAny(n, "\n") || len(n) > 200 {
		return
	}
	if regexp.MustCompile(`\d{19}`).MatchString(n) { // indices beyond int: the parser reads no index
		return
	}
	want := oldOp(n)
	if n == FinalNorm || want.Norm == EmbedName || want.Norm == LMHeadName || want.Norm == n {
		return
	}
	if got := opOf(t, n); got != want {
		t.Errorf("%q: op %+v, regexps %+v", n, got, want)
	}
}

// FuzzPlanNames compares Plan's classification with its old regexps
// (plain go test runs the seeds).
func FuzzPlanNames(f *testing.F) {
	for _, n := range nameSeeds {
		f.Add(n)
	}
	f.Fuzz(checkOp)
}
