package hfconfig

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
)

// Layer kinds of a hybrid (nemotron_h) model, as hybrid_override_pattern
// spells them.
const (
	LayerMamba     byte = 'M' // Mamba-2 mixer
	LayerMoE       byte = 'E' // routed experts + shared expert
	LayerAttention byte = '*' // GQA attention (no positional encoding)
	LayerMLP       byte = '-' // dense MLP
)

// Hybrid is the nemotron_h configuration beyond the common fields: which
// mixer each layer runs and the Mamba-2 settings. Each nemotron_h layer is
// one pre-norm residual block (norm, then one mixer).
type Hybrid struct {
	// Pattern has one byte per layer: LayerMamba, LayerMoE,
	// LayerAttention or LayerMLP (hybrid_override_pattern, or
	// layers_block_type as transformers 5 saves it).
	Pattern []byte

	MambaHeads   int // mamba_num_heads
	MambaHeadDim int // mamba_head_dim
	NGroups      int // n_groups (mamba_n_groups): B/C groups, heads/NGroups heads share one
	StateSize    int // ssm_state_size
	ConvKernel   int // conv_kernel (mamba_d_conv)
	ChunkSize    int // chunk_size (mamba_chunk_size): the reference's SSD chunking; results do not depend on it
	ConvBias     bool
	ProjBias     bool    // mamba_proj_bias / use_bias: biases on in_proj and out_proj
	TimeStepMin  float64 // time_step_min: transformers' torch path clamps softplus(dt+dt_bias) from below to it
	// TimeStepLimit is time_step_limit (the CUDA kernels' clamp range).
	TimeStepLimit [2]float64

	MambaAct string // mamba_hidden_act ("silu")
	MLPAct   string // mlp_hidden_act ("relu2")
	// SharedIntermediate is moe_shared_expert_intermediate_size.
	SharedIntermediate int
}

// MambaInner is the Mamba-2 inner width (heads × head dim).
func (h *Hybrid) MambaInner() int { return h.MambaHeads * h.MambaHeadDim }

// ConvDim is the width the depthwise conv1d runs over: x, B and C.
func (h *Hybrid) ConvDim() int { return h.MambaInner() + 2*h.NGroups*h.StateSize }

// InProjOut is in_proj's output width: gate z, x/B/C and one dt per head.
func (h *Hybrid) InProjOut() int { return h.MambaInner() + h.ConvDim() + h.MambaHeads }

// Count returns how many layers are of kind k.
func (h *Hybrid) Count(k byte) int { return strings.Count(string(h.Pattern), string(k)) }

// hybridRaw mirrors nemotron_h's config.json fields (hub names and the
// aliases transformers accepts).
type hybridRaw struct {
	Pattern         *string  `json:"hybrid_override_pattern"`
	LayersBlockType []string `json:"layers_block_type"`

	MambaNumHeads  *int     `json:"mamba_num_heads"`
	MambaHeadDim   *int     `json:"mamba_head_dim"`
	NGroups        *int     `json:"n_groups"`
	MambaNGroups   *int     `json:"mamba_n_groups"`
	SSMStateSize   *int     `json:"ssm_state_size"`
	ConvKernel     *int     `json:"conv_kernel"`
	MambaDConv     *int     `json:"mamba_d_conv"`
	ChunkSize      *int     `json:"chunk_size"`
	MambaChunkSize *int     `json:"mamba_chunk_size"`
	UseConvBias    *bool    `json:"use_conv_bias"`
	MambaConvBias  *bool    `json:"mamba_conv_bias"`
	MambaProjBias  *bool    `json:"mamba_proj_bias"`
	UseBias        *bool    `json:"use_bias"`
	TimeStepMin    *float64 `json:"time_step_min"`
	MambaDtMin     *float64 `json:"mamba_dt_min"`
	TimeStepLimit  []any    `json:"time_step_limit"`
	MambaDtLimit   []any    `json:"mamba_dt_limit"`
	MambaHiddenAct string   `json:"mamba_hidden_act"`
	MLPHiddenAct   string   `json:"mlp_hidden_act"`
	MLPBias        bool     `json:"mlp_bias"`
	LayerNormEps   *float64 `json:"layer_norm_epsilon"`

	SharedIntermediate *int  `json:"moe_shared_expert_intermediate_size"`
	MoELatentSize      *int  `json:"moe_latent_size"`
	NormTopKProb       *bool `json:"norm_topk_prob"`
	NSharedExperts     *int  `json:"n_shared_experts"`
}

// layerKinds maps layers_block_type names (transformers 5 and the legacy
// ones) to pattern bytes.
var layerKinds = map[string]byte{
	"mamba": LayerMamba, "linear_attention": LayerMamba,
	"moe":       LayerMoE,
	"attention": LayerAttention, "full_attention": LayerAttention,
	"mlp": LayerMLP,
}

func firstInt(def int, ps ...*int) int {
	for _, p := range ps {
		if p != nil {
			return *p
		}
	}
	return def
}

func firstBool(def bool, ps ...*bool) bool {
	for _, p := range ps {
		if p != nil {
			return *p
		}
	}
	return def
}

// limitValue reads one time_step_limit entry: a number, the string
// "Infinity" / "-Infinity" that sanitizeNonFinite made of a bare token, or
// transformers 5's encoding of a non-finite float, {"__float__": "Infinity"}.
func limitValue(v any) (float64, error) {
	if m, ok := v.(map[string]any); ok && len(m) == 1 {
		if f, ok := m["__float__"]; ok {
			v = f
		}
	}
	switch x := v.(type) {
	case float64:
		return x, nil
	case string:
		switch x {
		case "Infinity", "inf":
			return math.Inf(1), nil
		case "-Infinity", "-inf":
			return math.Inf(-1), nil
		case "NaN", "nan":
			return 0, fmt.Errorf("want a number, got NaN")
		}
	}
	return 0, fmt.Errorf("want a number, got %v", v)
}

// parseHybrid fills c.Hybrid (and the shared fields nemotron_h names
// differently) from config.json. It runs before the common checks: r gets
// num_hidden_layers and intermediate_size when the config leaves them out.
func parseHybrid(b []byte, r *raw, c *Config) error {
	var h hybridRaw
	if err := json.Unmarshal(b, &h); err != nil {
		return fmt.Errorf("config.json: %w", err)
	}
	hy := &Hybrid{}
	switch {
	case h.LayersBlockType != nil:
		for i, name := range h.LayersBlockType {
			k, ok := layerKinds[name]
			if !ok {
				return fmt.Errorf("layers_block_type[%d]: unknown layer type %q (want mamba, moe, attention or mlp)", i, name)
			}
			hy.Pattern = append(hy.Pattern, k)
		}
		if h.Pattern != nil && *h.Pattern != string(hy.Pattern) {
			return fmt.Errorf("hybrid_override_pattern %q disagrees with layers_block_type (%q)", *h.Pattern, hy.Pattern)
		}
	case h.Pattern != nil:
		for i := 0; i < len(*h.Pattern); i++ {
			switch k := (*h.Pattern)[i]; k {
			case LayerMamba, LayerMoE, LayerAttention, LayerMLP:
				hy.Pattern = append(hy.Pattern, k)
			default:
				return fmt.Errorf("hybrid_override_pattern: unknown layer kind %q at %d (want M, E, * or -)", k, i)
			}
		}
	default:
		return fmt.Errorf("nemotron_h config.json has neither hybrid_override_pattern nor layers_block_type")
	}
	if len(hy.Pattern) == 0 || len(hy.Pattern) > maxLayers {
		return fmt.Errorf("hybrid_override_pattern has %d layers (want 1..%d)", len(hy.Pattern), maxLayers)
	}
	if r.NumHiddenLayers == nil {
		n := len(hy.Pattern)
		r.NumHiddenLayers = &n
	} else if *r.NumHiddenLayers != len(hy.Pattern) {
		return fmt.Errorf("num_hidden_layers %d disagrees with the %d layers of hybrid_override_pattern", *r.NumHiddenLayers, len(hy.Pattern))
	}
	if r.IntermediateSize == nil {
		d := 21504 // transformers' default, only used by dense ("-") layers
		r.IntermediateSize = &d
	}
	if r.RMSNormEps == nil {
		eps := 1e-5
		if h.LayerNormEps != nil {
			eps = *h.LayerNormEps
		}
		r.RMSNormEps = &eps
	}
	if h.MoELatentSize != nil {
		return fmt.Errorf("moe_latent_size %d is not supported (experts on a latent projection)", *h.MoELatentSize)
	}
	if h.MLPBias {
		return fmt.Errorf("mlp_bias is not supported for nemotron_h")
	}
	hy.MambaHeads = firstInt(128, h.MambaNumHeads)
	hy.MambaHeadDim = firstInt(64, h.MambaHeadDim)
	hy.NGroups = firstInt(8, h.MambaNGroups, h.NGroups)
	hy.StateSize = firstInt(128, h.SSMStateSize)
	hy.ConvKernel = firstInt(4, h.MambaDConv, h.ConvKernel)
	hy.ChunkSize = firstInt(128, h.MambaChunkSize, h.ChunkSize)
	hy.ConvBias = firstBool(true, h.MambaConvBias, h.UseConvBias)
	hy.ProjBias = firstBool(false, h.MambaProjBias, h.UseBias)
	hy.TimeStepMin = 0.001
	if p := h.MambaDtMin; p != nil {
		hy.TimeStepMin = *p
	} else if p := h.TimeStepMin; p != nil {
		hy.TimeStepMin = *p
	}
	hy.TimeStepLimit = [2]float64{0, math.Inf(1)}
	if lim := h.MambaDtLimit; lim != nil || h.TimeStepLimit != nil {
		if lim == nil {
			lim = h.TimeStepLimit
		}
		if len(lim) != 2 {
			return fmt.Errorf("time_step_limit: want 2 numbers, got %d", len(lim))
		}
		for i, v := range lim {
			f, err := limitValue(v)
			if err != nil {
				return fmt.Errorf("time_step_limit[%d]: %w", i, err)
			}
			hy.TimeStepLimit[i] = f
		}
	}
	hy.MambaAct, hy.MLPAct = h.MambaHiddenAct, h.MLPHiddenAct
	if hy.MambaAct == "" {
		hy.MambaAct = "silu"
	}
	if hy.MLPAct == "" {
		hy.MLPAct = "relu2"
	}
	for _, v := range []struct {
		name string
		v    int
	}{{"mamba_num_heads", hy.MambaHeads}, {"mamba_head_dim", hy.MambaHeadDim}, {"n_groups", hy.NGroups},
		{"ssm_state_size", hy.StateSize}, {"conv_kernel", hy.ConvKernel}, {"chunk_size", hy.ChunkSize}} {
		if v.v <= 0 || v.v > maxSize {
			return fmt.Errorf("%s must be in 1..%d, got %d", v.name, maxSize, v.v)
		}
	}
	if hy.MambaHeads%hy.NGroups != 0 {
		return fmt.Errorf("n_groups %d must divide mamba_num_heads %d", hy.NGroups, hy.MambaHeads)
	}
	if int64(hy.MambaHeads)*int64(hy.MambaHeadDim) > maxSize || int64(hy.NGroups)*int64(hy.StateSize) > maxSize {
		return fmt.Errorf("mamba widths %d×%d, %d×%d are over %d", hy.MambaHeads, hy.MambaHeadDim, hy.NGroups, hy.StateSize, maxSize)
	}
	if hy.ConvKernel > 64 {
		return fmt.Errorf("conv_kernel %d is over 64", hy.ConvKernel)
	}
	if !(hy.TimeStepMin >= 0) || math.IsInf(hy.TimeStepMin, 0) {
		return fmt.Errorf("time_step_min %g must be a non-negative number", hy.TimeStepMin)
	}
	hy.SharedIntermediate = firstInt(0, h.SharedIntermediate)
	if hy.Count(LayerMoE) > 0 {
		if r.NRoutedExperts == nil && r.NumExperts == nil && r.NumLocalExperts == nil {
			return fmt.Errorf("nemotron_h config.json: MoE layers but no n_routed_experts")
		}
		if hy.SharedIntermediate < 0 || hy.SharedIntermediate > maxSize {
			return fmt.Errorf("moe_shared_expert_intermediate_size must be in 0..%d, got %d", maxSize, hy.SharedIntermediate)
		}
	}
	if h.NormTopKProb == nil {
		r.NormTopKProb = true // transformers' default for nemotron_h
	}
	if h.NSharedExperts == nil {
		r.NSharedExperts = 1
	}
	r.ScoringFunc = "sigmoid"
	c.Hybrid = hy
	return nil
}

// sanitizeNonFinite rewrites the bare Infinity, -Infinity and NaN tokens
// Python's json module writes (nemotron_h's time_step_limit is
// [0.0, Infinity]) as strings, so encoding/json can read the file. Text
// inside strings is left alone.
func sanitizeNonFinite(b []byte) []byte {
	var out []byte
	inStr, esc := false, false
	for i := 0; i < len(b); i++ {
		ch := b[i]
		if inStr {
			switch {
			case esc:
				esc = false
			case ch == '\\':
				esc = true
			case ch == '"':
				inStr = false
			}
			if out != nil {
				out = append(out, ch)
			}
			continue
		}
		if ch == '"' {
			inStr = true
		}
		for _, tok := range []string{"-Infinity", "Infinity", "NaN"} {
			if strings.HasPrefix(string(b[i:min(len(b), i+len(tok))]), tok) {
				if out == nil {
					out = append(make([]byte, 0, len(b)+8), b[:i]...)
				}
				out = append(out, '"')
				out = append(out, tok...)
				out = append(out, '"')
				i += len(tok) - 1
				ch = 0
				break
			}
		}
		if ch != 0 && out != nil {
			out = append(out, ch)
		}
	}
	if out == nil {
		return b
	}
	return out
}
