package stages

import (
	"fmt"
	"strings"

	"github.com/invopop/jsonschema"

	"github.com/marlin-llm/marlin/export/llamacpp"
	"github.com/marlin-llm/marlin/quant/ggml"
)

// JSONSchemaExtend writes the format enum and description from the
// export-format registry (packFormats), and the gguf_type enum and
// description from the GGUF-type registry (ggml.Types, llamacpp.Recipes),
// so that formats and writable types are listed once. invopop/jsonschema calls it for PackConfig.
func (PackConfig) JSONSchemaExtend(s *jsonschema.Schema) {
	if s.Properties == nil {
		return
	}
	if p, ok := s.Properties.Get("format"); ok {
		p.Enum = nil
		var docs []string
		for _, f := range packFormats() {
			p.Enum = append(p.Enum, f.Name)
			docs = append(docs, f.Name+" ("+f.Doc()+")")
		}
		p.Description = "output format: " + strings.Join(docs, "; ")
	}
	if p, ok := s.Properties.Get("gguf_type"); ok {
		p.Enum = nil
		for _, r := range llamacpp.Recipes() {
			p.Enum = append(p.Enum, r)
		}
		var rulesOnly []string
		for _, t := range ggml.Types() {
			if !t.Recipe {
				rulesOnly = append(rulesOnly, t.Name())
			}
		}
		p.Description = fmt.Sprintf("GGUF type recipe (default %s; or a quantize stage's gguf_recipe upstream): one type for every matrix, or one of llama-quantize's mixtures (%s); "+
			"rules may also name %s; a type whose block does not divide the row size falls back (%s)",
			llamacpp.DefaultRecipe, strings.Join(llamacpp.Mixtures(), " "), strings.Join(rulesOnly, " "), llamacpp.Fallbacks())
	}
}
