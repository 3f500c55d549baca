// Package synth writes synthetic Hugging Face checkpoints with the real tensor
// names, dtypes and layout of a supported architecture, at any scale. They
// exist to test what does not depend on trained values: memory budgets,
// streaming, sharding, planning and throughput on full-size shapes.
//
// Values are deterministic: each tensor draws from a PCG stream seeded by the
// generator seed and a hash of the tensor's name, so any tensor can be
// regenerated alone and two runs write identical files.
package synth

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"

	"github.com/marlin-llm/marlin/internal/atomicfile"
	"github.com/marlin-llm/marlin/model/safetensors"
	"github.com/marlin-llm/marlin/tensor"
)

// GLM47Flash returns the config.json of zai-org/GLM-4.7-Flash (Glm4MoeLite),
// with hidden, FFN and expert widths divided by widthDiv and the decoder
// depth cut to layers (0 keeps all 47). widthDiv 1 gives the real shapes.
func GLM47Flash(widthDiv, layers int) map[string]any {
	if widthDiv < 1 {
		widthDiv = 1
	}
	if layers <= 0 {
		layers = 47
	}
	types := make([]string, layers)
	for i := range types {
		types[i] = "sparse"
	}
	types[0] = "dense"
	return map[string]any{
		"architectures":           []string{"Glm4MoeLiteForCausalLM"},
		"model_type":              "glm4_moe_lite",
		"hidden_size":             2048 / widthDiv,
		"intermediate_size":       10240 / widthDiv,
		"moe_intermediate_size":   1536 / widthDiv,
		"num_hidden_layers":       layers,
		"num_attention_heads":     20,
		"num_key_value_heads":     20,
		"q_lora_rank":             768 / widthDiv,
		"kv_lora_rank":            512 / widthDiv,
		"qk_nope_head_dim":        192,
		"qk_rope_head_dim":        64,
		"v_head_dim":              256,
		"n_routed_experts":        64,
		"n_shared_experts":        1,
		"num_experts_per_tok":     4,
		"first_k_dense_replace":   1,
		"mlp_layer_types":         types,
		"n_group":                 1,
		"topk_group":              1,
		"topk_method":             "noaux_tc",
		"scoring_func":            "sigmoid",
		"norm_topk_prob":          true,
		"routed_scaling_factor":   1.8,
		"rms_norm_eps":            1e-5,
		"rope_interleave":         true,
		"rope_parameters":         map[string]any{"rope_theta": 1e6, "rope_type": "default"},
		"vocab_size":              154880 / widthDiv,
		"max_position_embeddings": 202752,
		"tie_word_embeddings":     false,
		"hidden_act":              "silu",
		"torch_dtype":             "bfloat16",
	}
}

// Tensor is one tensor of a synthetic checkpoint.
type Tensor struct {
	Name  string
	Shape []int
	// Std is the standard deviation of its values (norm weights are 1 ± Std).
	Std float64
	// Norm marks RMSNorm weights (values around 1).
	Norm bool
}

// GLMTensors lists the tensors of a glm4_moe_lite checkpoint described by
// cfg (as GLM47Flash returns it), in the order transformers saves them.
func GLMTensors(cfg map[string]any) ([]Tensor, error) {
	geti := func(k string) (int, error) {
		switch v := cfg[k].(type) {
		case int:
			return v, nil
		case float64:
			return int(v), nil
		}
		return 0, fmt.Errorf("synth: config field %q missing or not a number", k)
	}
	var err error
	val := func(k string) int {
		v, e := geti(k)
		if e != nil && err == nil {
			err = e
		}
		return v
	}
	h, ffn, moe := val("hidden_size"), val("intermediate_size"), val("moe_intermediate_size")
	layers, heads := val("num_hidden_layers"), val("num_attention_heads")
	qlora, kvlora := val("q_lora_rank"), val("kv_lora_rank")
	nope, rope, vdim := val("qk_nope_head_dim"), val("qk_rope_head_dim"), val("v_head_dim")
	experts, shared, dense := val("n_routed_experts"), val("n_shared_experts"), val("first_k_dense_replace")
	vocab := val("vocab_size")
	if err != nil {
		return nil, err
	}
	std := 0.02
	var ts []Tensor
	lin := func(name string, out, in int) { ts = append(ts, Tensor{Name: name, Shape: []int{out, in}, Std: std}) }
	norm := func(name string, n int) { ts = append(ts, Tensor{Name: name, Shape: []int{n}, Std: 0.05, Norm: true}) }
	ts = append(ts, Tensor{Name: "model.embed_tokens.weight", Shape: []int{vocab, h}, Std: std})
	for l := 0; l < layers; l++ {
		p := "model.layers." + strconv.Itoa(l) + "."
		norm(p+"input_layernorm.weight", h)
		lin(p+"self_attn.q_a_proj.weight", qlora, h)
		norm(p+"self_attn.q_a_layernorm.weight", qlora)
		lin(p+"self_attn.q_b_proj.weight", heads*(nope+rope), qlora)
		lin(p+"self_attn.kv_a_proj_with_mqa.weight", kvlora+rope, h)
		norm(p+"self_attn.kv_a_layernorm.weight", kvlora)
		lin(p+"self_attn.kv_b_proj.weight", heads*(nope+vdim), kvlora)
		lin(p+"self_attn.o_proj.weight", h, heads*vdim)
		norm(p+"post_attention_layernorm.weight", h)
		if l < dense {
			lin(p+"mlp.gate_proj.weight", ffn, h)
			lin(p+"mlp.up_proj.weight", ffn, h)
			lin(p+"mlp.down_proj.weight", h, ffn)
			continue
		}
		lin(p+"mlp.gate.weight", experts, h)
		ts = append(ts, Tensor{Name: p + "mlp.gate.e_score_correction_bias", Shape: []int{experts}, Std: 0.01})
		for e := 0; e < experts; e++ {
			ep := p + "mlp.experts." + strconv.Itoa(e) + "."
			lin(ep+"gate_proj.weight", moe, h)
			lin(ep+"up_proj.weight", moe, h)
			lin(ep+"down_proj.weight", h, moe)
		}
		lin(p+"mlp.shared_experts.gate_proj.weight", moe*shared, h)
		lin(p+"mlp.shared_experts.up_proj.weight", moe*shared, h)
		lin(p+"mlp.shared_experts.down_proj.weight", h, moe*shared)
	}
	norm("model.norm.weight", h)
	ts = append(ts, Tensor{Name: "lm_head.weight", Shape: []int{vocab, h}, Std: std})
	return ts, nil
}

// Values returns t's deterministic BF16 bytes for a generator seed.
func Values(t Tensor, seed uint64) []byte {
	hs := fnv.New64a()
	hs.Write([]byte(t.Name))
	rng := rand.New(rand.NewPCG(seed, hs.Sum64()))
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	out := make([]byte, 2*n)
	for i := 0; i < n; i++ {
		v := rng.NormFloat64() * t.Std
		if t.Norm {
			v += 1
		}
		b := tensor.F32ToBF16(float32(v))
		out[2*i], out[2*i+1] = byte(b), byte(b>>8)
	}
	return out
}

// Write writes cfg as config.json and the tensors as BF16 safetensors shards
// of at most shardBytes each (plus model.safetensors.index.json when there is
// more than one) into dir. It holds one tensor in memory at a time.
func Write(ctx context.Context, dir string, cfg map[string]any, ts []Tensor, seed uint64, shardBytes int64) (total int64, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, fmt.Errorf("synth: %w", err)
	}
	var shards [][]Tensor
	var cur []Tensor
	var curBytes int64
	for _, t := range ts {
		b := int64(2)
		for _, d := range t.Shape {
			b *= int64(d)
		}
		total += b
		if len(cur) > 0 && shardBytes > 0 && curBytes+b > shardBytes {
			shards = append(shards, cur)
			cur, curBytes = nil, 0
		}
		cur = append(cur, t)
		curBytes += b
	}
	shards = append(shards, cur)
	weightMap := map[string]string{}
	for i, sh := range shards {
		name := "model.safetensors"
		if len(shards) > 1 {
			name = fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(shards))
		}
		infos := make([]safetensors.TensorInfo, len(sh))
		for j, t := range sh {
			infos[j] = safetensors.TensorInfo{Name: t.Name, DType: tensor.BF16, Shape: t.Shape}
			weightMap[t.Name] = name
		}
		w, err := safetensors.Create(filepath.Join(dir, name), map[string]string{"format": "pt", "generator": "marlin synth"}, infos)
		if err != nil {
			return 0, err
		}
		for _, t := range sh {
			if err := ctx.Err(); err != nil {
				w.Abort()
				return 0, err
			}
			if err := w.WriteTensor(t.Name, Values(t, seed)); err != nil {
				w.Abort()
				return 0, err
			}
		}
		if err := w.Close(); err != nil {
			return 0, err
		}
	}
	if len(shards) > 1 {
		idx := map[string]any{"metadata": map[string]any{"total_size": total}, "weight_map": weightMap}
		if err := writeJSON(filepath.Join(dir, "model.safetensors.index.json"), idx); err != nil {
			return 0, err
		}
	}
	return total, writeJSON(filepath.Join(dir, "config.json"), cfg)
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("synth: %s: %w", path, err)
	}
	return atomicfile.WriteFile(path, append(b, '\n'))
}

// ParamCount is the number of elements of ts.
func ParamCount(ts []Tensor) int64 {
	var n int64
	for _, t := range ts {
		p := int64(1)
		for _, d := range t.Shape {
			p *= int64(d)
		}
		n += p
	}
	return n
}

// Preset is a full-size architecture marlin-synth can write.
type Preset struct {
	// Name is marlin-synth's -arch value.
	Name string
	// Doc names the model the preset copies.
	Doc string
	// Config returns its config.json with widths divided by widthDiv and
	// the depth cut to layers (0 keeps all).
	Config func(widthDiv, layers int) map[string]any
	// Tensors lists the checkpoint's tensors for a config from Config.
	Tensors func(cfg map[string]any) ([]Tensor, error)
}

// Presets returns the architectures marlin-synth can write, by -arch
// name (hfconfig.Family.Synth names them).
func Presets() []Preset {
	return []Preset{
		{Name: "glm47", Doc: "GLM-4.7-Flash", Config: GLM47Flash, Tensors: GLMTensors},
		{Name: "nemotron3-nano", Doc: "Nemotron-3-Nano-30B-A3B, the first layers of its M/E/* pattern", Config: Nemotron3Nano, Tensors: NemotronHTensors},
	}
}

// PresetOf returns the preset called name.
func PresetOf(name string) (Preset, error) {
	var names []string
	for _, p := range Presets() {
		if p.Name == name {
			return p, nil
		}
		names = append(names, p.Name)
	}
	return Preset{}, fmt.Errorf("synth: unknown architecture %q (want one of %v)", name, names)
}
