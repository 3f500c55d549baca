package llamacpp

import (
	"fmt"
	"slices"

	"github.com/marlin-llm/marlin/model/gguf"
	"github.com/marlin-llm/marlin/model/hfconfig"
)

// nemotronSimple maps nemotron_h per-layer suffixes (after
// "backbone.layers.N.") to llama.cpp's nemotron_h_moe names, as
// llama.cpp's converter does. Mamba-2's A, D and dt_bias and its conv and
// norm are reshaped (nemotronTensor).
var nemotronSimple = map[string]nameRole{
	"norm.weight":                           {"attn_norm.weight", RoleNorm},
	"mixer.in_proj.weight":                  {"ssm_in.weight", RoleOther},
	"mixer.out_proj.weight":                 {"ssm_out.weight", RoleOther},
	"mixer.conv1d.weight":                   {"ssm_conv1d.weight", RoleNorm},
	"mixer.conv1d.bias":                     {"ssm_conv1d.bias", RoleNorm},
	"mixer.dt_bias":                         {"ssm_dt.bias", RoleNorm},
	"mixer.A_log":                           {"ssm_a", RoleNorm},
	"mixer.D":                               {"ssm_d", RoleNorm},
	"mixer.norm.weight":                     {"ssm_norm.weight", RoleNorm},
	"mixer.q_proj.weight":                   {"attn_q.weight", RoleAttnQ},
	"mixer.k_proj.weight":                   {"attn_k.weight", RoleAttnK},
	"mixer.v_proj.weight":                   {"attn_v.weight", RoleAttnV},
	"mixer.o_proj.weight":                   {"attn_output.weight", RoleAttnOut},
	"mixer.gate.weight":                     {"ffn_gate_inp.weight", RoleRouter},
	"mixer.gate.e_score_correction_bias":    {"exp_probs_b.bias", RoleRouter},
	"mixer.shared_experts.up_proj.weight":   {"ffn_up_shexp.weight", RoleFFNGateUp},
	"mixer.shared_experts.down_proj.weight": {"ffn_down_shexp.weight", RoleFFNDown},
	"mixer.up_proj.weight":                  {"ffn_up.weight", RoleFFNGateUp},
	"mixer.down_proj.weight":                {"ffn_down.weight", RoleFFNDown},
}

// nemotronTensor plans one non-expert tensor of nemotron_h layer layer.
// llama.cpp wants the conv taps as [conv_dim, kernel] (the middle 1
// squeezed), A = -exp(A_log) and D as [heads, 1], and the gated norm's
// weight as [groups, inner/groups]: reshapes of the same element order.
func nemotronTensor(cfg *hfconfig.Config, name, suffix, blk string, layer int, shp []int) (*Tensor, error) {
	s, ok := nemotronSimple[suffix]
	if !ok {
		return nil, fmt.Errorf("llamacpp: no llama.cpp name for tensor %q", name)
	}
	hy := cfg.Hybrid
	t := &Tensor{Name: blk + s.name, Dims: reverse(shp), Role: s.role, Layer: layer, Sources: []string{name}}
	n := 1
	for _, d := range shp {
		n *= d
	}
	reshape := func(dims ...int) error {
		m := 1
		for _, d := range dims {
			m *= d
		}
		if m != n {
			return fmt.Errorf("llamacpp: %s: shape %v does not fit llama.cpp's %v", name, shp, dims)
		}
		t.srcShape, t.Dims = slices.Clone(shp), dims
		return nil
	}
	var err error
	switch suffix {
	case "mixer.conv1d.weight":
		err = reshape(hy.ConvKernel, hy.ConvDim())
	case "mixer.A_log":
		err = reshape(1, hy.MambaHeads)
		t.op = opNegExp
	case "mixer.D":
		err = reshape(1, hy.MambaHeads)
	case "mixer.norm.weight":
		err = reshape(hy.MambaInner()/hy.NGroups, hy.NGroups)
	}
	if err != nil {
		return nil, err
	}
	if len(shp) == 1 && t.Role != RoleRouter {
		t.Role = RoleNorm
	}
	return t, nil
}

// nemotronKVs returns the nemotron_h_moe hyperparameter keys llama.cpp
// reads. A layer is recurrent (Mamba-2) where both its head_count_kv and
// feed_forward_length entries are 0, so both are per-layer arrays.
func nemotronKVs(cfg *hfconfig.Config, arch string) ([]gguf.KV, error) {
	hy := cfg.Hybrid
	k := func(s string) string { return arch + "." + s }
	kvHeads := make([]uint32, cfg.NumLayers)
	ffn := make([]uint32, cfg.NumLayers)
	for i, c := range hy.Pattern {
		switch c {
		case hfconfig.LayerAttention:
			kvHeads[i] = uint32(cfg.NumKVHeads)
		case hfconfig.LayerMoE:
			ffn[i] = uint32(cfg.MoE.IntermediateSize)
		case hfconfig.LayerMLP:
			ffn[i] = uint32(cfg.IntermediateSize)
		}
	}
	arr := func(key string, v []uint32) gguf.KV {
		return gguf.KV{Key: key, Value: gguf.Value{Type: gguf.ValueArray, Elem: gguf.ValueUint32, V: v}}
	}
	kv := []gguf.KV{
		u32(k("block_count"), uint32(cfg.NumLayers)),
		u32(k("context_length"), uint32(cfg.MaxPositionEmbeddings)),
		u32(k("embedding_length"), uint32(cfg.HiddenSize)),
		arr(k("feed_forward_length"), ffn),
		u32(k("attention.head_count"), uint32(cfg.NumHeads)),
		arr(k("attention.head_count_kv"), kvHeads),
		f32(k("attention.layer_norm_rms_epsilon"), float32(cfg.RMSNormEps)),
		u32(k("attention.key_length"), uint32(cfg.HeadDim)),
		u32(k("attention.value_length"), uint32(cfg.HeadDim)),
		u32(k("ssm.conv_kernel"), uint32(hy.ConvKernel)),
		u32(k("ssm.state_size"), uint32(hy.StateSize)),
		u32(k("ssm.group_count"), uint32(hy.NGroups)),
		u32(k("ssm.inner_size"), uint32(hy.MambaInner())),
		u32(k("ssm.time_step_rank"), uint32(hy.MambaHeads)),
		u32(k("vocab_size"), uint32(cfg.VocabSize)),
	}
	if m := cfg.MoE; m.NumExperts > 0 {
		kv = append(kv,
			u32(k("expert_count"), uint32(m.NumExperts)),
			u32(k("expert_used_count"), uint32(m.NumExpertsPerTok)),
			u32(k("expert_feed_forward_length"), uint32(m.IntermediateSize)),
			u32(k("expert_shared_feed_forward_length"), uint32(hy.SharedIntermediate)),
			u32(k("expert_shared_count"), uint32(max(m.NumSharedExperts, 1))),
			boolean(k("expert_weights_norm"), m.NormTopKProb),
			f32(k("expert_weights_scale"), float32(m.RoutedScalingFactor)),
			u32(k("expert_group_count"), uint32(max(m.NGroup, 1))),
			u32(k("expert_gating_func"), 2)) // sigmoid
	}
	return kv, nil
}
