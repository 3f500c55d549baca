package pipeline

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// This file holds the YAML node helpers behind Load: the position-keeping
// error type, ${VAR} expansion, --set overrides and the strict field check.
// yaml.v3 offers KnownFields only on a Decoder, not on Node.Decode, and its
// messages carry a line but no column or field path; so unknown fields and
// scalar type errors are found here by walking the node tree alongside the
// target Go type, which yields exact file:line:col and a dotted path.

// PosError is one load or validation error with its position in a job
// file. Error() renders it as "file:line:col: path: message".
type PosError struct {
	File   string
	Line   int
	Column int
	// Origin replaces file:line:col for values that came from a --set
	// override ("--set stages.q.with.format=x").
	Origin string
	// Path is the dotted field path ("stages[3].with.format").
	Path string
	Err  error
}

// Error renders "file:line:col: path: message" (or the --set origin
// instead of the position).
func (e *PosError) Error() string {
	var b strings.Builder
	switch {
	case e.Origin != "":
		b.WriteString(e.Origin)
	case e.Line > 0:
		fmt.Fprintf(&b, "%s:%d:%d", e.File, e.Line, e.Column)
	default:
		b.WriteString(e.File)
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

// Unwrap returns the underlying error.
func (e *PosError) Unwrap() error { return e.Err }

// ErrorList is a list of errors reported together (all problems in a job
// file, not only the first).
type ErrorList []error

// Error joins the errors, one a line.
func (l ErrorList) Error() string {
	s := make([]string, len(l))
	for i, e := range l {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap returns the errors (for errors.Is/As).
func (l ErrorList) Unwrap() []error { return l }

// FieldError lets a ConfigValidator name the offending field inside the
// stage's `with:` block, as a dotted path relative to it ("rules[2].match").
// The loader turns it into the field's exact file:line:col. Validators may
// also return plain errors of the form "field: message"; the loader then
// looks the leading field path up the same way.
type FieldError struct {
	Field string
	Err   error
}

// Error renders "field: message".
func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }

// Unwrap returns the underlying error.
func (e *FieldError) Unwrap() error { return e.Err }

// docCtx carries the file name and --set origins while loading.
type docCtx struct {
	file   string
	origin map[*yaml.Node]string
}

func (d *docCtx) errAt(n *yaml.Node, path string, err error) *PosError {
	pe := &PosError{File: d.file, Path: path, Err: err}
	if n != nil {
		if o, ok := d.origin[n]; ok {
			pe.Origin = o
		} else {
			pe.Line, pe.Column = n.Line, n.Column
		}
	}
	return pe
}

func (d *docCtx) errf(n *yaml.Node, path, format string, args ...any) *PosError {
	return d.errAt(n, path, fmt.Errorf(format, args...))
}

// mapGet returns the value node of key in a mapping node, and the key node.
func mapGet(m *yaml.Node, key string) (val, keyNode *yaml.Node) {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1], m.Content[i]
		}
	}
	return nil, nil
}

// expandEnv replaces ${VAR} and ${VAR:-default} in every scalar value of the
// tree; "$${" escapes a literal "${". Unset variables without default are
// errors. Plain (unquoted) scalars are re-resolved after expansion so that
// `workers: ${N}` decodes as an integer.
func (d *docCtx) expandEnv(n *yaml.Node, getenv func(string) (string, bool), path string, errs *ErrorList) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			d.expandEnv(c, getenv, path, errs)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			d.expandEnv(c, getenv, fmt.Sprintf("%s[%d]", path, i), errs)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			d.expandEnv(n.Content[i+1], getenv, joinPath(path, n.Content[i].Value), errs)
		}
	case yaml.ScalarNode:
		if !strings.Contains(n.Value, "$") {
			return
		}
		v, err := expandString(n.Value, getenv)
		if err != nil {
			*errs = append(*errs, d.errAt(n, path, err))
			return
		}
		if v != n.Value {
			whole := wholeExpr(n.Value)
			n.Value = v
			if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 && whole && n.Tag == "!!str" {
				// A quoted scalar that is one ${...} expression and
				// nothing else ("${G}") takes the type of its value, so
				// that integer, number and boolean fields can be filled
				// from the environment (unquoted, ${G} is a syntax error
				// inside a flow mapping {...}). It keeps its quoted
				// style: string fields still accept it (see
				// isRetaggedQuoted).
				if t := resolveScalarTag(v); t == "!!int" || t == "!!float" || t == "!!bool" {
					n.Tag = t
				}
			}
			if n.Style == 0 && (n.Tag == "!!str" || n.Tag == "") {
				n.Tag = ""
				var tmp yaml.Node
				if yaml.Unmarshal([]byte(v), &tmp) == nil && len(tmp.Content) == 1 && tmp.Content[0].Kind == yaml.ScalarNode {
					n.Tag = tmp.Content[0].Tag
				} else {
					n.Tag = "!!str"
				}
			}
		}
	}
}

// wholeExpr reports whether s is exactly one ${...} expression.
func wholeExpr(s string) bool {
	return strings.HasPrefix(s, "${") && strings.IndexByte(s, '}') == len(s)-1
}

// resolveScalarTag returns the tag YAML gives s as a plain scalar.
func resolveScalarTag(s string) string {
	var tmp yaml.Node
	if yaml.Unmarshal([]byte(s), &tmp) == nil && len(tmp.Content) == 1 && tmp.Content[0].Kind == yaml.ScalarNode {
		return tmp.Content[0].Tag
	}
	return "!!str"
}

// isRetaggedQuoted reports whether n is a quoted scalar that expandEnv
// gave a non-string type ("${G}" with G=4): such a value also fills a
// string field.
func isRetaggedQuoted(n *yaml.Node) bool {
	return n != nil && n.Kind == yaml.ScalarNode && n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 && n.Tag != "!!str" && n.Tag != ""
}

func expandString(s string, getenv func(string) (string, bool)) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); {
		if strings.HasPrefix(s[i:], "$${") {
			b.WriteString("${")
			i += 3
			continue
		}
		if !strings.HasPrefix(s[i:], "${") {
			b.WriteByte(s[i])
			i++
			continue
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "", fmt.Errorf("unterminated ${ in %q", s)
		}
		expr := s[i+2 : i+end]
		name, def, hasDef := strings.Cut(expr, ":-")
		if !envNameOK(name) {
			return "", fmt.Errorf("bad variable name %q in %q", name, s)
		}
		v, ok := getenv(name)
		if !ok || (hasDef && v == "") {
			if !hasDef {
				return "", fmt.Errorf("environment variable %s is not set (use ${%s:-default} for a default)", name, name)
			}
			v = def
		}
		b.WriteString(v)
		i += end + 1
	}
	return b.String(), nil
}

func envNameOK(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func joinPath(base, key string) string {
	if base == "" {
		return key
	}
	return base + "." + key
}

// applySet applies one "path=value" override to the document's root
// mapping. Path elements are mapping keys separated by dots, "[i]" indexes,
// and under "stages" a stage id selects the stage with that id
// ("stages.quant.with.format=mxfp4"). The value is parsed as YAML.
func (d *docCtx) applySet(root *yaml.Node, spec string) error {
	origin := "--set " + spec
	path, val, ok := strings.Cut(spec, "=")
	if !ok || strings.TrimSpace(path) == "" {
		return fmt.Errorf("%s: want path=value", origin)
	}
	var vdoc yaml.Node
	if err := yaml.Unmarshal([]byte(val), &vdoc); err != nil {
		return fmt.Errorf("%s: value: %w", origin, err)
	}
	var vnode *yaml.Node
	if len(vdoc.Content) == 1 {
		vnode = vdoc.Content[0]
	} else {
		vnode = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: ""}
	}
	markOrigin(vnode, origin, d.origin)
	elems, err := splitSetPath(path)
	if err != nil {
		return fmt.Errorf("%s: %w", origin, err)
	}
	cur := root
	for i, el := range elems {
		last := i == len(elems)-1
		if idx, isIdx := el.(int); isIdx {
			if cur.Kind != yaml.SequenceNode || idx < 0 || idx >= len(cur.Content) {
				return fmt.Errorf("%s: index [%d] out of range", origin, idx)
			}
			if last {
				cur.Content[idx] = vnode
				return nil
			}
			cur = cur.Content[idx]
			continue
		}
		key := el.(string)
		if cur.Kind == yaml.SequenceNode {
			// select a sequence element by its id (stages.<id>)
			found := false
			for j, c := range cur.Content {
				if v, _ := mapGet(c, "id"); v != nil && v.Value == key {
					if last {
						cur.Content[j] = vnode
						return nil
					}
					cur, found = c, true
					break
				}
			}
			if !found {
				return fmt.Errorf("%s: no element with id %q", origin, key)
			}
			continue
		}
		if cur.Kind == yaml.ScalarNode && cur.Tag == "!!null" {
			cur.Kind, cur.Tag, cur.Value = yaml.MappingNode, "!!map", ""
		}
		if cur.Kind != yaml.MappingNode {
			return fmt.Errorf("%s: %q is not a mapping", origin, key)
		}
		v, _ := mapGet(cur, key)
		if last {
			if v != nil {
				*v = *vnode
				d.origin[v] = origin
			} else {
				k := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}
				d.origin[k] = origin
				cur.Content = append(cur.Content, k, vnode)
			}
			return nil
		}
		if v == nil {
			k := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}
			v = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
			d.origin[k], d.origin[v] = origin, origin
			cur.Content = append(cur.Content, k, v)
		}
		cur = v
	}
	return nil
}

func markOrigin(n *yaml.Node, origin string, m map[*yaml.Node]string) {
	m[n] = origin
	for _, c := range n.Content {
		markOrigin(c, origin, m)
	}
}

func splitSetPath(p string) ([]any, error) {
	var out []any
	for _, part := range strings.Split(p, ".") {
		for part != "" {
			if i := strings.IndexByte(part, '['); i != 0 {
				name := part
				if i > 0 {
					name = part[:i]
					part = part[i:]
				} else {
					part = ""
				}
				out = append(out, name)
				continue
			}
			j := strings.IndexByte(part, ']')
			if j < 0 {
				return nil, fmt.Errorf("unterminated [ in path %q", p)
			}
			n, err := strconv.Atoi(part[1:j])
			if err != nil {
				return nil, fmt.Errorf("bad index in path %q", p)
			}
			out = append(out, n)
			part = part[j+1:]
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty path")
	}
	return out, nil
}

var (
	yamlUnmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()
	yamlNodeType        = reflect.TypeOf(yaml.Node{})
)

// checkStrict walks n alongside Go type t and reports unknown mapping keys
// (with the list of known ones) and scalars that do not decode into their
// field's type, each with its exact position and path.
func (d *docCtx) checkStrict(n *yaml.Node, t reflect.Type, path string, errs *ErrorList) {
	if n == nil {
		return
	}
	if n.Kind == yaml.DocumentNode {
		for _, c := range n.Content {
			d.checkStrict(c, t, path, errs)
		}
		return
	}
	if n.Kind == yaml.AliasNode {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == yamlNodeType || reflect.PointerTo(t).Implements(yamlUnmarshalerType) || t.Implements(yamlUnmarshalerType) {
		// Custom decoders validate themselves; catch their error here.
		if t != yamlNodeType {
			if err := n.Decode(reflect.New(t).Interface()); err != nil {
				*errs = append(*errs, d.errAt(n, path, cleanYAMLErr(err)))
			}
		}
		return
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			*errs = append(*errs, d.errf(n, path, "expected a mapping, got %s", nodeKindName(n)))
			return
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == "<<" {
				continue
			}
			ft, ok := fields[k.Value]
			if !ok {
				known := make([]string, 0, len(fields))
				for name := range fields {
					known = append(known, name)
				}
				sort.Strings(known)
				*errs = append(*errs, d.errf(k, joinPath(path, k.Value), "unknown field %q (known: %s)%s", k.Value, strings.Join(known, ", "), d.didYouMean(k, path, t)))
				continue
			}
			d.checkStrict(v, ft, joinPath(path, k.Value), errs)
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			if t.Elem().Kind() == reflect.Uint8 && n.Kind == yaml.ScalarNode {
				return
			}
			*errs = append(*errs, d.errf(n, path, "expected a list, got %s", nodeKindName(n)))
			return
		}
		if t.Kind() == reflect.Array && len(n.Content) != t.Len() {
			*errs = append(*errs, d.errf(n, path, "expected %d elements, got %d", t.Len(), len(n.Content)))
			return
		}
		for i, c := range n.Content {
			d.checkStrict(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			*errs = append(*errs, d.errf(n, path, "expected a mapping, got %s", nodeKindName(n)))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if err := k.Decode(reflect.New(t.Key()).Interface()); err != nil {
				*errs = append(*errs, d.errAt(k, joinPath(path, k.Value), cleanYAMLErr(err)))
			}
			d.checkStrict(n.Content[i+1], t.Elem(), joinPath(path, k.Value), errs)
		}
	case reflect.Interface:
		return
	default:
		if n.Kind != yaml.ScalarNode {
			*errs = append(*errs, d.errf(n, path, "expected a %s value, got %s", t.Kind(), nodeKindName(n)))
			return
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			*errs = append(*errs, d.errAt(n, path, cleanYAMLErr(err)))
		}
	}
}

// didYouMean suggests where an unknown key k of struct type t (at path)
// probably belongs: a field of that name one or two levels down
// ("format" -> "default.format") or a field whose name is a near miss
// ("formt" -> "format"). For a key that came from --set the suggestion is
// the corrected --set argument. It returns "" or "; did you mean ...?".
func (d *docCtx) didYouMean(k *yaml.Node, path string, t reflect.Type) string {
	cands := fieldSuggestions(t, k.Value)
	if len(cands) == 0 {
		return ""
	}
	out := make([]string, len(cands))
	for i, c := range cands {
		out[i] = joinPath(path, c)
		if o, ok := d.origin[k]; ok {
			// "--set stages.quant.with.format=nvfp4": keep the user's
			// spelling of the prefix (a stage id, not stages[3]).
			spec := strings.TrimPrefix(o, "--set ")
			if p, v, ok := strings.Cut(spec, "="); ok && strings.HasSuffix(p, k.Value) {
				out[i] = "--set " + strings.TrimSuffix(p, k.Value) + c + "=" + v
			}
		}
	}
	return "; did you mean " + strings.Join(out, " or ") + "?"
}

// fieldSuggestions lists the relative paths under struct type t where key
// is a field (searching nested structs two levels down), or else the
// fields of t whose names are within an edit distance of 2 of key.
func fieldSuggestions(t reflect.Type, key string) []string {
	var out []string
	var walk func(t reflect.Type, prefix string, depth int)
	walk = func(t reflect.Type, prefix string, depth int) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || depth > 2 {
			return
		}
		fields := yamlFields(t)
		names := make([]string, 0, len(fields))
		for n := range fields {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			ft := fields[n]
			if depth > 0 && n == key {
				out = append(out, prefix+n)
			}
			walk(ft, prefix+n+".", depth+1)
		}
	}
	walk(t, "", 0)
	if len(out) > 0 {
		return out
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	for n := range yamlFields(t) {
		if editDistance(strings.ToLower(n), strings.ToLower(key)) <= 2 && len(key) > 2 {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func nodeKindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

// yamlFields maps the YAML keys of struct type t to field types, following
// yaml.v3's rules (lower-cased field name by default, ",inline").
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := make(map[string]reflect.Type)
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.PkgPath != "" && !f.Anonymous {
			continue
		}
		tag := f.Tag.Get("yaml")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if strings.Contains(","+opts+",", ",inline,") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range yamlFields(ft) {
					out[k] = v
				}
			}
			continue
		}
		if f.PkgPath != "" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

// cleanYAMLErr strips yaml.v3's "yaml: unmarshal errors:\n  line N: " framing.
func cleanYAMLErr(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg := te.Errors[0]
		if strings.HasPrefix(msg, "line ") {
			if _, rest, ok := strings.Cut(msg, ": "); ok {
				msg = rest
			}
		}
		return errors.New(msg)
	}
	return err
}

// lookupPath finds the node at a dotted path ("rules[2].match") below n.
func lookupPath(n *yaml.Node, p string) (*yaml.Node, bool) {
	elems, err := splitSetPath(p)
	if err != nil {
		return nil, false
	}
	cur := n
	for _, el := range elems {
		switch e := el.(type) {
		case int:
			if cur.Kind != yaml.SequenceNode || e < 0 || e >= len(cur.Content) {
				return nil, false
			}
			cur = cur.Content[e]
		case string:
			v, _ := mapGet(cur, e)
			if v == nil {
				return nil, false
			}
			cur = v
		}
	}
	return cur, true
}
