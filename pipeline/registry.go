package pipeline

import (
	"fmt"
	"path"
	"reflect"
	"regexp"
	"sort"
)

// Registry maps stage kind names to their Kind. It is built once (see
// stages.Register) and handed to Load, the schema generator and the runner;
// there is no global registry.
type Registry struct {
	kinds map[string]*Kind
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{kinds: make(map[string]*Kind)}
}

var kindNameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)

// Register adds a stage kind. The name must be lower-case
// ([a-z][a-z0-9_-]*) and unused, NewConfig must return a non-nil pointer to
// a struct, and New must be set.
func (r *Registry) Register(k Kind) error {
	if !kindNameRE.MatchString(k.Name) {
		return fmt.Errorf("register stage kind %q: name must match %s", k.Name, kindNameRE)
	}
	if _, dup := r.kinds[k.Name]; dup {
		return fmt.Errorf("register stage kind %q: already registered", k.Name)
	}
	if k.Version < 0 {
		return fmt.Errorf("register stage kind %q: negative version %d", k.Name, k.Version)
	}
	if k.NewConfig == nil || k.New == nil {
		return fmt.Errorf("register stage kind %q: NewConfig and New are required", k.Name)
	}
	cfg := k.NewConfig()
	if v := reflect.ValueOf(cfg); !v.IsValid() || v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("register stage kind %q: NewConfig must return a non-nil pointer to a struct, got %T", k.Name, cfg)
	}
	kk := k
	r.kinds[k.Name] = &kk
	return nil
}

// MustRegister is Register for program start-up code; it panics on error.
func (r *Registry) MustRegister(k Kind) {
	if err := r.Register(k); err != nil {
		panic(err)
	}
}

// Lookup returns the kind registered under name.
func (r *Registry) Lookup(name string) (*Kind, bool) {
	k, ok := r.kinds[name]
	return k, ok
}

// Names returns the registered kind names, sorted.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.kinds))
	for n := range r.kinds {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Kinds returns the registered kinds sorted by name.
func (r *Registry) Kinds() []*Kind {
	out := make([]*Kind, 0, len(r.kinds))
	for _, n := range r.Names() {
		out = append(out, r.kinds[n])
	}
	return out
}

// CheckGlob reports whether pattern is a valid path.Match glob (the syntax
// of tensor-name rules in job files: *, ?, [...]).
func CheckGlob(pattern string) error {
	if _, err := path.Match(pattern, ""); err != nil {
		return fmt.Errorf("bad glob %q: %w", pattern, err)
	}
	return nil
}
