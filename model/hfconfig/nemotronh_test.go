package hfconfig

import (
	"math"
	"strings"
	"testing"
)

// nemotronHub is a nemotron_h config.json in the hub's spelling
// (hybrid_override_pattern, mamba_* aliases, Python's bare Infinity), with
// the geometry issue 19 gives for Nemotron-3-Nano-30B-A3B.
const nemotronHub = `{
  "architectures": ["NemotronHForCausalLM"], "model_type": "nemotron_h",
  "hidden_size": 2688, "num_hidden_layers": 52, "vocab_size": 131072,
  "hybrid_override_pattern": "MEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEMEM*EMEMEMEME",
  "num_attention_heads": 32, "num_key_value_heads": 2, "head_dim": 128,
  "mamba_num_heads": 64, "mamba_head_dim": 64, "n_groups": 8, "ssm_state_size": 128,
  "conv_kernel": 4, "expand": 2, "chunk_size": 128, "use_conv_bias": true, "mamba_proj_bias": false,
  "time_step_limit": [0.0, Infinity], "time_step_min": 0.001, "mamba_hidden_act": "silu",
  "mlp_hidden_act": "relu2", "n_routed_experts": 128, "num_experts_per_tok": 6,
  "moe_intermediate_size": 1856, "moe_shared_expert_intermediate_size": 3712,
  "routed_scaling_factor": 2.5, "norm_topk_prob": true, "n_group": 1, "topk_group": 1,
  "layer_norm_epsilon": 1e-05, "tie_word_embeddings": false, "eos_token_id": 2
}`

func TestNemotronH(t *testing.T) {
	c, err := Parse([]byte(nemotronHub))
	if err != nil {
		t.Fatal(err)
	}
	h := c.Hybrid
	if h == nil {
		t.Fatal("no Hybrid settings")
	}
	if c.NumLayers != 52 || h.Count(LayerMamba) != 23 || h.Count(LayerMoE) != 23 || h.Count(LayerAttention) != 6 ||
		h.MambaInner() != 4096 || h.ConvDim() != 4096+2*8*128 || h.InProjOut() != 4096+6144+64 ||
		h.ConvKernel != 4 || !h.ConvBias || h.ProjBias || h.TimeStepMin != 0.001 || !math.IsInf(h.TimeStepLimit[1], 1) ||
		h.SharedIntermediate != 3712 || c.RMSNormEps != 1e-5 || c.MoE.ScoringFunc != "sigmoid" || c.MoE.NumExperts != 128 ||
		c.MoE.NumExpertsPerTok != 6 || c.MoE.RoutedScalingFactor != 2.5 || !c.MoE.NormTopKProb || c.NumKVHeads != 2 ||
		c.HeadDim != 128 || c.EmbedName() != "backbone.embeddings.weight" || c.FinalNormName() != "backbone.norm_f.weight" ||
		c.LayerPrefix(3) != "backbone.layers.3." {
		t.Errorf("parsed %+v hybrid %+v", c, h)
	}
	for i, want := range []bool{false, true, false, true, false, false, true} {
		if c.IsMoELayer(i) != want {
			t.Errorf("IsMoELayer(%d) = %v", i, !want)
		}
	}
	if LayerIndex("backbone.layers.17.mixer.in_proj.weight") != 17 || LayerIndex("backbone.embeddings.weight") != -1 {
		t.Error("LayerIndex does not read backbone.layers.N")
	}
	if !c.SpareTensor("mtp.layers.0.eh_proj.weight") || c.SpareTensor("backbone.layers.0.norm.weight") {
		t.Error("SpareTensor: nemotron_h's mtp.* head should be spare, its layers not")
	}

	// transformers 5 saves layers_block_type (and may omit
	// num_hidden_layers and the mamba_* spellings).
	c2, err := Parse([]byte(`{"model_type":"nemotron_h","hidden_size":8,"num_attention_heads":2,"vocab_size":8,
		"layers_block_type":["mamba","moe","attention","mlp","linear_attention","full_attention"],
		"mamba_num_heads":4,"mamba_head_dim":2,"mamba_n_groups":2,"ssm_state_size":4,"mamba_d_conv":3,
		"n_routed_experts":2,"num_experts_per_tok":1,"moe_intermediate_size":4}`))
	if err != nil {
		t.Fatal(err)
	}
	if string(c2.Hybrid.Pattern) != "ME*-M*" || c2.NumLayers != 6 || c2.Hybrid.NGroups != 2 || c2.Hybrid.ConvKernel != 3 ||
		!c2.MoE.NormTopKProb || c2.MoE.NumSharedExperts != 1 || c2.IntermediateSize != 21504 || c2.RMSNormEps != 1e-5 {
		t.Errorf("layers_block_type config: %+v hybrid %+v", c2, c2.Hybrid)
	}
}

func TestNemotronHErrors(t *testing.T) {
	base := `"model_type":"nemotron_h","hidden_size":8,"num_attention_heads":2,"vocab_size":8,"n_routed_experts":2,"num_experts_per_tok":1,"moe_intermediate_size":4`
	for _, tc := range []struct{ json, want string }{
		{`{` + base + `}`, "neither hybrid_override_pattern nor layers_block_type"},
		{`{` + base + `,"hybrid_override_pattern":"MX"}`, `unknown layer kind 'X' at 1`},
		{`{` + base + `,"hybrid_override_pattern":""}`, "has 0 layers"},
		{`{` + base + `,"hybrid_override_pattern":"ME","num_hidden_layers":3}`, "num_hidden_layers 3 disagrees"},
		{`{` + base + `,"layers_block_type":["mamba","conv"]}`, `unknown layer type "conv"`},
		{`{` + base + `,"layers_block_type":["mamba"],"hybrid_override_pattern":"E"}`, "disagrees with layers_block_type"},
		{`{` + base + `,"hybrid_override_pattern":"M","mamba_num_heads":6,"n_groups":4}`, "n_groups 4 must divide mamba_num_heads 6"},
		{`{` + base + `,"hybrid_override_pattern":"M","ssm_state_size":0}`, "ssm_state_size must be in"},
		{`{` + base + `,"hybrid_override_pattern":"E","moe_latent_size":64}`, "moe_latent_size 64 is not supported"},
		{`{` + base + `,"hybrid_override_pattern":"M","time_step_limit":[0]}`, "time_step_limit: want 2 numbers"},
		{`{` + base + `,"hybrid_override_pattern":"M","time_step_limit":[0,"x"]}`, "time_step_limit[1]"},
		{`{` + base + `,"hybrid_override_pattern":"M","time_step_limit":[0,{"__float__":"NaN"}]}`, "time_step_limit[1]: want a number, got NaN"},
		{`{` + base + `,"hybrid_override_pattern":"M","time_step_limit":[0,{"__float__":"Infinity","x":1}]}`, "time_step_limit[1]"},
		{`{"model_type":"nemotron_h","hidden_size":8,"num_attention_heads":2,"vocab_size":8,"hybrid_override_pattern":"E"}`, "no n_routed_experts"},
	} {
		_, err := Parse([]byte(tc.json))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%s) = %v, want error containing %q", tc.json, err, tc.want)
		}
	}
}

// TestTimeStepLimitForms reads time_step_limit in the forms config.json
// files hold: numbers, Python's bare Infinity token, and transformers 5's
// {"__float__": "Infinity"}.
func TestTimeStepLimitForms(t *testing.T) {
	base := `"model_type":"nemotron_h","hidden_size":8,"num_attention_heads":2,"vocab_size":8,` +
		`"mamba_num_heads":4,"mamba_head_dim":2,"n_groups":2,"ssm_state_size":4,"hybrid_override_pattern":"M"`
	for _, tc := range []struct {
		limit string
		want  [2]float64
	}{
		{`[0.0, 5.5]`, [2]float64{0, 5.5}},
		{`[0.0, Infinity]`, [2]float64{0, math.Inf(1)}},
		{`[{"__float__": "-Infinity"}, {"__float__": "Infinity"}]`, [2]float64{math.Inf(-1), math.Inf(1)}},
		{`[0.1, {"__float__": 2.5}]`, [2]float64{0.1, 2.5}},
	} {
		c, err := Parse([]byte(`{` + base + `,"time_step_limit":` + tc.limit + `}`))
		if err != nil {
			t.Errorf("time_step_limit %s: %v", tc.limit, err)
			continue
		}
		if c.Hybrid.TimeStepLimit != tc.want {
			t.Errorf("time_step_limit %s = %v, want %v", tc.limit, c.Hybrid.TimeStepLimit, tc.want)
		}
	}
}

func TestSanitizeNonFinite(t *testing.T) {
	for in, want := range map[string]string{
		`[0.0, Infinity]`:         `[0.0, "Infinity"]`,
		`{"a":-Infinity,"b":NaN}`: `{"a":"-Infinity","b":"NaN"}`,
		`{"s":"Infinity \" NaN"}`: `{"s":"Infinity \" NaN"}`,
		`{"x": 1}`:                `{"x": 1}`,
		`["NaN\\", Infinity]`:     `["NaN\\", "Infinity"]`,
	} {
		if got := string(sanitizeNonFinite([]byte(in))); got != want {
			t.Errorf("sanitizeNonFinite(%s) = %s, want %s", in, got, want)
		}
	}
}
