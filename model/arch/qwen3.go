package arch

import (
	"fmt"

	"github.com/marlin-llm/marlin/model/hfconfig"
)

// qwen3Attention builds the GQA attention of layer l (Qwen3, Qwen3-MoE).
func qwen3Attention(cfg *hfconfig.Config, w *weights, l int) *GQAttention {
	p := fmt.Sprintf("model.layers.%d.self_attn.", l)
	H, KV, D, Hd := cfg.NumHeads, cfg.NumKVHeads, cfg.HeadDim, cfg.HiddenSize
	a := &GQAttention{
		q:     w.proj(p+"q_proj", l, -1, H*D, Hd),
		k:     w.proj(p+"k_proj", l, -1, KV*D, Hd),
		v:     w.proj(p+"v_proj", l, -1, KV*D, Hd),
		o:     w.proj(p+"o_proj", l, -1, Hd, H*D),
		qNorm: w.norm(p+"q_norm.weight", D, cfg.RMSNormEps),
		kNorm: w.norm(p+"k_norm.weight", D, cfg.RMSNormEps),
		heads: H, kvHeads: KV, hd: D,
	}
	if cfg.AttentionBias {
		w.fail(fmt.Errorf("attention_bias is not supported for %s", cfg.ModelType))
	}
	shareInput(p+"input", a.q, a.k, a.v)
	return a
}

// mlp builds a SwiGLU block whose projections are prefix+"{gate,up,down}_proj".
func mlp(w *weights, prefix string, l, expert, hidden, inter int) *MLP {
	m := &MLP{
		gate: w.proj(prefix+"gate_proj", l, expert, inter, hidden),
		up:   w.proj(prefix+"up_proj", l, expert, inter, hidden),
		down: w.proj(prefix+"down_proj", l, expert, hidden, inter),
	}
	shareInput(prefix+"input", m.gate, m.up)
	return m
}

func decoderNorms(cfg *hfconfig.Config, w *weights, l int) (in, post *RMSNorm) {
	p := fmt.Sprintf("model.layers.%d.", l)
	return w.norm(p+"input_layernorm.weight", cfg.HiddenSize, cfg.RMSNormEps),
		w.norm(p+"post_attention_layernorm.weight", cfg.HiddenSize, cfg.RMSNormEps)
}

// buildQwen3 builds decoder layer l of Qwen3ForCausalLM: GQA with q/k
// RMSNorm and RoPE, SwiGLU MLP (embeddings optionally tied).
func buildQwen3(cfg *hfconfig.Config, w *weights, l int) (*DecoderLayer, error) {
	in, post := decoderNorms(cfg, w, l)
	return &DecoderLayer{
		index: l, inputNorm: in, postNorm: post,
		attn: qwen3Attention(cfg, w, l),
		mlp:  mlp(w, fmt.Sprintf("model.layers.%d.mlp.", l), l, -1, cfg.HiddenSize, cfg.IntermediateSize),
	}, nil
}
