package calib

import (
	"regexp"
	"testing"
)

// The regular expressions role used before model/tensorname, kept as the
// reference it must agree with on the module names models have.
var (
	oldLayerPrefix = regexp.MustCompile(`^(?:model|backbone)\.layers\.\d+\.`)
	oldExpertIdx   = regexp.MustCompile(`\.experts\.\d+\.`)
	oldMoEIn       = regexp.MustCompile(`^(?:mlp|mixer)\.(gate|shared_experts?\.(gate|up)_proj|experts\.\*\.(gate|up)_proj)$`)
	oldMoEDown     = regexp.MustCompile(`^(?:mlp|mixer)\.(shared_experts?|experts\.\*)\.down_proj$`)
	oldExpert      = regexp.MustCompile(`^(.*\.(?:mlp|mixer))\.experts\.(\d+)\.(gate_proj|up_proj|down_proj)$`)
	oldRouter      = regexp.MustCompile(`\.(?:mlp|mixer)\.gate$`)
)

func oldRole(name string) string {
	r := oldLayerPrefix.ReplaceAllString(name, "")
	r = oldExpertIdx.ReplaceAllString(r, ".experts.*.")
	switch {
	case oldMoEIn.MatchString(r):
		return "mlp.moe.in"
	case oldMoEDown.MatchString(r):
		return "mlp.moe.down"
	}
	return r
}

func TestRoleAgainstRegexps(t *testing.T) {
	for _, n := range []string{
		"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.kv_a_proj_with_mqa", "model.layers.3.self_attn.o_proj",
		"model.layers.0.mlp.gate_proj", "model.layers.0.mlp.down_proj", "model.layers.1.mlp.gate",
		"model.layers.1.mlp.experts.7.gate_proj", "model.layers.1.mlp.experts.7.up_proj", "model.layers.1.mlp.experts.12.down_proj",
		"model.layers.1.mlp.shared_experts.gate_proj", "model.layers.1.mlp.shared_expert.down_proj",
		"backbone.layers.0.mixer.in_proj", "backbone.layers.0.mixer.out_proj", "backbone.layers.1.mixer.gate",
		"backbone.layers.1.mixer.experts.3.up_proj", "backbone.layers.1.mixer.experts.3.down_proj",
		"backbone.layers.1.mixer.shared_experts.up_proj", "backbone.layers.1.mixer.shared_experts.down_proj",
		"backbone.layers.2.mixer.q_proj", "model.layers.007.mlp.experts.007.up_proj",
	} {
		if got, want := role(n), oldRole(n); got != want {
			t.Errorf("role(%q) = %q, regexps %q", n, got, want)
		}
		if got, want := expertProj(n), oldExpert.MatchString(n); got != want {
			t.Errorf("expertProj(%q) = %v, regexp %v", n, got, want)
		}
		if got, want := wantWithRouters(func(string) bool { return false })(n), oldRouter.MatchString(n); got != want {
			t.Errorf("router(%q) = %v, regexp %v", n, got, want)
		}
	}
}
