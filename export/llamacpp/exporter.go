package llamacpp

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"

	exp "github.com/marlin-llm/marlin/export"
	"github.com/marlin-llm/marlin/model/gguf"
	"github.com/marlin-llm/marlin/model/hfconfig"
	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/quant/hadamard"
	"github.com/marlin-llm/marlin/tensor"
)

// Exporter is the pack stage's gguf format: one GGUF file for llama.cpp.
type Exporter struct{}

var _ exp.FileExporter = Exporter{}

// Doc implements exp.Exporter.
func (Exporter) Doc() string { return "llama.cpp" }

// NeedsModel implements exp.Exporter: config.json and the tokenizer
// describe the file.
func (Exporter) NeedsModel() bool { return true }

// Validate implements exp.Exporter: the recipe and the rules.
func (Exporter) Validate(s exp.Settings) []*exp.FieldError {
	recipe := s.GGUFType
	if recipe == "" {
		recipe = DefaultRecipe
	}
	if err := ValidateRecipe(recipe, s.Rules); err != nil {
		return []*exp.FieldError{{Field: "gguf_type", Err: err}}
	}
	return nil
}

// WriteFile implements exp.FileExporter.
func (Exporter) WriteFile(ctx context.Context, out string, s exp.Settings, ws exp.Weights, names []string, plainShapes map[string][]int, log *slog.Logger) (map[string]string, error) {
	cfg, err := hfconfig.Load(s.Model)
	if err != nil {
		return nil, err
	}
	src := weightSource{ws}
	// Logical shapes; packed weights that GGML can hold as they are get a
	// type rule of their own.
	shapes := map[string][]int{}
	auto := map[string]gguf.GGMLType{}
	packedNames := map[string]bool{}
	var unrotated []string
	for _, n := range names {
		if sh, ok := plainShapes[n]; ok {
			shapes[n] = sh // a plain tensor: no need to load it now
			continue
		}
		t, p, err := ws.Main(n)
		if err != nil {
			return nil, err
		}
		shapes[n] = logicalShape(t, p)
		if p != nil && t.Meta[hadamard.MetaInputPlacement] == hadamard.PlacementOnline {
			unrotated = append(unrotated, n)
		}
		if p != nil {
			packedNames[n] = true
			if typ, ok := GGMLTypeFor(p); ok {
				auto[n] = typ
			}
		}
	}
	if shapes["lm_head.weight"] != nil {
		// an untied lm_head (the rotate stage unties it: norms folded
		// into it) must be written even where config.json says tied
		cfg.TieWordEmbeddings = false
	}
	recipe := s.GGUFType
	if recipe == "" {
		recipe = DefaultRecipe
	}
	opt := Options{Recipe: recipe, Rules: s.Rules, Name: s.Name, TokenizerPre: s.TokenizerPre, HasImatrix: s.HasImatrix}
	plan, err := NewPlan(cfg, s.Model, names, func(n string) []int { return shapes[n] }, opt)
	if err != nil {
		return nil, err
	}
	// Transcodable packed weights: a GGUF tensor whose sources all share
	// one GGML-compatible packed format keeps it, unless a user rule named
	// the tensor.
	var rules []Rule
	rules = append(rules, s.Rules...)
	for _, t := range plan.Tensors {
		if len(t.Dims) < 2 {
			continue
		}
		typ, ok := auto[t.Sources[0]]
		for _, src := range t.Sources[1:] {
			ok = ok && auto[src] == typ
		}
		if ok {
			rules = append(rules, Rule{Match: t.Name, Type: typ.String()})
		}
	}
	if len(rules) > len(s.Rules) {
		opt.Rules = rules
		if plan, err = NewPlan(cfg, s.Model, names, func(n string) []int { return shapes[n] }, opt); err != nil {
			return nil, err
		}
	}
	// Packed weights GGML cannot hold as they are are dequantized and
	// re-encoded with the recipe's type: say so.
	var requant []string
	for i, t := range plan.Tensors {
		for _, src := range t.Sources {
			if _, ok := auto[src]; (ok && t.Direct()) || !packedNames[src] {
				continue
			}
			requant = append(requant, t.Name+"→"+plan.Types[i].String())
			break
		}
	}
	if len(unrotated) > 0 && log != nil {
		log.Warn("pack: weights with an online input rotation (MR-GPTQ) are un-rotated and re-encoded: GGML has no online rotation (the native output keeps them exact)", "tensors", len(unrotated), "first", unrotated[0])
	}
	if len(requant) > 0 && log != nil {
		log.Warn("pack: packed weights in formats GGUF cannot store are dequantized and re-encoded", "tensors", len(requant), "first", requant[0])
	}
	if err := plan.Write(ctx, out, src); err != nil {
		return nil, err
	}
	return map[string]string{
		"gguf.arch":    plan.Arch,
		"gguf.tensors": strconv.Itoa(len(plan.Tensors)),
		"gguf.types":   TypeSummary(plan.Types),
	}, nil
}

// weightSource is a Source and BlockSource over exp.Weights.
type weightSource struct{ ws exp.Weights }

// logicalShape is a weight's shape: quant.shape (or rows×cols) for packed
// weights, the tensor's shape otherwise.
func logicalShape(t *tensor.Tensor, p *quant.Packed) []int {
	if p == nil {
		return t.Shape
	}
	if s, err := quant.ParseShape(t.Meta[quant.MetaShape]); err == nil && len(s) > 0 {
		return s
	}
	return []int{p.Rows, p.Cols}
}

// Float32 implements Source.
func (w weightSource) Float32(_ context.Context, name string) ([]float32, error) {
	t, p, err := w.ws.Main(name)
	if err != nil {
		return nil, err
	}
	if p != nil {
		out := make([]float32, p.Rows*p.Cols)
		p.Dequantize(out)
		if r, err := onlineRotation(t, p); err != nil {
			return nil, fmt.Errorf("tensor %q: %w", name, err)
		} else if r != nil {
			// codes are in the rotated basis (W·Rᵀ) and GGML has no online
			// activation rotation: un-rotate, Q·R, before re-encoding
			if err := r.ApplyT(out, p.Rows); err != nil {
				return nil, fmt.Errorf("tensor %q: %w", name, err)
			}
		}
		return out, nil
	}
	return tensor.ToFloat32(t)
}

// onlineRotation returns the input rotation of a packed weight whose
// activation side must be rotated at run time (MR-GPTQ's o_proj/down_proj:
// Meta rotation.input.placement = online), nil otherwise.
func onlineRotation(t *tensor.Tensor, p *quant.Packed) (*hadamard.Rotation, error) {
	if t.Meta[hadamard.MetaInputPlacement] != hadamard.PlacementOnline || t.Meta[hadamard.MetaInput] == "" {
		return nil, nil
	}
	return hadamard.Parse(t.Meta[hadamard.MetaInput], p.Cols)
}

// Blocks implements BlockSource: lossless copies of packed codes into GGML
// blocks.
func (w weightSource) Blocks(_ context.Context, name string, typ gguf.GGMLType) ([]byte, bool, error) {
	t, p, err := w.ws.Main(name)
	if err != nil || p == nil {
		return nil, false, err
	}
	if t.Meta[hadamard.MetaInputPlacement] == hadamard.PlacementOnline {
		return nil, false, nil // rotated basis: Float32 un-rotates, then re-encode
	}
	b, ok := TranscodeGGML(p, typ)
	return b, ok, nil
}
