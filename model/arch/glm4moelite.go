package arch

import (
	"fmt"

	"github.com/marlin-llm/marlin/kernels"
	"github.com/marlin-llm/marlin/model/hfconfig"
)

// buildGlm4MoeLite builds Glm4MoeLiteForCausalLM (GLM-4.7-Flash), which is
// DeepSeek-V3 shaped:
//   - MLA attention (q_a/q_b low-rank queries with q_a_layernorm, a
//     kv_lora_rank latent with kv_a_layernorm expanded by kv_b_proj, and a
//     decoupled qk_rope_head_dim RoPE key shared by all heads). With
//     rope_interleave, transformers rotates adjacent pairs (2i, 2i+1) and
//     concatenates evens then odds; rotating the pairs in place gives the
//     same dot products, as q and k are permuted alike. Scaling is
//     qk_head_dim^-0.5 (yarn's mscale is not applied: only default RoPE is
//     supported).
//   - MoE layers from mlp_layer_types / first_k_dense_replace, with sigmoid
//     "noaux_tc" routing (see sigmoidRouter) and n_shared_experts shared
//     experts of n_shared_experts×moe_intermediate_size.
//
// It builds decoder layer l.
func buildGlm4MoeLite(cfg *hfconfig.Config, w *weights, l int) (*DecoderLayer, error) {
	ml := cfg.MLA
	if ml == nil {
		return nil, fmt.Errorf("config has no MLA settings")
	}
	m := cfg.MoE
	if m.NumExperts > 0 && m.ScoringFunc != "sigmoid" {
		return nil, fmt.Errorf("scoring_func %q not supported for %s (want sigmoid)", m.ScoringFunc, cfg.ModelType)
	}
	if m.NGroup > 1 && (m.NumExperts%m.NGroup != 0 || m.TopKGroup < 1 || m.TopKGroup > m.NGroup || m.NumExperts/m.NGroup < 2) {
		return nil, fmt.Errorf("n_group %d / topk_group %d do not fit %d experts", m.NGroup, m.TopKGroup, m.NumExperts)
	}
	style := kernels.RoPENeoX
	if cfg.Rope.Interleave {
		style = kernels.RoPEInterleaved
	}
	H, Hd := cfg.NumHeads, cfg.HiddenSize
	qk := ml.QKNopeHeadDim + ml.QKRopeHeadDim
	in, post := decoderNorms(cfg, w, l)
	p := fmt.Sprintf("model.layers.%d.self_attn.", l)
	a := &MLAttention{
		kvA:     w.proj(p+"kv_a_proj_with_mqa", l, -1, ml.KVLoRARank+ml.QKRopeHeadDim, Hd),
		kvANorm: w.norm(p+"kv_a_layernorm.weight", ml.KVLoRARank, cfg.RMSNormEps),
		kvB:     w.proj(p+"kv_b_proj", l, -1, H*(ml.QKNopeHeadDim+ml.VHeadDim), ml.KVLoRARank),
		o:       w.proj(p+"o_proj", l, -1, Hd, H*ml.VHeadDim),
		heads:   H, nope: ml.QKNopeHeadDim, rope: ml.QKRopeHeadDim, vDim: ml.VHeadDim,
		kvRank: ml.KVLoRARank, style: style,
	}
	if ml.QLoRARank > 0 {
		a.qA = w.proj(p+"q_a_proj", l, -1, ml.QLoRARank, Hd)
		a.qANorm = w.norm(p+"q_a_layernorm.weight", ml.QLoRARank, cfg.RMSNormEps)
		a.qB = w.proj(p+"q_b_proj", l, -1, H*qk, ml.QLoRARank)
	} else {
		a.q = w.proj(p+"q_proj", l, -1, H*qk, Hd)
	}
	shareInput(p+"input", a.qA, a.q, a.kvA)
	if cfg.AttentionBias {
		w.fail(fmt.Errorf("attention_bias is not supported for %s", cfg.ModelType))
	}
	d := &DecoderLayer{index: l, inputNorm: in, postNorm: post, attn: a}
	mp := fmt.Sprintf("model.layers.%d.mlp.", l)
	if cfg.IsMoELayer(l) {
		moe := sigmoidMoE(w, mp, l, Hd, m)
		for e := 0; e < m.NumExperts; e++ {
			moe.experts = append(moe.experts, mlp(w, fmt.Sprintf("%sexperts.%d.", mp, e), l, e, Hd, m.IntermediateSize))
		}
		shareInput(mp+"input", moe.gate)
		if m.NumSharedExperts > 0 {
			moe.shared = mlp(w, mp+"shared_experts.", l, -1, Hd, m.IntermediateSize*m.NumSharedExperts)
			shareInput(mp+"input", moe.shared.gate, moe.shared.up)
		}
		d.mlp = moe
	} else {
		d.mlp = mlp(w, mp, l, -1, Hd, cfg.IntermediateSize)
	}
	return d, nil
}

// sigmoidMoE is an MoE block under prefix mp (gate, gate.e_score_correction_bias)
// with DeepSeek-V3-style sigmoid routing (GLM-4.7-Flash, NemotronH); the
// caller adds the experts.
func sigmoidMoE(w *weights, mp string, l, hd int, m hfconfig.MoE) *MoE {
	r := &sigmoidRouter{
		experts: m.NumExperts, k: m.NumExpertsPerTok, nGroup: max(m.NGroup, 1), topKGroup: max(m.TopKGroup, 1),
		norm: m.NormTopKProb, scale: float32(m.RoutedScalingFactor),
		bias: w.get(mp+"gate.e_score_correction_bias", m.NumExperts),
	}
	return &MoE{gate: w.proj(mp+"gate", l, -1, m.NumExperts, hd), router: r, k: m.NumExpertsPerTok}
}
