// Package hfconfig parses Hugging Face config.json files of the model
// families marlin supports into one typed Config. Families (family.go) is
// the architecture registry: the accepted model_type values and what each
// family's config requires, has and exports to come from it.
//
// Field names differ between families and transformers versions (num_experts
// vs num_local_experts vs n_routed_experts, rope_theta vs rope_parameters);
// Parse normalises them so a forward pass reads one set of fields.
package hfconfig

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Config is a parsed, validated and normalised config.json.
type Config struct {
	// ModelType is config.json's model_type ("qwen3", "qwen3_moe", ...).
	ModelType string
	// Architectures is config.json's architectures list.
	Architectures []string

	HiddenSize            int     // hidden_size
	NumLayers             int     // num_hidden_layers
	NumNextNLayers        int     // num_nextn_predict_layers (MTP layers stored after the decoder layers)
	NumHeads              int     // num_attention_heads
	NumKVHeads            int     // num_key_value_heads (defaults to NumHeads)
	HeadDim               int     // head_dim (default hidden/heads; MLA: qk_nope+qk_rope)
	IntermediateSize      int     // intermediate_size (dense FFN)
	VocabSize             int     // vocab_size
	MaxPositionEmbeddings int     // max_position_embeddings
	RMSNormEps            float64 // rms_norm_eps
	HiddenAct             string  // hidden_act ("silu")
	TieWordEmbeddings     bool    // tie_word_embeddings
	AttentionBias         bool    // attention_bias
	BOSTokenID            *int    // bos_token_id (nil when null/absent)
	EOSTokenIDs           []int   // eos_token_id (int or list)

	// Rope holds the rotary embedding settings.
	Rope Rope

	// MoE holds mixture-of-experts settings; MoE.NumExperts is 0 for dense
	// models.
	MoE MoE

	// MLA holds multi-head latent attention settings (glm4_moe_lite,
	// deepseek_v3); nil for models with standard attention.
	MLA *MLA

	// Hybrid holds the layer pattern and Mamba-2 settings of nemotron_h;
	// nil for other families.
	Hybrid *Hybrid

	// Raw is the whole decoded config.json for fields not modelled here.
	Raw map[string]any

	// Path is the config.json file Load read ("" after Parse), for
	// messages.
	Path string
}

// Rope is the rotary position embedding configuration.
type Rope struct {
	Theta float64 // rope_theta
	// Type is rope_type ("default", "yarn", "linear", ...).
	Type string
	// Interleave is true when rotary pairs are adjacent elements
	// (rope_interleave, GLM/DeepSeek), false for the rotate-half layout.
	Interleave bool
	// Scaling holds the remaining rope_parameters/rope_scaling entries
	// (factor, original_max_position_embeddings, beta_fast, ...).
	Scaling map[string]float64
}

// MoE is the mixture-of-experts configuration.
type MoE struct {
	NumExperts        int  // num_experts / num_local_experts / n_routed_experts
	NumExpertsPerTok  int  // num_experts_per_tok
	IntermediateSize  int  // moe_intermediate_size
	NormTopKProb      bool // norm_topk_prob
	NumSharedExperts  int  // n_shared_experts
	DecoderSparseStep int  // decoder_sparse_step (qwen3_moe; default 1)
	MLPOnlyLayers     []int
	// FirstKDenseReplace: layers below this index are dense (glm/deepseek).
	FirstKDenseReplace  int
	LayerFreq           int     // moe_layer_freq (deepseek; default 1)
	RoutedScalingFactor float64 // routed_scaling_factor (default 1)
	NGroup              int     // n_group
	TopKGroup           int     // topk_group
	TopKMethod          string  // topk_method ("noaux_tc", "greedy")
	ScoringFunc         string  // scoring_func ("softmax" or "sigmoid")
	// LayerTypes is mlp_layer_types ("dense"/"sparse") when the config
	// lists it; it overrides the other rules.
	LayerTypes []string
}

// MLA is the multi-head latent attention configuration.
type MLA struct {
	QLoRARank     int // q_lora_rank (0: no query compression)
	KVLoRARank    int // kv_lora_rank
	QKNopeHeadDim int // qk_nope_head_dim
	QKRopeHeadDim int // qk_rope_head_dim
	VHeadDim      int // v_head_dim
}

// IsMoELayer reports whether decoder layer i uses the routed-experts MLP.
func (c *Config) IsMoELayer(i int) bool {
	m := &c.MoE
	if m.NumExperts == 0 || i < 0 || i >= c.NumLayers {
		return false
	}
	if c.Hybrid != nil {
		return c.Hybrid.Pattern[i] == LayerMoE
	}
	if len(m.LayerTypes) == c.NumLayers {
		return m.LayerTypes[i] == "sparse"
	}
	if c.Family().SparseStep {
		return !slices.Contains(m.MLPOnlyLayers, i) && m.DecoderSparseStep > 0 && (i+1)%m.DecoderSparseStep == 0
	}
	return i >= m.FirstKDenseReplace && m.LayerFreq > 0 && i%m.LayerFreq == 0
}

// Load reads config.json from path, which is the file or its directory.
func Load(path string) (*Config, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, "config.json")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("hfconfig: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("hfconfig: %s: %w", path, err)
	}
	c.Path = path
	return c, nil
}

// Upper bounds on config sizes: far above any real model, they keep a
// corrupt config.json from sizing loops and tables by billions (model
// builders allocate per layer and per expert before checking tensors).
const (
	maxSize    = 1 << 24 // hidden, intermediate and vocabulary sizes, head counts
	maxLayers  = 1 << 12
	maxExperts = 1 << 14
)

// raw mirrors config.json; pointers tell absent from zero.
type raw struct {
	ModelType             string          `json:"model_type"`
	Architectures         []string        `json:"architectures"`
	HiddenSize            *int            `json:"hidden_size"`
	NumHiddenLayers       *int            `json:"num_hidden_layers"`
	NumNextNPredictLayers int             `json:"num_nextn_predict_layers"`
	LayerTypes            []any           `json:"layer_types"`
	NumAttentionHeads     *int            `json:"num_attention_heads"`
	NumKeyValueHeads      *int            `json:"num_key_value_heads"`
	HeadDim               *int            `json:"head_dim"`
	IntermediateSize      *int            `json:"intermediate_size"`
	VocabSize             *int            `json:"vocab_size"`
	MaxPositionEmbeddings int             `json:"max_position_embeddings"`
	RMSNormEps            *float64        `json:"rms_norm_eps"`
	HiddenAct             string          `json:"hidden_act"`
	TieWordEmbeddings     *bool           `json:"tie_word_embeddings"`
	AttentionBias         bool            `json:"attention_bias"`
	BOSTokenID            *int            `json:"bos_token_id"`
	EOSTokenID            json.RawMessage `json:"eos_token_id"`

	RopeTheta      *float64       `json:"rope_theta"`
	RopeScaling    map[string]any `json:"rope_scaling"`
	RopeParameters map[string]any `json:"rope_parameters"`
	RopeInterleave *bool          `json:"rope_interleave"`

	NumExperts          *int     `json:"num_experts"`
	NumLocalExperts     *int     `json:"num_local_experts"`
	NRoutedExperts      *int     `json:"n_routed_experts"`
	NumExpertsPerTok    int      `json:"num_experts_per_tok"`
	MoEIntermediateSize int      `json:"moe_intermediate_size"`
	NormTopKProb        bool     `json:"norm_topk_prob"`
	NSharedExperts      int      `json:"n_shared_experts"`
	DecoderSparseStep   *int     `json:"decoder_sparse_step"`
	MLPOnlyLayers       []int    `json:"mlp_only_layers"`
	FirstKDenseReplace  int      `json:"first_k_dense_replace"`
	MoELayerFreq        *int     `json:"moe_layer_freq"`
	RoutedScalingFactor *float64 `json:"routed_scaling_factor"`
	NGroup              int      `json:"n_group"`
	TopKGroup           int      `json:"topk_group"`
	TopKMethod          string   `json:"topk_method"`
	ScoringFunc         string   `json:"scoring_func"`
	MLPLayerTypes       []string `json:"mlp_layer_types"`

	QLoRARank     *int `json:"q_lora_rank"`
	KVLoRARank    *int `json:"kv_lora_rank"`
	QKNopeHeadDim *int `json:"qk_nope_head_dim"`
	QKRopeHeadDim *int `json:"qk_rope_head_dim"`
	VHeadDim      *int `json:"v_head_dim"`
}

// Parse parses and validates the bytes of a config.json.
func Parse(b []byte) (*Config, error) {
	b = sanitizeNonFinite(b)
	var r raw
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("config.json: %w", err)
	}
	fam, ok := FamilyOf(r.ModelType)
	if !ok {
		supported := Supported()
		if r.ModelType == "" {
			return nil, fmt.Errorf("config.json has no model_type (supported: %s)", strings.Join(supported, ", "))
		}
		return nil, fmt.Errorf("unsupported model_type %q (supported: %s)", r.ModelType, strings.Join(supported, ", "))
	}
	c := &Config{ModelType: r.ModelType, Architectures: r.Architectures, HiddenAct: r.HiddenAct,
		AttentionBias: r.AttentionBias, BOSTokenID: r.BOSTokenID, MaxPositionEmbeddings: r.MaxPositionEmbeddings}
	_ = json.Unmarshal(b, &c.Raw)
	if fam.Hybrid {
		if err := parseHybrid(b, &r, c); err != nil {
			return nil, fmt.Errorf("%s config.json: %w", r.ModelType, err)
		}
	}
	var errs []error
	req := func(name string, p *int, dst *int) {
		if p == nil {
			errs = append(errs, fmt.Errorf("missing %s", name))
			return
		}
		if *p <= 0 || *p > maxSize {
			errs = append(errs, fmt.Errorf("%s must be in 1..%d, got %d", name, maxSize, *p))
		}
		*dst = *p
	}
	req("hidden_size", r.HiddenSize, &c.HiddenSize)
	req("num_hidden_layers", r.NumHiddenLayers, &c.NumLayers)
	req("num_attention_heads", r.NumAttentionHeads, &c.NumHeads)
	req("intermediate_size", r.IntermediateSize, &c.IntermediateSize)
	req("vocab_size", r.VocabSize, &c.VocabSize)
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s config.json: %w", r.ModelType, errors.Join(errs...))
	}
	if c.NumLayers > maxLayers {
		return nil, fmt.Errorf("num_hidden_layers %d is over the %d supported", c.NumLayers, maxLayers)
	}
	if r.LayerTypes != nil && len(r.LayerTypes) != c.NumLayers {
		return nil, fmt.Errorf("layer_types has %d entries for num_hidden_layers %d", len(r.LayerTypes), c.NumLayers)
	}
	c.NumNextNLayers = r.NumNextNPredictLayers
	if c.NumNextNLayers < 0 || c.NumNextNLayers > maxLayers {
		return nil, fmt.Errorf("num_nextn_predict_layers must be in 0..%d, got %d", maxLayers, c.NumNextNLayers)
	}
	c.NumKVHeads = c.NumHeads
	if r.NumKeyValueHeads != nil {
		c.NumKVHeads = *r.NumKeyValueHeads
	}
	if c.NumKVHeads <= 0 || c.NumHeads%c.NumKVHeads != 0 {
		return nil, fmt.Errorf("num_key_value_heads %d must be positive and divide num_attention_heads %d", c.NumKVHeads, c.NumHeads)
	}
	c.RMSNormEps = 1e-6
	if r.RMSNormEps != nil {
		c.RMSNormEps = *r.RMSNormEps
	}
	if !(c.RMSNormEps > 0 && c.RMSNormEps < 1) {
		return nil, fmt.Errorf("rms_norm_eps %g out of range", c.RMSNormEps)
	}
	if c.HiddenAct == "" {
		c.HiddenAct = "silu"
	}
	c.TieWordEmbeddings = r.TieWordEmbeddings != nil && *r.TieWordEmbeddings
	if len(r.EOSTokenID) > 0 && string(r.EOSTokenID) != "null" {
		var one int
		if json.Unmarshal(r.EOSTokenID, &one) == nil {
			c.EOSTokenIDs = []int{one}
		} else if err := json.Unmarshal(r.EOSTokenID, &c.EOSTokenIDs); err != nil {
			return nil, fmt.Errorf("eos_token_id: want an int or a list of ints: %w", err)
		}
	}
	if err := parseRope(&r, c); err != nil {
		return nil, err
	}

	// Mixture of experts.
	m := &c.MoE
	for _, p := range []*int{r.NumExperts, r.NumLocalExperts, r.NRoutedExperts} {
		if p != nil && *p > 0 {
			m.NumExperts = *p
			break
		}
	}
	m.NumExpertsPerTok, m.IntermediateSize, m.NormTopKProb = r.NumExpertsPerTok, r.MoEIntermediateSize, r.NormTopKProb
	m.NumSharedExperts, m.MLPOnlyLayers, m.FirstKDenseReplace = r.NSharedExperts, r.MLPOnlyLayers, r.FirstKDenseReplace
	m.NGroup, m.TopKGroup, m.TopKMethod, m.ScoringFunc, m.LayerTypes = r.NGroup, r.TopKGroup, r.TopKMethod, r.ScoringFunc, r.MLPLayerTypes
	m.DecoderSparseStep, m.LayerFreq, m.RoutedScalingFactor = 1, 1, 1
	if r.DecoderSparseStep != nil {
		m.DecoderSparseStep = *r.DecoderSparseStep
	}
	if r.MoELayerFreq != nil {
		m.LayerFreq = *r.MoELayerFreq
	}
	if r.RoutedScalingFactor != nil {
		m.RoutedScalingFactor = *r.RoutedScalingFactor
	}
	if m.NumExperts > maxExperts {
		return nil, fmt.Errorf("%d experts is over the %d supported", m.NumExperts, maxExperts)
	}
	if m.ScoringFunc == "" && m.NumExperts > 0 {
		m.ScoringFunc = "softmax"
	}
	if fam.MoE && (c.Hybrid == nil || c.Hybrid.Count(LayerMoE) > 0) {
		if m.NumExperts <= 0 {
			return nil, fmt.Errorf("%s config.json: missing number of experts (num_experts, num_local_experts or n_routed_experts)", r.ModelType)
		}
		if m.NumExpertsPerTok <= 0 || m.NumExpertsPerTok > m.NumExperts {
			return nil, fmt.Errorf("num_experts_per_tok %d must be in 1..%d", m.NumExpertsPerTok, m.NumExperts)
		}
		if m.IntermediateSize <= 0 {
			return nil, fmt.Errorf("moe_intermediate_size must be positive, got %d", m.IntermediateSize)
		}
		if m.ScoringFunc != "softmax" && m.ScoringFunc != "sigmoid" {
			return nil, fmt.Errorf("scoring_func %q (supported: softmax, sigmoid)", m.ScoringFunc)
		}
		if m.LayerTypes != nil && len(m.LayerTypes) != c.NumLayers {
			return nil, fmt.Errorf("mlp_layer_types has %d entries for num_hidden_layers %d", len(m.LayerTypes), c.NumLayers)
		}
		for _, l := range m.LayerTypes {
			if l != "dense" && l != "sparse" {
				return nil, fmt.Errorf("mlp_layer_types: unknown layer type %q (want dense or sparse)", l)
			}
		}
	}

	// Attention geometry.
	if fam.MLA {
		ml := &MLA{}
		var merr []error
		if r.QLoRARank != nil && *r.QLoRARank > 0 {
			ml.QLoRARank = *r.QLoRARank
		}
		req := func(name string, p *int, dst *int) {
			if p == nil || *p <= 0 {
				merr = append(merr, fmt.Errorf("%s must be present and positive", name))
				return
			}
			*dst = *p
		}
		req("kv_lora_rank", r.KVLoRARank, &ml.KVLoRARank)
		req("qk_nope_head_dim", r.QKNopeHeadDim, &ml.QKNopeHeadDim)
		req("qk_rope_head_dim", r.QKRopeHeadDim, &ml.QKRopeHeadDim)
		req("v_head_dim", r.VHeadDim, &ml.VHeadDim)
		if len(merr) > 0 {
			return nil, fmt.Errorf("%s config.json: %w", r.ModelType, errors.Join(merr...))
		}
		if ml.QKRopeHeadDim%2 != 0 {
			return nil, fmt.Errorf("qk_rope_head_dim %d must be even", ml.QKRopeHeadDim)
		}
		c.MLA = ml
		c.HeadDim = ml.QKNopeHeadDim + ml.QKRopeHeadDim
	} else {
		if r.HeadDim != nil {
			c.HeadDim = *r.HeadDim
		} else {
			c.HeadDim = c.HiddenSize / c.NumHeads
		}
		if c.HeadDim <= 0 || c.HeadDim%2 != 0 {
			return nil, fmt.Errorf("head_dim %d must be positive and even", c.HeadDim)
		}
	}
	return c, nil
}

func parseRope(r *raw, c *Config) error {
	rp := &c.Rope
	rp.Type = "default"
	rp.Theta = 10000
	params := r.RopeParameters
	if params == nil {
		params = r.RopeScaling
	}
	if r.RopeTheta != nil {
		rp.Theta = *r.RopeTheta
	}
	for k, v := range params {
		switch k {
		case "rope_theta":
			f, ok := v.(float64)
			if !ok {
				return fmt.Errorf("rope_parameters.rope_theta: want a number, got %v", v)
			}
			rp.Theta = f
		case "rope_type", "type":
			s, ok := v.(string)
			if !ok {
				return fmt.Errorf("rope_parameters.%s: want a string, got %v", k, v)
			}
			rp.Type = s
		default:
			if f, ok := v.(float64); ok {
				if rp.Scaling == nil {
					rp.Scaling = map[string]float64{}
				}
				rp.Scaling[k] = f
			}
		}
	}
	if !(rp.Theta > 0) {
		return fmt.Errorf("rope_theta %g must be positive", rp.Theta)
	}
	rp.Interleave = r.RopeInterleave != nil && *r.RopeInterleave
	return nil
}
