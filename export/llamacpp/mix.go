package llamacpp

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/marlin-llm/marlin/model/gguf"
)

var (
	blkRe  = regexp.MustCompile(`^blk\.(\d+)\.(.+)$`)
	expsRe = regexp.MustCompile(`^ffn_(gate|up|down)_exps\.weight$`)
)

// SourceGlobs returns the Hugging Face tensor names (path.Match globs for
// stacked experts) a llama.cpp tensor name is made from, and whether the
// tensor is a direct copy of them (false for MLA's attn_k_b / attn_v_b,
// split from kv_b_proj). It is Map run backwards, so that a GGUF made by
// llama-quantize can be turned into per-tensor quantize rules.
func SourceGlobs(name string) ([]string, bool, error) {
	switch name {
	case "token_embd.weight":
		return []string{"model.embed_tokens.weight"}, true, nil
	case "output.weight":
		return []string{"lm_head.weight"}, true, nil
	case "output_norm.weight":
		return []string{"model.norm.weight"}, true, nil
	}
	m := blkRe.FindStringSubmatch(name)
	if m == nil {
		return nil, false, fmt.Errorf("llamacpp: %q is not a tensor name this package writes", name)
	}
	pre := "model.layers." + m[1] + "."
	if e := expsRe.FindStringSubmatch(m[2]); e != nil {
		return []string{pre + "mlp.experts.*." + e[1] + "_proj.weight"}, true, nil
	}
	if m[2] == "attn_k_b.weight" || m[2] == "attn_v_b.weight" {
		return []string{pre + "self_attn.kv_b_proj.weight"}, false, nil
	}
	var out []string
	for hf, v := range simple {
		if v.name == m[2] {
			out = append(out, pre+hf)
		}
	}
	if len(out) == 0 {
		return nil, false, fmt.Errorf("llamacpp: no Hugging Face source for %q", name)
	}
	sort.Strings(out)
	return out, true, nil
}

// MixRule is one tensor's type in a GGUF mixture: the quantize-stage
// glob (Hugging Face names) and format, or, for tensors that are not
// direct copies, a pack rule on the llama.cpp name.
type MixRule struct {
	// Match is the Hugging Face glob (quantize rule) or, when Pack is set,
	// the llama.cpp tensor name (pack rule).
	Match string
	// Format is the marlin quant format name ("q4_k", "skip" for tensors
	// llama.cpp keeps in float).
	Format string
	// Pack marks a pack rule.
	Pack bool
	// Type is the GGML type name.
	Type string
}

// MixFromTensors turns a GGUF's tensor types (llama-quantize's output)
// into quantize and pack rules that reproduce the same mixture. 1-D
// tensors are skipped (always F32); 2-D tensors in float types become
// format skip (the pack writes them from the original weights).
func MixFromTensors(tensors []gguf.TensorInfo) ([]MixRule, error) {
	var out []MixRule
	seen := map[string]bool{}
	for _, ti := range tensors {
		if len(ti.Dims) < 2 {
			continue
		}
		globs, direct, err := SourceGlobs(ti.Name)
		if err != nil {
			return nil, err
		}
		format := strings.ToLower(ti.Type.String())
		switch ti.Type {
		case gguf.TypeF32, gguf.TypeF16, gguf.TypeBF16:
			format = "skip"
		}
		if !direct {
			out = append(out, MixRule{Match: ti.Name, Pack: true, Format: format, Type: ti.Type.String()})
			format = "skip"
		}
		for _, g := range globs {
			if seen[g] {
				continue
			}
			seen[g] = true
			out = append(out, MixRule{Match: g, Format: format, Type: ti.Type.String()})
		}
	}
	return out, nil
}

// GGUFName returns the llama.cpp tensor name of a Hugging Face weight and,
// for a routed expert's projection, its expert index (else −1): the names
// llama-imatrix gives its entries (stacked experts share one name).
func GGUFName(hf string) (string, int, bool) {
	switch hf {
	case "model.embed_tokens.weight":
		return "token_embd.weight", -1, true
	case "lm_head.weight":
		return "output.weight", -1, true
	}
	tn, blk, ok := hfLayer(hf)
	if !ok {
		return "", -1, false
	}
	if tn.Is(expertWeights...) {
		return blk + "ffn_" + strings.TrimSuffix(tn.Proj, "_proj") + "_exps.weight", tn.Expert, true
	}
	if v, ok := simple[tn.Rest]; ok && v.name != "" {
		return blk + v.name, -1, true
	}
	return "", -1, false
}
