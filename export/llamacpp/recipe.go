package llamacpp

import (
	"fmt"
	"path"
	"sort"
	"strings"

	exp "github.com/marlin-llm/marlin/export"
	"github.com/marlin-llm/marlin/model/gguf"
	"github.com/marlin-llm/marlin/quant/ggml"
)

// MixQ4KM is the one mixture recipe: llama-quantize's Q4_K_M.
const MixQ4KM = "q4_k_m"

// q4kmFileType is general.file_type of q4_k_m (LLAMA_FTYPE_MOSTLY_Q4_K_M).
const q4kmFileType = 15

// Recipes lists the gguf_type values AssignTypes accepts: the registry's
// recipe types (ggml.Types with Recipe set) and q4_k_m. Every recipe
// keeps 1-D tensors (norms, biases) and MoE routers in F32, as llama.cpp's
// converter and llama-quantize do.
//
//   - f32, f16, bf16: every matrix in that float type (f16 is what
//     llama.cpp's converter writes by default).
//   - a block type (q8_0, q4_k, ...): every matrix in that type ("pure",
//     like llama-quantize --pure); a matrix whose rows do not fill whole
//     blocks falls back as llama-quantize does (the row's Fallback, then
//     f16).
//   - q4_k_m: llama-quantize's Q4_K_M mixture (llama_tensor_get_type for
//     LLAMA_FTYPE_MOSTLY_Q4_K_M): Q4_K by default, Q6_K for the output
//     matrix (or tied embeddings) and for attn_v / ffn_down in the layers
//     use_more_bits picks, Q8_0 attn_k/attn_v and Q5_K attn_output in
//     8-expert models, with the same shape fallbacks.
func Recipes() []string {
	var r []string
	for _, t := range ggml.Types() {
		if t.Recipe {
			r = append(r, t.Name())
		}
	}
	return append(r, MixQ4KM)
}

// FileType is llama.cpp's general.file_type (enum llama_ftype) of a recipe
// ("q4_k_m", "q8_0"), or of a type's pure recipe; false when the registry
// gives the recipe none.
func FileType(recipe string) (uint32, bool) {
	recipe = strings.ToLower(recipe)
	if recipe == MixQ4KM {
		return q4kmFileType, true
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

// AssignTypes returns the GGUF type of each planned tensor (same order as
// ts) for a recipe, the number of experts (0 for dense models) and
// override rules.
func AssignTypes(ts []*Tensor, recipe string, nExpert int, rules []Rule) ([]gguf.GGMLType, error) {
	if err := ValidateRecipe(recipe, rules); err != nil {
		return nil, err
	}
	recipe = strings.ToLower(recipe)
	tied := true
	nAttnV := 0
	for _, t := range ts {
		if t.Name == "output.weight" {
			tied = false
		}
		if t.Role == RoleAttnV {
			nAttnV++
		}
	}
	nLayer := 0
	for _, t := range ts {
		nLayer = max(nLayer, t.Layer+1)
	}
	out := make([]gguf.GGMLType, len(ts))
	iAttnV, iFFNDown := 0, 0
	for i, t := range ts {
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
			switch recipe {
			case MixQ4KM:
				typ = q4kmType(t, tied, nExpert, &iAttnV, nAttnV, &iFFNDown, nLayer)
			default:
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

// q4kmType is llama_tensor_get_type_impl for LLAMA_FTYPE_MOSTLY_Q4_K_M.
func q4kmType(t *Tensor, tied bool, nExpert int, iAttnV *int, nAttnV int, iFFNDown *int, nLayer int) gguf.GGMLType {
	typ := gguf.TypeQ4_K
	switch {
	case t.Role == RoleOutput || tied && t.Role == RoleEmbed:
		if t.Dims[0]%256 != 0 {
			return gguf.TypeQ8_0
		}
		return gguf.TypeQ6_K
	case t.Role == RoleEmbed:
		return typ
	case t.Role == RoleAttnV:
		if useMoreBits(*iAttnV, nAttnV) {
			typ = gguf.TypeQ6_K
		}
		if nExpert == 8 {
			typ = gguf.TypeQ8_0
		}
		*iAttnV++
	case t.Role == RoleAttnK:
		if nExpert == 8 {
			typ = gguf.TypeQ8_0
		}
	case t.Role == RoleFFNDown:
		layer := *iFFNDown
		if nExpert > 1 {
			layer = t.Layer
		}
		if useMoreBits(layer, nLayer) {
			typ = gguf.TypeQ6_K
		}
		*iFFNDown++
	case t.Role == RoleAttnOut && strings.HasSuffix(t.Name, "attn_output.weight"):
		if nExpert == 8 {
			typ = gguf.TypeQ5_K
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
