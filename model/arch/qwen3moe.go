package arch

import (
	"fmt"

	"github.com/marlin-llm/marlin/model/hfconfig"
)

// buildQwen3MoE builds decoder layer l of Qwen3MoeForCausalLM: Qwen3
// attention, and on MoE layers a softmax router (top-k, optionally
// renormalised) over SwiGLU experts stored one 2-D tensor per projection;
// other layers (mlp_only_layers, decoder_sparse_step) use a dense MLP.
func buildQwen3MoE(cfg *hfconfig.Config, w *weights, l int) (*DecoderLayer, error) {
	m := cfg.MoE
	in, post := decoderNorms(cfg, w, l)
	d := &DecoderLayer{index: l, inputNorm: in, postNorm: post, attn: qwen3Attention(cfg, w, l)}
	p := fmt.Sprintf("model.layers.%d.mlp.", l)
	if cfg.IsMoELayer(l) {
		moe := &MoE{
			gate:   w.proj(p+"gate", l, -1, m.NumExperts, cfg.HiddenSize),
			router: &softmaxRouter{experts: m.NumExperts, k: m.NumExpertsPerTok, norm: m.NormTopKProb},
			k:      m.NumExpertsPerTok,
		}
		for e := 0; e < m.NumExperts; e++ {
			moe.experts = append(moe.experts, mlp(w, fmt.Sprintf("%sexperts.%d.", p, e), l, e, cfg.HiddenSize, m.IntermediateSize))
		}
		shareInput(p+"input", moe.gate)
		d.mlp = moe
	} else {
		d.mlp = mlp(w, p, l, -1, cfg.HiddenSize, cfg.IntermediateSize)
	}
	return d, nil
}
