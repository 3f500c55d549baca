package synth

import (
	"fmt"
	"strconv"
)

// nemotron3NanoPattern is hybrid_override_pattern of
// nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B: M Mamba-2, E MoE, * attention.
const nemotron3NanoPattern = "MEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEMEM*EMEMEMEME"

// Nemotron3Nano returns the config.json of NVIDIA-Nemotron-3-Nano-30B-A3B
// (nemotron_h: Mamba-2 + GQA attention + MoE hybrid), with the hidden,
// expert and vocabulary widths divided by widthDiv and the depth cut to the
// first layers of its pattern (0 keeps all 52; the first 6 already hold
// every layer kind). widthDiv 1 gives the real shapes. Mamba heads, head
// dims, groups and state size are kept (they set the scan's shapes).
func Nemotron3Nano(widthDiv, layers int) map[string]any {
	if widthDiv < 1 {
		widthDiv = 1
	}
	pattern := nemotron3NanoPattern
	if layers > 0 && layers < len(pattern) {
		pattern = pattern[:layers]
	}
	return map[string]any{
		"architectures":                       []string{"NemotronHForCausalLM"},
		"model_type":                          "nemotron_h",
		"hidden_size":                         2688 / widthDiv,
		"num_hidden_layers":                   len(pattern),
		"hybrid_override_pattern":             pattern,
		"vocab_size":                          131072 / widthDiv,
		"num_attention_heads":                 32,
		"num_key_value_heads":                 2,
		"head_dim":                            128,
		"mamba_num_heads":                     64,
		"mamba_head_dim":                      64,
		"n_groups":                            8,
		"ssm_state_size":                      128,
		"conv_kernel":                         4,
		"expand":                              2,
		"chunk_size":                          128,
		"use_conv_bias":                       true,
		"mamba_proj_bias":                     false,
		"use_bias":                            false,
		"mamba_hidden_act":                    "silu",
		"mlp_hidden_act":                      "relu2",
		"time_step_min":                       0.001,
		"n_routed_experts":                    128,
		"num_experts_per_tok":                 6,
		"moe_intermediate_size":               1856 / widthDiv,
		"moe_shared_expert_intermediate_size": 3712 / widthDiv,
		"n_shared_experts":                    1,
		"routed_scaling_factor":               2.5,
		"norm_topk_prob":                      true,
		"n_group":                             1,
		"topk_group":                          1,
		"layer_norm_epsilon":                  1e-5,
		"max_position_embeddings":             262144,
		"tie_word_embeddings":                 false,
		"torch_dtype":                         "bfloat16",
	}
}

// NemotronHTensors lists the tensors of a nemotron_h checkpoint described
// by cfg (as Nemotron3Nano returns it, or a trained model's config.json),
// named as on the hub: backbone.*, one 2-D tensor per expert projection.
func NemotronHTensors(cfg map[string]any) ([]Tensor, error) {
	var err error
	val := func(k string, def int) int {
		switch v := cfg[k].(type) {
		case int:
			return v
		case float64:
			return int(v)
		case nil:
			if def > 0 {
				return def
			}
		}
		if err == nil {
			err = fmt.Errorf("synth: config field %q missing or not a number", k)
		}
		return 0
	}
	pattern, _ := cfg["hybrid_override_pattern"].(string)
	if pattern == "" {
		return nil, fmt.Errorf("synth: config has no hybrid_override_pattern")
	}
	h, vocab := val("hidden_size", 0), val("vocab_size", 0)
	heads, kv, hd := val("num_attention_heads", 0), val("num_key_value_heads", 0), val("head_dim", 0)
	mh, mhd, groups, state, conv := val("mamba_num_heads", 0), val("mamba_head_dim", 0), val("n_groups", 0), val("ssm_state_size", 0), val("conv_kernel", 4)
	experts, moe, shared := val("n_routed_experts", 0), val("moe_intermediate_size", 0), val("moe_shared_expert_intermediate_size", 0)
	if err != nil {
		return nil, err
	}
	inner := mh * mhd
	convDim := inner + 2*groups*state
	std := 0.02
	var ts []Tensor
	lin := func(name string, out, in int) { ts = append(ts, Tensor{Name: name, Shape: []int{out, in}, Std: std}) }
	vec := func(name string, n int, s float64) { ts = append(ts, Tensor{Name: name, Shape: []int{n}, Std: s}) }
	norm := func(name string, n int) { ts = append(ts, Tensor{Name: name, Shape: []int{n}, Std: 0.05, Norm: true}) }
	ts = append(ts, Tensor{Name: "backbone.embeddings.weight", Shape: []int{vocab, h}, Std: std})
	for l := 0; l < len(pattern); l++ {
		p := "backbone.layers." + strconv.Itoa(l) + "."
		norm(p+"norm.weight", h)
		m := p + "mixer."
		switch pattern[l] {
		case 'M':
			lin(m+"in_proj.weight", inner+convDim+mh, h)
			ts = append(ts, Tensor{Name: m + "conv1d.weight", Shape: []int{convDim, 1, conv}, Std: 0.2})
			vec(m+"conv1d.bias", convDim, 0.02)
			vec(m+"A_log", mh, 0.5)
			vec(m+"D", mh, 0.5)
			vec(m+"dt_bias", mh, 0.5)
			norm(m+"norm.weight", inner)
			lin(m+"out_proj.weight", h, inner)
		case '*':
			lin(m+"q_proj.weight", heads*hd, h)
			lin(m+"k_proj.weight", kv*hd, h)
			lin(m+"v_proj.weight", kv*hd, h)
			lin(m+"o_proj.weight", h, heads*hd)
		case 'E':
			lin(m+"gate.weight", experts, h)
			vec(m+"gate.e_score_correction_bias", experts, 0.01)
			for e := 0; e < experts; e++ {
				ep := m + "experts." + strconv.Itoa(e) + "."
				lin(ep+"up_proj.weight", moe, h)
				lin(ep+"down_proj.weight", h, moe)
			}
			lin(m+"shared_experts.up_proj.weight", shared, h)
			lin(m+"shared_experts.down_proj.weight", h, shared)
		case '-':
			ffn := val("intermediate_size", 0)
			lin(m+"up_proj.weight", ffn, h)
			lin(m+"down_proj.weight", h, ffn)
		default:
			return nil, fmt.Errorf("synth: layer kind %q at %d not supported", pattern[l], l)
		}
	}
	if err != nil {
		return nil, err
	}
	norm("backbone.norm_f.weight", h)
	ts = append(ts, Tensor{Name: "lm_head.weight", Shape: []int{vocab, h}, Std: std})
	return ts, nil
}
