package pipeline

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/invopop/jsonschema"
	sjs "github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
	"gopkg.in/yaml.v3"
)

// SchemaID is the $id of the generated job file schema.
const SchemaID = "https://github.com/marlin-llm/marlin/schemas/pipeline.schema.json"

// GenerateSchema reflects the JSON Schema of job files from JobSpec and the
// config structs of every registered kind (github.com/invopop/jsonschema).
// Each stage entry gets an if/then per kind: `kind: X` selects X's config
// schema for `with`. The output is deterministic (the registry is walked in
// name order) and ends with a newline.
func GenerateSchema(reg *Registry) ([]byte, error) {
	r := &jsonschema.Reflector{
		FieldNameTag:               "yaml",
		RequiredFromJSONSchemaTags: true,
		Namer: func(t reflect.Type) string {
			if t.Name() == "" || t.PkgPath() == "" {
				return ""
			}
			return path.Base(t.PkgPath()) + "." + t.Name()
		},
		Mapper: func(t reflect.Type) *jsonschema.Schema {
			if t == yamlNodeType {
				return &jsonschema.Schema{Type: "object", Description: "configuration of the stage kind"}
			}
			return nil
		},
	}
	top := r.Reflect(&JobSpec{})
	top.ID = SchemaID
	top.Title = "marlin pipeline job"
	top.Description = "A marlin job file: stages of registered kinds forming a DAG through needs."
	stageDef, ok := top.Definitions["pipeline.StageSpec"]
	if !ok {
		return nil, fmt.Errorf("schema: StageSpec definition not found")
	}
	var names []any
	for _, k := range reg.Kinds() {
		names = append(names, k.Name)
		ks := r.Reflect(k.NewConfig())
		for name, def := range ks.Definitions {
			if old, dup := top.Definitions[name]; dup && !sameSchema(old, def) {
				return nil, fmt.Errorf("schema: two config types are named %s", name)
			}
			top.Definitions[name] = def
		}
		ref := ks.Ref
		if ref == "" {
			return nil, fmt.Errorf("schema: kind %q: config schema has no $ref", k.Name)
		}
		if d, ok := top.Definitions[strings.TrimPrefix(ref, "#/$defs/")]; ok && d.Description == "" {
			d.Description = k.Doc
		}
		ifProps := jsonschema.NewProperties()
		ifProps.Set("kind", &jsonschema.Schema{Const: k.Name, Description: "kind " + k.Name + " selects this with: schema"})
		thenProps := jsonschema.NewProperties()
		thenProps.Set("with", &jsonschema.Schema{Ref: ref})
		stageDef.AllOf = append(stageDef.AllOf, &jsonschema.Schema{
			If:   &jsonschema.Schema{Properties: ifProps, Required: []string{"kind"}},
			Then: &jsonschema.Schema{Properties: thenProps},
		})
	}
	if kp, ok := stageDef.Properties.Get("kind"); ok {
		kp.Enum = names
		kp.Description = "registered stage kind"
	}
	out, err := json.MarshalIndent(top, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	return append(out, '\n'), nil
}

func sameSchema(a, b *jsonschema.Schema) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// SchemaValidator validates job documents against the generated schema
// with github.com/santhosh-tekuri/jsonschema/v6 (draft 2020-12).
type SchemaValidator struct {
	sch *sjs.Schema
}

// NewSchemaValidator compiles the schema of reg's kinds.
func NewSchemaValidator(reg *Registry) (*SchemaValidator, error) {
	raw, err := GenerateSchema(reg)
	if err != nil {
		return nil, err
	}
	return CompileSchema(raw)
}

// CompileSchema compiles a schema document (e.g. the checked-in file).
func CompileSchema(raw []byte) (*SchemaValidator, error) {
	doc, err := sjs.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	c := sjs.NewCompiler()
	c.DefaultDraft(sjs.Draft2020)
	if err := c.AddResource(SchemaID, doc); err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	sch, err := c.Compile(SchemaID)
	if err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	return &SchemaValidator{sch: sch}, nil
}

// ValidateBytes checks a job file against the schema (after ${VAR}
// expansion and --set overrides). Violations are returned as an ErrorList
// of *PosError pointing at the offending value.
func (v *SchemaValidator) ValidateBytes(name string, data []byte, opts LoadOptions) error {
	root, origin, err := ParseDocument(name, data, opts)
	if err != nil {
		return err
	}
	var generic any
	if err := root.Decode(&generic); err != nil {
		return ErrorList{&PosError{File: name, Line: 1, Column: 1, Err: fmt.Errorf("decode: %w", err)}}
	}
	js, err := json.Marshal(normalizeYAML(generic))
	if err != nil {
		return ErrorList{&PosError{File: name, Line: 1, Column: 1, Err: fmt.Errorf("convert to JSON: %w", err)}}
	}
	inst, err := sjs.UnmarshalJSON(bytes.NewReader(js))
	if err != nil {
		return ErrorList{&PosError{File: name, Line: 1, Column: 1, Err: fmt.Errorf("convert to JSON: %w", err)}}
	}
	err = v.sch.Validate(inst)
	if err == nil {
		return nil
	}
	ve, ok := err.(*sjs.ValidationError)
	if !ok {
		return fmt.Errorf("%s: schema: %w", name, err)
	}
	d := &docCtx{file: name, origin: origin}
	p := message.NewPrinter(language.English)
	var errs ErrorList
	seen := map[string]bool{}
	skipped := 0
	var walk func(e *sjs.ValidationError)
	walk = func(e *sjs.ValidationError) {
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c)
			}
			return
		}
		n, pth := nodeAt(root, e.InstanceLocation)
		if ap, ok := e.ErrorKind.(*kind.AdditionalProperties); ok && len(ap.Properties) == 1 {
			// point at the unknown key itself
			if _, k := mapGet(n, ap.Properties[0]); k != nil {
				n, pth = k, joinPath(pth, ap.Properties[0])
			}
		}
		if te, ok := e.ErrorKind.(*kind.Type); ok && isRetaggedQuoted(n) && slices.Contains(te.Want, "string") {
			// "${N}" expanded to a number: a string field takes it as text.
			skipped++
			return
		}
		msg := "schema: " + e.ErrorKind.LocalizedString(p)
		key := pth + "\x00" + msg
		if seen[key] {
			return
		}
		seen[key] = true
		errs = append(errs, d.errAt(n, pth, fmt.Errorf("%s", msg)))
	}
	walk(ve)
	if len(errs) == 0 && skipped > 0 {
		return nil
	}
	if len(errs) == 0 {
		errs = append(errs, d.errAt(root, "", fmt.Errorf("schema: %s", ve.LocalizedError(p))))
	}
	return errs
}

// normalizeYAML converts yaml.v3's generic values into JSON-encodable ones
// (map[any]any cannot occur with yaml.v3, but non-string keys can).
func normalizeYAML(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = normalizeYAML(e)
		}
		return x
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = normalizeYAML(e)
		}
		return m
	case []any:
		for i, e := range x {
			x[i] = normalizeYAML(e)
		}
		return x
	}
	return v
}

// nodeAt follows a JSON instance location through the YAML tree and returns
// the deepest node reached and its dotted path.
func nodeAt(root *yaml.Node, loc []string) (*yaml.Node, string) {
	cur, p := root, ""
	for _, el := range loc {
		switch cur.Kind {
		case yaml.MappingNode:
			v, _ := mapGet(cur, el)
			if v == nil {
				return cur, p
			}
			cur, p = v, joinPath(p, el)
		case yaml.SequenceNode:
			i, err := strconv.Atoi(el)
			if err != nil || i < 0 || i >= len(cur.Content) {
				return cur, p
			}
			cur, p = cur.Content[i], fmt.Sprintf("%s[%d]", p, i)
		default:
			return cur, p
		}
	}
	return cur, p
}
