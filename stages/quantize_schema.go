package stages

import (
	"fmt"
	"strings"

	"github.com/invopop/jsonschema"

	"github.com/marlin-llm/marlin/export/llamacpp"
	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/quant/gptq"
)

// needsHessian reports whether rq's method needs calibration (a Hessian
// per Linear weight); unknown methods (rejected by Resolve) do not.
func (rq ResolvedQuant) needsHessian() bool {
	m, err := quant.LookupMethod(rq.Method)
	return err == nil && m.NeedsHessian
}

// JSONSchemaExtend writes the parts of the quantize settings' schema that
// come from registries and defaults defined elsewhere, so that they are
// stated once: the format list (quant.Formats), the method enum and its
// description (quant.Methods), the
// GPTQ defaults (gptq.DefaultPercDamp, gptq.DefaultBlockSize) and the
// scale-search grid (quant.ClipGrid). invopop/jsonschema calls it for
// QuantSpec and, through embedding, for QuantRule.
func (QuantSpec) JSONSchemaExtend(s *jsonschema.Schema) {
	if s.Properties == nil {
		return
	}
	if p, ok := s.Properties.Get("format"); ok {
		var names []string
		for _, f := range quant.Formats() {
			names = append(names, f.Name)
		}
		p.Description = "number format (" + strings.Join(names, " ") + ") or skip"
	}
	if p, ok := s.Properties.Get("method"); ok {
		p.Enum = nil
		for _, n := range quant.MethodNames() {
			p.Enum = append(p.Enum, n)
		}
		p.Description = "quantization method: " + methodsDoc()
	}
	if p, ok := s.Properties.Get("clip_ratios"); ok {
		g := quant.ClipGrid[float32]()
		p.Description = fmt.Sprintf("clipping ratios the scale search tries; each > 0 and <= 1 (default %g %g ... %.2f); "+
			"rtn uses them only with scale_search: true; %s search whenever they are set", g[0], g[1], g[len(g)-1], andList(hessianMethods()))
	}
	if p, ok := s.Properties.Get("damp"); ok {
		p.Description = fmt.Sprintf("gptq: dampening added to the Hessian diagonal as a fraction of its mean (default %g; 0 also means %g)",
			gptq.DefaultPercDamp, gptq.DefaultPercDamp)
	}
	if p, ok := s.Properties.Get("block_size"); ok {
		p.Description = fmt.Sprintf("gptq: lazy-batch width in columns; rounded to a multiple of the group size (default %d)", gptq.DefaultBlockSize)
	}
}

// methodsDoc describes the methods for the schema: "rtn (round to nearest;
// default); gptq; or mr-gptq (...); gptq and mr-gptq need a calibrate stage
// upstream".
func methodsDoc() string {
	ms := quant.Methods()
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = m.Name
		if m.Doc != "" {
			parts[i] += " (" + m.Doc + ")"
		}
	}
	if n := len(parts); n > 1 {
		parts[n-1] = "or " + parts[n-1]
	}
	doc := strings.Join(parts, "; ")
	switch h := hessianMethods(); len(h) {
	case 0:
	case 1:
		doc += "; " + h[0] + " needs a calibrate stage upstream"
	default:
		doc += "; " + andList(h) + " need a calibrate stage upstream"
	}
	return doc
}

// hessianMethods names the methods that need calibration.
func hessianMethods() []string {
	var names []string
	for _, m := range quant.Methods() {
		if m.NeedsHessian {
			names = append(names, m.Name)
		}
	}
	return names
}

// andList joins names as English does: "a", "a and b", "a, b and c".
func andList(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// JSONSchemaExtend writes gguf_recipe's enum and description from the
// GGUF recipe list (llamacpp.Recipes).
func (QuantizeConfig) JSONSchemaExtend(s *jsonschema.Schema) {
	if s.Properties == nil {
		return
	}
	if p, ok := s.Properties.Get("gguf_recipe"); ok {
		p.Enum = nil
		for _, r := range llamacpp.Recipes() {
			p.Enum = append(p.Enum, r)
		}
		p.Description = fmt.Sprintf("GGUF recipe whose per-tensor type becomes each tensor's format so that GPTQ runs on that grid: "+
			"llama-quantize's mixtures (%s) or one type for every matrix; rules override it; needs a calibrate stage upstream; "+
			"a gguf pack stage downstream takes it as its gguf_type unless it sets one", strings.Join(llamacpp.Mixtures(), " "))
	}
}
