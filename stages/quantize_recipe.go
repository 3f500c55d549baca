package stages

import (
	"fmt"
	"strings"

	"github.com/marlin-llm/marlin/export/llamacpp"
	"github.com/marlin-llm/marlin/model/gguf"
	"github.com/marlin-llm/marlin/model/hfconfig"
	"github.com/marlin-llm/marlin/model/safetensors"
)

// Task Meta keys of quantize tasks quantized by a gguf_recipe, read by the
// pack stage: the recipe, and whether its weights had importance weights.
const (
	MetaGGUFRecipe  = "gguf.recipe"
	metaGGUFImatrix = "gguf.imatrix"
)

// recipeFormats returns the quantize format of every tensor a GGUF
// recipe types (llamacpp.AssignTypes, the same choice the pack stage makes
// for gguf_type): the GGML type of each tensor written as it is, "skip"
// for tensors the recipe keeps in float and for those the GGUF re-arranges
// (MLA's kv_b_proj, split into attn_k_b/attn_v_b: the pack stage encodes
// them from the float weights with the recipe's types). names are the
// Hugging Face tensors, shape gives their shapes.
func recipeFormats(cfg *hfconfig.Config, names []string, shape func(string) ([]int, error), recipe string, hasImatrix bool) (map[string]string, error) {
	shapes := map[string][]int{}
	for _, n := range names {
		sh, err := shape(n)
		if err != nil {
			return nil, err
		}
		shapes[n] = sh
	}
	ts, err := llamacpp.Map(cfg, names, func(n string) []int { return shapes[n] })
	if err != nil {
		return nil, err
	}
	hp := llamacpp.HparamsOf(cfg)
	hp.HasImatrix = hasImatrix
	types, err := llamacpp.AssignTypes(ts, recipe, hp, nil)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for i, t := range ts {
		f := strings.ToLower(types[i].String())
		switch types[i] {
		case gguf.TypeF32, gguf.TypeF16, gguf.TypeBF16:
			f = "skip"
		}
		if !t.Direct() {
			f = "skip"
		}
		for _, s := range t.Sources {
			if len(shapes[s]) == 2 {
				out[s] = f
			}
		}
	}
	return out, nil
}

// planRecipe sets the quantize config's per-tensor formats from its
// gguf_recipe (a no-op without one). model is the calibrated model's
// directory, whose safetensors headers give the shapes of tensors whose
// upstream task does not state one.
func (s *quantizeStage) planRecipe(cfg *hfconfig.Config, ix *tensorIndex, model string) error {
	if s.cfg.GGUFRecipe == "" {
		return nil
	}
	var ck *safetensors.Checkpoint
	defer func() {
		if ck != nil {
			ck.Close()
		}
	}()
	shape := func(n string) ([]int, error) {
		if sh, ok := taskShape(ix.metas[n]); ok {
			return sh, nil
		}
		if ck == nil {
			var err error
			if ck, err = safetensors.Open(model); err != nil {
				return nil, fmt.Errorf("gguf_recipe: shape of %s: %w", n, err)
			}
		}
		info, ok := ck.Info(n)
		if !ok {
			return nil, fmt.Errorf("gguf_recipe: no shape for %s (not in %s)", n, model)
		}
		return info.Shape, nil
	}
	def, err := resolve(QuantSpec{}, s.cfg.Default, -1)
	if err != nil {
		return prefixField("default", err)
	}
	formats, err := recipeFormats(cfg, ix.names, shape, s.cfg.GGUFRecipe, def.needsHessian())
	if err != nil {
		return fmt.Errorf("gguf_recipe: %w", err)
	}
	s.cfg.recipeFormats = formats
	s.imatrix = def.needsHessian()
	return nil
}

// recipeMeta adds the gguf_recipe keys to a tensor task's Meta.
func (s *quantizeStage) recipeMeta(meta map[string]string) {
	if s.cfg.GGUFRecipe == "" {
		return
	}
	meta[MetaGGUFRecipe] = strings.ToLower(s.cfg.GGUFRecipe)
	if s.imatrix {
		meta[metaGGUFImatrix] = "true"
	}
}
