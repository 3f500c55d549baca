package hfconfig

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Family is one architecture family marlin reads: a config.json model_type
// and what the rest of marlin does with it. Families is the one list of
// them; hfconfig's accepted model_type values, model/arch's Supported and
// export/llamacpp's ArchName derive from it, and internal/conformance
// checks that every family keeps its promises.
type Family struct {
	// ModelType is config.json's model_type.
	ModelType string
	// Doc names the models of the family, for messages and docs.
	Doc string
	// Forward is true when model/arch builds a forward pass (calibration,
	// perplexity, generation); false marks the family "export only": it
	// parses, quantizes weight by weight and exports, but nothing runs it.
	Forward bool
	// MoE is true when the config must declare routed experts
	// (num_experts, num_experts_per_tok, moe_intermediate_size; a Hybrid
	// family: when its layer pattern has MoE layers).
	MoE bool
	// SparseStep is true when the MoE layers follow decoder_sparse_step
	// and mlp_only_layers (qwen3_moe); otherwise first_k_dense_replace and
	// moe_layer_freq (GLM, DeepSeek), unless mlp_layer_types lists them.
	SparseStep bool
	// MLA is true for multi-head latent attention (kv_lora_rank,
	// qk_nope_head_dim, ... are required).
	MLA bool
	// Hybrid is true for nemotron_h's layer pattern
	// (hybrid_override_pattern or layers_block_type, Mamba-2 settings).
	Hybrid bool
	// LlamaCpp is llama.cpp's general.architecture for the family.
	LlamaCpp string
	// LlamaCppMoE, when set, replaces LlamaCpp for a config with routed
	// experts (nemotron_h: "nemotron_h_moe").
	LlamaCppMoE string
	// TensorRoot is the first element of the checkpoint's tensor names
	// ("model", nemotron_h: "backbone"); model/tensorname must accept it
	// as a decoder root.
	TensorRoot string
	// Embed and FinalNorm name the token embeddings and the final RMSNorm
	// under TensorRoot ("" means "embed_tokens" and "norm"; nemotron_h:
	// "embeddings", "norm_f").
	Embed, FinalNorm string
	// Synth is the marlin-synth -arch preset writing a full-size
	// checkpoint of the family ("" for none).
	Synth string
	// Nano is the directory of a small trained checkpoint of the family
	// under the shared test data's models/ ("" for none).
	Nano string
}

// families is the architecture registry, sorted by ModelType.
var families = []Family{
	{ModelType: "deepseek_v3", Doc: "DeepSeek-V3 (MLA + routed experts; glm4_moe_lite's field names)",
		MoE: true, MLA: true, LlamaCpp: "deepseek2", TensorRoot: "model"},
	{ModelType: "glm4_moe_lite", Doc: "GLM-4.7-Flash (MLA + routed and shared experts)", Forward: true,
		MoE: true, MLA: true, LlamaCpp: "deepseek2", TensorRoot: "model", Synth: "glm47", Nano: "glm47-nano"},
	{ModelType: "nemotron_h", Doc: "Nemotron-3-Nano (Mamba-2 / attention / MoE hybrid)", Forward: true,
		MoE: true, Hybrid: true, LlamaCpp: "nemotron_h", LlamaCppMoE: "nemotron_h_moe", TensorRoot: "backbone", Embed: "embeddings", FinalNorm: "norm_f", Synth: "nemotron3-nano"},
	{ModelType: "qwen3", Doc: "Qwen3 (dense, q/k RMSNorm)", Forward: true,
		LlamaCpp: "qwen3", TensorRoot: "model", Nano: "qwen3-nano"},
	{ModelType: "qwen3_moe", Doc: "Qwen3-MoE (routed experts)", Forward: true,
		MoE: true, SparseStep: true, LlamaCpp: "qwen3moe", TensorRoot: "model", Nano: "qwen3moe-nano"},
}

// Families returns the architecture registry, sorted by model_type.
func Families() []Family { return slices.Clone(families) }

// FamilyOf returns the family of a model_type.
func FamilyOf(modelType string) (Family, bool) {
	i := slices.IndexFunc(families, func(f Family) bool { return f.ModelType == modelType })
	if i < 0 {
		return Family{}, false
	}
	return families[i], true
}

// Supported returns the accepted model_type values, sorted.
func Supported() []string { return modelTypes(func(Family) bool { return true }) }

// WithForward returns the model_type values model/arch builds a forward
// pass for, sorted.
func WithForward() []string { return modelTypes(func(f Family) bool { return f.Forward }) }

func modelTypes(keep func(Family) bool) []string {
	var out []string
	for _, f := range families {
		if keep(f) {
			out = append(out, f.ModelType)
		}
	}
	return out
}

// Family returns the registry entry of c's model_type (Parse accepts no
// other).
func (c *Config) Family() Family {
	f, _ := FamilyOf(c.ModelType)
	return f
}

// LlamaCppArch returns llama.cpp's general.architecture for c.
func (c *Config) LlamaCppArch() (string, error) {
	f, ok := FamilyOf(c.ModelType)
	if !ok || f.LlamaCpp == "" {
		return "", fmt.Errorf("model_type %q has no llama.cpp mapping (have %s)", c.ModelType, strings.Join(modelTypes(func(f Family) bool { return f.LlamaCpp != "" }), ", "))
	}
	moe := c.MoE.NumExperts > 0
	if c.Hybrid != nil {
		moe = c.Hybrid.Count(LayerMoE) > 0
	}
	if f.LlamaCppMoE != "" && moe {
		return f.LlamaCppMoE, nil
	}
	return f.LlamaCpp, nil
}

// tensorNames returns the family's tensor root and the names of its
// embeddings and final norm under it (Llama's, for a config Parse did not
// produce).
func (c *Config) tensorNames() (root, embed, norm string) {
	f, _ := FamilyOf(c.ModelType)
	return cmp.Or(f.TensorRoot, "model"), cmp.Or(f.Embed, "embed_tokens"), cmp.Or(f.FinalNorm, "norm")
}
