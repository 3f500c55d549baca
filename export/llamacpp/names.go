package llamacpp

import (
	"fmt"
	"sort"
	"strings"

	"github.com/marlin-llm/marlin/model/hfconfig"
	"github.com/marlin-llm/marlin/model/tensorname"
)

// Role classifies a GGUF tensor for type recipes.
type Role uint8

// Tensor roles.
const (
	RoleOther     Role = iota
	RoleNorm           // 1-D weights and biases: always F32
	RoleRouter         // MoE router (ffn_gate_inp) and its bias: always F32
	RoleEmbed          // token_embd
	RoleOutput         // output (lm_head)
	RoleAttnQ          // attn_q, attn_q_a, attn_q_b
	RoleAttnK          // attn_k
	RoleAttnV          // attn_v
	RoleAttnKV         // attn_kv_a_mqa, attn_k_b, attn_v_b
	RoleAttnOut        // attn_output
	RoleFFNGateUp      // ffn_gate, ffn_up (dense, experts, shared)
	RoleFFNDown        // ffn_down (dense, experts, shared)
)

// op says how a GGUF tensor's data is made from its sources.
type op uint8

const (
	opCopy   op = iota // one source, same element order
	opStack            // sources are experts 0..E-1, concatenated
	opKB               // MLA kv_b_proj → per-head k_b, transposed
	opVB               // MLA kv_b_proj → per-head v_b
	opNegExp           // Mamba-2 A_log → A = -exp(A_log), same order
)

// Tensor is one tensor of the GGUF file being planned.
type Tensor struct {
	// Name is llama.cpp's tensor name ("blk.3.ffn_down_exps.weight").
	Name string
	// Dims are the GGUF dimensions, innermost first (ggml's ne).
	Dims []int
	// Role and Layer (−1 outside blocks) drive type recipes.
	Role  Role
	Layer int
	// Sources are the Hugging Face tensor names the data comes from.
	Sources []string
	op      op
	heads   int // opKB/opVB: number of heads; nope and v dims below
	nope, v int
	// srcShape is the source's shape when the GGUF tensor reshapes it
	// (nemotron_h's conv1d, A, D and group norm); nil means reverse(Dims).
	srcShape []int
}

// Rows is the number of rows (product of all dims but the first).
func (t *Tensor) Rows() int {
	r := 1
	for _, d := range t.Dims[1:] {
		r *= d
	}
	return r
}

// Direct reports whether the tensor's data is its sources' data in order
// (a copy or an expert stack), so quantized blocks can be copied; the MLA
// k_b/v_b split reorders elements and needs re-encoding.
func (t *Tensor) Direct() bool { return t.op == opCopy || t.op == opStack }

// SourceShape is the Hugging Face shape of a copied tensor's source.
func (t *Tensor) SourceShape() []int {
	if t.srcShape != nil {
		return t.srcShape
	}
	return reverse(t.Dims)
}

// Elements is the tensor's element count.
func (t *Tensor) Elements() int { return t.Dims[0] * t.Rows() }

// expertWeights are the tensorname patterns of routed experts' weights
// that llama.cpp stacks into one tensor per layer.
var expertWeights = tensorname.MoEPatterns("experts.*.gate_proj.weight", "experts.*.up_proj.weight", "experts.*.down_proj.weight")

// hfLayer parses a decoder-layer tensor name ("model.layers.N.…",
// "backbone.layers.N.…") and returns llama.cpp's block prefix ("blk.N.",
// N as written).
func hfLayer(name string) (tensorname.Name, string, bool) {
	tn := tensorname.Parse(name)
	if hfconfig.DecoderLayer(tn) < 0 || tn.Rest == "" {
		return tn, "", false
	}
	return tn, "blk." + strings.TrimPrefix(tn.Prefix, tn.Root+".layers."), true
}

// nameRole is a llama.cpp tensor name and its role.
type nameRole struct {
	name string
	role Role
}

// simple maps per-layer Hugging Face suffixes to llama.cpp names and roles.
var simple = map[string]nameRole{
	"input_layernorm.weight":                  {"attn_norm.weight", RoleNorm},
	"post_attention_layernorm.weight":         {"ffn_norm.weight", RoleNorm},
	"self_attn.q_proj.weight":                 {"attn_q.weight", RoleAttnQ},
	"self_attn.k_proj.weight":                 {"attn_k.weight", RoleAttnK},
	"self_attn.v_proj.weight":                 {"attn_v.weight", RoleAttnV},
	"self_attn.o_proj.weight":                 {"attn_output.weight", RoleAttnOut},
	"self_attn.q_norm.weight":                 {"attn_q_norm.weight", RoleNorm},
	"self_attn.k_norm.weight":                 {"attn_k_norm.weight", RoleNorm},
	"self_attn.q_a_proj.weight":               {"attn_q_a.weight", RoleAttnQ},
	"self_attn.q_a_layernorm.weight":          {"attn_q_a_norm.weight", RoleNorm},
	"self_attn.q_b_proj.weight":               {"attn_q_b.weight", RoleAttnQ},
	"self_attn.kv_a_proj_with_mqa.weight":     {"attn_kv_a_mqa.weight", RoleAttnKV},
	"self_attn.kv_a_layernorm.weight":         {"attn_kv_a_norm.weight", RoleNorm},
	"mlp.gate_proj.weight":                    {"ffn_gate.weight", RoleFFNGateUp},
	"mlp.up_proj.weight":                      {"ffn_up.weight", RoleFFNGateUp},
	"mlp.down_proj.weight":                    {"ffn_down.weight", RoleFFNDown},
	"mlp.gate.weight":                         {"ffn_gate_inp.weight", RoleRouter},
	"mlp.gate.e_score_correction_bias":        {"exp_probs_b.bias", RoleRouter},
	"mlp.shared_experts.gate_proj.weight":     {"ffn_gate_shexp.weight", RoleFFNGateUp},
	"mlp.shared_experts.up_proj.weight":       {"ffn_up_shexp.weight", RoleFFNGateUp},
	"mlp.shared_experts.down_proj.weight":     {"ffn_down_shexp.weight", RoleFFNDown},
	"mlp.shared_expert.gate_proj.weight":      {"ffn_gate_shexp.weight", RoleFFNGateUp},
	"mlp.shared_expert.up_proj.weight":        {"ffn_up_shexp.weight", RoleFFNGateUp},
	"mlp.shared_expert.down_proj.weight":      {"ffn_down_shexp.weight", RoleFFNDown},
	"self_attn.kv_b_proj.weight":              {"", RoleAttnKV}, // split, see Map
	"mlp.experts.e_score_correction_bias":     {"exp_probs_b.bias", RoleRouter},
	"mlp.gate.e_score_correction_bias.weight": {"exp_probs_b.bias", RoleRouter},
}

// Map plans the GGUF tensors of a checkpoint: llama.cpp's names, GGUF
// dimensions and the Hugging Face sources, in the order llama.cpp's
// converter writes them (source order; a stacked expert tensor at its last
// expert, k_b then v_b at kv_b_proj). names is the checkpoint's tensor list
// in storage order and shape gives each one's shape.
func Map(cfg *hfconfig.Config, names []string, shape func(string) []int) ([]*Tensor, error) {
	arch, err := ArchName(cfg)
	if err != nil {
		return nil, err
	}
	_ = arch
	nExp := cfg.MoE.NumExperts
	var out []*Tensor
	var beyond []string // tensors of layers past num_hidden_layers
	seen := map[string]bool{}
	// pending expert stacks: gguf name → sources by expert.
	stacks := map[string][]string{}
	emit := func(t *Tensor) error {
		if seen[t.Name] {
			return fmt.Errorf("llamacpp: two sources map to %s", t.Name)
		}
		seen[t.Name] = true
		out = append(out, t)
		return nil
	}
	for _, name := range names {
		shp := shape(name)
		if len(shp) == 0 || len(shp) > 2 && !(cfg.Hybrid != nil && strings.HasSuffix(name, ".mixer.conv1d.weight")) {
			return nil, fmt.Errorf("llamacpp: %s: unsupported shape %v", name, shp)
		}
		dims := reverse(shp)
		switch name {
		case cfg.EmbedName():
			if err := emit(&Tensor{Name: "token_embd.weight", Dims: dims, Role: RoleEmbed, Layer: -1, Sources: []string{name}}); err != nil {
				return nil, err
			}
			continue
		case "lm_head.weight":
			if cfg.TieWordEmbeddings {
				continue // llama.cpp reuses token_embd (hfconfig.SpareTensor)
			}
			if err := emit(&Tensor{Name: "output.weight", Dims: dims, Role: RoleOutput, Layer: -1, Sources: []string{name}}); err != nil {
				return nil, err
			}
			continue
		case cfg.FinalNormName():
			if err := emit(&Tensor{Name: "output_norm.weight", Dims: dims, Role: RoleNorm, Layer: -1, Sources: []string{name}}); err != nil {
				return nil, err
			}
			continue
		}
		if cfg.Hybrid != nil && cfg.SpareTensor(name) {
			continue // nemotron_h's MTP head: llama.cpp's converter drops it too
		}
		tn, blk, ok := hfLayer(name)
		if !ok {
			return nil, fmt.Errorf("llamacpp: no llama.cpp name for tensor %q", name)
		}
		layer := tn.Layer
		if layer >= cfg.NumLayers {
			if !cfg.SpareTensor(name) {
				beyond = append(beyond, name)
			}
			// else: an MTP / next-n layer (num_nextn_predict_layers):
			// llama.cpp's converter drops them too.
			continue
		}
		suffix := tn.Rest
		if tn.Is(expertWeights...) {
			e := tn.Expert
			proj := strings.TrimSuffix(tn.Proj, "_proj")
			if nExp <= 0 || e >= nExp {
				return nil, fmt.Errorf("llamacpp: %s: expert %d out of range (config has %d experts)", name, e, nExp)
			}
			gname := blk + "ffn_" + proj + "_exps.weight"
			srcs := stacks[gname]
			if srcs == nil {
				srcs = make([]string, nExp)
			}
			if srcs[e] != "" {
				return nil, fmt.Errorf("llamacpp: expert tensor %s appears twice", name)
			}
			srcs[e] = name
			stacks[gname] = srcs
			complete := true
			for _, s := range srcs {
				complete = complete && s != ""
			}
			if !complete {
				continue
			}
			first := shape(srcs[0])
			for _, s := range srcs[1:] {
				if !equalInts(shape(s), first) {
					return nil, fmt.Errorf("llamacpp: %s: experts have different shapes %v and %v", gname, first, shape(s))
				}
			}
			role := RoleFFNGateUp
			if proj == "down" {
				role = RoleFFNDown
			}
			delete(stacks, gname)
			if err := emit(&Tensor{Name: gname, Dims: append(reverse(first), nExp), Role: role, Layer: layer, Sources: srcs, op: opStack}); err != nil {
				return nil, err
			}
			continue
		}
		if cfg.Hybrid != nil {
			t, err := nemotronTensor(cfg, name, suffix, blk, layer, shp)
			if err != nil {
				return nil, err
			}
			if err := emit(t); err != nil {
				return nil, err
			}
			continue
		}
		s, ok := simple[suffix]
		if !ok {
			return nil, fmt.Errorf("llamacpp: no llama.cpp name for tensor %q", name)
		}
		if suffix == "self_attn.kv_b_proj.weight" {
			ml := cfg.MLA
			if ml == nil {
				return nil, fmt.Errorf("llamacpp: %s in a model without MLA settings", name)
			}
			h, nope, v, r := cfg.NumHeads, ml.QKNopeHeadDim, ml.VHeadDim, ml.KVLoRARank
			if len(shp) != 2 || shp[0] != h*(nope+v) || shp[1] != r {
				return nil, fmt.Errorf("llamacpp: %s: shape %v, want [%d, %d] (heads·(nope+v), kv_lora_rank)", name, shp, h*(nope+v), r)
			}
			if err := emit(&Tensor{Name: blk + "attn_k_b.weight", Dims: []int{nope, r, h}, Role: RoleAttnKV, Layer: layer, Sources: []string{name}, op: opKB, heads: h, nope: nope, v: v}); err != nil {
				return nil, err
			}
			if err := emit(&Tensor{Name: blk + "attn_v_b.weight", Dims: []int{r, v, h}, Role: RoleAttnKV, Layer: layer, Sources: []string{name}, op: opVB, heads: h, nope: nope, v: v}); err != nil {
				return nil, err
			}
			continue
		}
		role := s.role
		if len(shp) == 1 && role != RoleRouter {
			role = RoleNorm
		}
		if err := emit(&Tensor{Name: blk + s.name, Dims: dims, Role: role, Layer: layer, Sources: []string{name}}); err != nil {
			return nil, err
		}
	}
	if len(beyond) > 0 {
		// Layers the config does not declare: a GGUF without them (and
		// with block_count = num_hidden_layers) is another model.
		return nil, fmt.Errorf("llamacpp: %w", cfg.CheckUsed(beyond, func(string) bool { return false }))
	}
	if len(stacks) > 0 {
		var missing []string
		for g := range stacks {
			missing = append(missing, g)
		}
		sort.Strings(missing)
		return nil, fmt.Errorf("llamacpp: incomplete expert sets for %s", strings.Join(missing, ", "))
	}
	if !seen["token_embd.weight"] {
		return nil, fmt.Errorf("llamacpp: checkpoint has no %s", cfg.EmbedName())
	}
	if !seen["output_norm.weight"] {
		return nil, fmt.Errorf("llamacpp: checkpoint has no %s", cfg.FinalNormName())
	}
	if !cfg.TieWordEmbeddings && !seen["output.weight"] {
		return nil, fmt.Errorf("llamacpp: checkpoint has no lm_head.weight and tie_word_embeddings is false")
	}
	return out, nil
}

func reverse(s []int) []int {
	r := make([]int, len(s))
	for i, v := range s {
		r[len(s)-1-i] = v
	}
	return r
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
