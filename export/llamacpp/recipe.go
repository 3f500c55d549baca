package llamacpp

import (
	"fmt"
	"path"
	"sort"
	"strings"

	exp "github.com/marlin-llm/marlin/export"
	"github.com/marlin-llm/marlin/model/gguf"
	"github.com/marlin-llm/marlin/model/hfconfig"
	"github.com/marlin-llm/marlin/quant/ggml"
)

// MixQ4KM is llama-quantize's Q4_K_M mixture, the recipe most GGUF users
// pick.
const MixQ4KM = "q4_k_m"

// mixture is one of llama-quantize's file types that mixes tensor types by
// role and layer (llama_tensor_get_type): its gguf_type name, its
// general.file_type (enum llama_ftype) and its default tensor type
// (llama_ftype_get_default_type).
type mixture struct {
	name  string
	ftype uint32
	def   gguf.GGMLType
}

// mixtures are the llama-quantize file types whose every tensor type is in
// the GGUF-type registry (a function, so that nothing global is mutable).
// Q4_0, Q4_1 and Q5_0 mixtures are left out: with an importance matrix
// llama-quantize moves their first ffn_down layers to Q4_1, which marlin
// does not write, and the pure q4_0/q5_0 recipes keep their meaning.
func mixtures() []mixture {
	return []mixture{
		{"q2_k", 10, gguf.TypeQ2_K},
		{"q3_k_s", 11, gguf.TypeQ3_K},
		{"q3_k_m", 12, gguf.TypeQ3_K},
		{"q3_k_l", 13, gguf.TypeQ3_K},
		{"q4_k_s", 14, gguf.TypeQ4_K},
		{MixQ4KM, 15, gguf.TypeQ4_K},
		{"q5_k_s", 16, gguf.TypeQ5_K},
		{"q5_k_m", 17, gguf.TypeQ5_K},
		{"iq4_nl", 25, gguf.TypeIQ4_NL},
		{"iq4_xs", 30, gguf.TypeIQ4_XS},
	}
}

func lookupMixture(name string) (mixture, bool) {
	for _, m := range mixtures() {
		if m.name == strings.ToLower(name) {
			return m, true
		}
	}
	return mixture{}, false
}

// Mixtures lists the mixture recipes (llama-quantize's file types, as
// "q4_k_m"), in llama_ftype order.
func Mixtures() []string {
	var r []string
	for _, m := range mixtures() {
		r = append(r, m.name)
	}
	return r
}

// IsMixture reports whether recipe is one of llama-quantize's mixtures
// (Mixtures) rather than a pure type.
func IsMixture(recipe string) bool {
	_, ok := lookupMixture(recipe)
	return ok
}

// Recipes lists the gguf_type values AssignTypes accepts: the registry's
// pure recipe types (ggml.Types with Recipe set) and the mixtures. Every
// recipe keeps 1-D tensors (norms, biases) and MoE routers in F32, as
// llama.cpp's converter and llama-quantize do.
//
//   - f32, f16, bf16: every matrix in that float type (f16 is what
//     llama.cpp's converter writes by default).
//   - a block type (q8_0, q4_k, ...): every matrix in that type ("pure",
//     like llama-quantize --pure); a matrix whose rows do not fill whole
//     blocks falls back as llama-quantize does (the row's Fallback, then
//     f16).
//   - a mixture (q2_k, q3_k_m, q4_k_m, iq4_xs, ...): llama-quantize's
//     choice for that file type (llama_tensor_get_type): the type's
//     default, Q6_K for the output matrix (or tied embeddings), attn_v /
//     ffn_down / attn_output raised by layer (use_more_bits), Q8_0
//     attn_k/attn_v and Q5_K attn_output in 8-expert models, with the same
//     shape fallbacks. mixtureType is the port.
func Recipes() []string {
	var r []string
	for _, t := range ggml.Types() {
		if t.Recipe {
			r = append(r, t.Name())
		}
	}
	return append(r, Mixtures()...)
}

// FileType is llama.cpp's general.file_type (enum llama_ftype) of a recipe
// ("q4_k_m", "q8_0"), or of a type's pure recipe; false when the registry
// gives the recipe none.
func FileType(recipe string) (uint32, bool) {
	recipe = strings.ToLower(recipe)
	if m, ok := lookupMixture(recipe); ok {
		return m.ftype, true
	}
	for _, t := range ggml.Types() {
		if t.Recipe && t.FileType >= 0 && t.Name() == recipe {
			return uint32(t.FileType), true
		}
	}
	return 0, false
}

// Fallbacks describes llama-quantize's fallbacks for the schema ("q4_k to
// q5_0; q5_k to q5_1; q6_k to q8_0; others to f16").
func Fallbacks() string {
	var parts []string
	for _, t := range ggml.Types() {
		if t.Fallback != gguf.TypeF16 {
			parts = append(parts, t.Name()+" to "+strings.ToLower(t.Fallback.String()))
		}
	}
	return strings.Join(append(parts, "others to f16"), "; ")
}

// Rule overrides the type of the tensors whose llama.cpp name or Hugging
// Face source name matches Match (path.Match glob, e.g. "*.ffn_down_exps.*"
// or "model.layers.*.mlp.gate.weight"). Rules are tried in order; the first
// match wins.
type Rule = exp.Rule

// ValidateRecipe checks a recipe name and rules without a model.
func ValidateRecipe(recipe string, rules []Rule) error {
	if !contains(Recipes(), strings.ToLower(recipe)) {
		return fmt.Errorf("gguf_type: unknown recipe %q (known: %s)", recipe, strings.Join(Recipes(), ", "))
	}
	for i, r := range rules {
		if _, err := path.Match(r.Match, ""); err != nil {
			return fmt.Errorf("rules[%d].match: bad glob %q: %w", i, r.Match, err)
		}
		if _, err := parseType(r.Type); err != nil {
			return fmt.Errorf("rules[%d].type: %w", i, err)
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// parseType parses a tensor type name; only types the registry lists as
// writable are accepted.
func parseType(s string) (gguf.GGMLType, error) {
	t, err := ggml.ParseType(s)
	if err != nil {
		return 0, err
	}
	return t.Type, nil
}

// Hparams are the model facts llama-quantize's mixtures look at (its
// hparams as the GGUF states them).
type Hparams struct {
	// NExpert is the number of routed experts (0 or 1: dense).
	NExpert int
	// NGQA is attention heads per KV head of layer 0 (hparams.n_gqa()): 0
	// where layer 0 has no attention (a Mamba layer).
	NGQA int
	// NLayer is the number of decoder layers (n_layer_all).
	NLayer int
	// HasImatrix says the tensors are quantized with importance weights
	// (llama-quantize --imatrix; marlin's Hessian methods).
	HasImatrix bool
}

// HparamsOf returns the Hparams of a model as ArchKVs writes its GGUF
// metadata (MLA: one KV head; nemotron_h: layer 0's).
func HparamsOf(cfg *hfconfig.Config) Hparams {
	h := Hparams{NExpert: cfg.MoE.NumExperts, NLayer: cfg.NumLayers}
	kv := cfg.NumKVHeads
	if arch, err := ArchName(cfg); err == nil && arch == "deepseek2" {
		kv = 1
	}
	if cfg.Hybrid != nil && (len(cfg.Hybrid.Pattern) == 0 || cfg.Hybrid.Pattern[0] != hfconfig.LayerAttention) {
		kv = 0
	}
	if kv > 0 {
		h.NGQA = cfg.NumHeads / kv
	}
	return h
}

// AssignTypes returns the GGUF type of each planned tensor (same order as
// ts) for a recipe, the model's Hparams and override rules.
func AssignTypes(ts []*Tensor, recipe string, hp Hparams, rules []Rule) ([]gguf.GGMLType, error) {
	if err := ValidateRecipe(recipe, rules); err != nil {
		return nil, err
	}
	mix, isMix := lookupMixture(recipe)
	st := &mixState{hp: hp, tied: true}
	for _, t := range ts {
		if t.Name == "output.weight" {
			st.tied = false
		}
		if isAttnV(t.Name) {
			st.nAttnV++
		}
	}
	if st.hp.NLayer <= 0 {
		for _, t := range ts {
			st.hp.NLayer = max(st.hp.NLayer, t.Layer+1)
		}
	}
	// llama-quantize visits tensors by layer (non-block tensors first),
	// then by name (llama_model_loader's weight_name_comparer); its
	// counters (i_attention_wv, i_ffn_down) count in that order.
	order := make([]int, len(ts))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool {
		ta, tb := ts[order[a]], ts[order[b]]
		if ta.Layer != tb.Layer {
			return ta.Layer < tb.Layer
		}
		return ta.Name < tb.Name
	})
	out := make([]gguf.GGMLType, len(ts))
	for _, i := range order {
		t := ts[i]
		if t.Role == RoleNorm || t.Role == RoleRouter || len(t.Dims) < 2 {
			out[i] = gguf.TypeF32
			continue
		}
		var typ gguf.GGMLType
		manual := false
		for _, r := range rules {
			if matchAny(r.Match, t) {
				typ, _ = parseType(r.Type)
				manual = true
				break
			}
		}
		if !manual {
			if isMix {
				typ = st.mixtureType(t, mix)
			} else {
				typ, _ = parseType(recipe)
			}
		}
		ft, err := fallback(t, typ)
		if err != nil {
			return nil, err
		}
		out[i] = ft
	}
	return out, nil
}

func matchAny(glob string, t *Tensor) bool {
	if ok, _ := path.Match(glob, t.Name); ok {
		return true
	}
	for _, s := range t.Sources {
		if ok, _ := path.Match(glob, s); ok {
			return true
		}
	}
	return false
}

// useMoreBits is llama.cpp's use_more_bits.
func useMoreBits(i, n int) bool { return i < n/8 || i >= 7*n/8 || (i-n/8)%3 == 2 }

// mixState is llama-quantize's quantize_state_impl: the counters its type
// choice reads.
type mixState struct {
	hp             Hparams
	tied           bool
	nAttnV, iAttnV int
	iFFNDown       int
}

// The tensor categories of llama-quantize (tensor_get_category), matched
// on the llama.cpp tensor name as it does.
type category uint8

const (
	catOther category = iota
	catTokenEmbd
	catAttnQ
	catAttnV
	catAttnK
	catAttnQKV
	catAttnKVB
	catAttnOutput
	catFFNUp
	catFFNGate
	catFFNDown
	catOutput
)

func categoryOf(name string) category {
	has := func(s string) bool { return strings.Contains(name, s) }
	switch {
	case name == "output.weight":
		return catOutput
	case name == "token_embd.weight" || name == "per_layer_token_embd.weight":
		return catTokenEmbd
	case has("attn_qkv.weight"):
		return catAttnQKV
	case has("attn_kv_b.weight"):
		return catAttnKVB
	case has("attn_v.weight"):
		return catAttnV
	case has("attn_k.weight"):
		return catAttnK
	case has("attn_q.weight"):
		return catAttnQ
	case has("attn_output.weight"):
		return catAttnOutput
	case has("ffn_up"):
		return catFFNUp
	case has("ffn_gate"):
		return catFFNGate
	case has("ffn_down"):
		return catFFNDown
	}
	return catOther
}

// isAttnV is category_is_attn_v.
func isAttnV(name string) bool {
	c := categoryOf(name)
	return c == catAttnV || c == catAttnQKV || c == catAttnKVB
}

// mixtureType is llama_tensor_get_type_impl for the mixtures marlin
// writes (the branches of other file types, Falcon's and the 70B model
// type's are left out; attn_qkv is attn_v-like there, so its own later
// branch never runs). Calls must come in llama-quantize's tensor order
// (see AssignTypes): the attn_v and dense ffn_down counters advance here.
func (st *mixState) mixtureType(t *Tensor, m mixture) gguf.GGMLType {
	typ := m.def
	hp := st.hp
	is := func(names ...string) bool {
		for _, n := range names {
			if m.name == n {
				return true
			}
		}
		return false
	}
	cat := categoryOf(t.Name)
	switch {
	case cat == catOutput || st.tied && cat == catTokenEmbd:
		info, _ := typ.Info()
		if t.Dims[0]%info.BlockSize != 0 {
			typ = gguf.TypeQ8_0
		} else if typ != gguf.TypeQ8_0 {
			typ = gguf.TypeQ6_K
		}
	case cat == catTokenEmbd:
		// the file type's default
	case cat == catAttnV || cat == catAttnQKV || cat == catAttnKVB:
		switch {
		case is("q2_k"):
			typ = gguf.TypeQ3_K
			if hp.NGQA >= 4 {
				typ = gguf.TypeQ4_K
			}
		case is("q3_k_m"):
			typ = gguf.TypeQ4_K
			if st.iAttnV < 2 {
				typ = gguf.TypeQ5_K
			}
		case is("q3_k_l"):
			typ = gguf.TypeQ5_K
		case is("iq4_nl", "iq4_xs") && hp.NGQA >= 4:
			typ = gguf.TypeQ5_K
		case is("q4_k_m", "q5_k_m") && useMoreBits(st.iAttnV, st.nAttnV):
			typ = gguf.TypeQ6_K
		case is("q4_k_s") && st.iAttnV < 4:
			typ = gguf.TypeQ5_K
		}
		if hp.NExpert == 8 {
			typ = gguf.TypeQ8_0
		}
		st.iAttnV++
	case cat == catAttnK:
		if hp.NExpert == 8 {
			typ = gguf.TypeQ8_0
		}
	case cat == catFFNDown:
		i, n := st.iFFNDown, hp.NLayer
		if hp.NExpert > 1 {
			i = t.Layer // llama.cpp parses blk.N: experts are not in order
		}
		switch {
		case is("q2_k"):
			typ = gguf.TypeQ3_K
		case is("q3_k_m"):
			typ = gguf.TypeQ4_K
			if i < n/16 {
				typ = gguf.TypeQ5_K
			}
		case is("q3_k_l"):
			typ = gguf.TypeQ5_K
		case is("q4_k_m"):
			if useMoreBits(i, n) {
				typ = gguf.TypeQ6_K
			}
		case i < n/8 && is("iq4_nl", "iq4_xs") && !hp.HasImatrix:
			typ = gguf.TypeQ5_K
		case is("q5_k_m") && useMoreBits(i, n):
			typ = gguf.TypeQ6_K
		case is("q4_k_s") && i < n/8:
			typ = gguf.TypeQ5_K
		}
		st.iFFNDown++
	case cat == catAttnOutput:
		if hp.NExpert == 8 {
			if is("q2_k", "q3_k_s", "q3_k_m", "iq4_nl", "q4_k_s", "q4_k_m", "iq4_xs") {
				typ = gguf.TypeQ5_K
			}
		} else {
			switch {
			case is("q2_k"):
				typ = gguf.TypeQ3_K
			case is("q3_k_m"):
				typ = gguf.TypeQ4_K
			case is("q3_k_l"):
				typ = gguf.TypeQ5_K
			}
		}
	}
	return typ
}

// fallback is llama-quantize's tensor_type_fallback: a row length that
// does not fill whole blocks moves to a type with smaller blocks.
func fallback(t *Tensor, typ gguf.GGMLType) (gguf.GGMLType, error) {
	info, ok := typ.Info()
	if !ok {
		return 0, fmt.Errorf("llamacpp: %s: unknown type %v", t.Name, typ)
	}
	if t.Dims[0]%info.BlockSize == 0 {
		return typ, nil
	}
	next := gguf.TypeF16
	if r, ok := ggml.LookupType(typ); ok {
		next = r.Fallback
	}
	if ni, _ := next.Info(); t.Dims[0]%ni.BlockSize != 0 {
		next = gguf.TypeF16
	}
	return next, nil
}

// TypeSummary counts tensors per type ("Q4_K: 20, F32: 17").
func TypeSummary(types []gguf.GGMLType) string {
	n := map[string]int{}
	for _, t := range types {
		n[t.String()]++
	}
	var keys []string
	for k := range n {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s: %d", k, n[k]))
	}
	return strings.Join(parts, ", ")
}
