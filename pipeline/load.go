package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// JobSpec is the document shape of a job file (what the JSON Schema
// describes). Load decodes it strictly and turns it into a Job.
type JobSpec struct {
	// Version of the job file format; must be 1.
	Version int `yaml:"version" json:"version" jsonschema:"required,enum=1,description=job file format version; must be 1"`
	// Name of the job (defaults to the file name without extension).
	Name string `yaml:"name,omitempty" json:"name,omitempty" jsonschema:"description=job name (default: the job file name without its extension)"`
	// Workdir holds checkpoints and outputs; relative to the job file.
	Workdir string `yaml:"workdir,omitempty" json:"workdir,omitempty" jsonschema:"description=directory for checkpoints and outputs; a relative path is relative to the job file (default runs/{name}; the --workdir flag overrides it)"`
	// Resources bound the run.
	Resources ResourcesSpec `yaml:"resources,omitempty" json:"resources,omitempty" jsonschema:"description=resource bounds of the run"`
	// Stages in any order; `needs` defines the graph.
	Stages []StageSpec `yaml:"stages" json:"stages" jsonschema:"required,minItems=1,description=stages in any order; needs defines the graph"`
}

// ResourcesSpec is the `resources:` block.
type ResourcesSpec struct {
	// Memory is the admission budget for tasks in flight (0 or absent: unlimited).
	Memory ByteSize `yaml:"memory,omitempty" json:"memory,omitempty" jsonschema:"description=memory budget for admitting tasks in flight (0 or absent: unlimited)"`
	// Workers is the number of tasks run at once (0: GOMAXPROCS).
	Workers int `yaml:"workers,omitempty" json:"workers,omitempty" jsonschema:"minimum=0,description=number of tasks run at once (0 or absent: GOMAXPROCS)"`
	// Backend selects the compute backend.
	Backend string `yaml:"backend,omitempty" json:"backend,omitempty" jsonschema:"enum=auto,enum=cpu,enum=metal,description=compute backend for stages that run kernels (default auto: the first accelerated backend that opens or else cpu)"`
	// AllowOverBudget runs tasks whose estimate exceeds the memory budget
	// or the machine's memory (alone) instead of refusing the job.
	AllowOverBudget bool `yaml:"allow_over_budget,omitempty" json:"allow_over_budget,omitempty" jsonschema:"description=run tasks whose memory estimate exceeds the budget or the machine's memory (each alone; holding the whole budget) instead of refusing the job before anything runs (default false; marlin-run run --allow-over-budget does the same)"`
}

// StageSpec is one entry of `stages:`.
type StageSpec struct {
	// ID names the stage within the job.
	ID string `yaml:"id" json:"id" jsonschema:"required,pattern=^[A-Za-z][A-Za-z0-9_-]*$,description=stage id; unique within the job: a letter followed by letters/digits/_/-"`
	// Kind is a registered stage kind.
	Kind string `yaml:"kind" json:"kind" jsonschema:"required"`
	// Needs lists the ids of upstream stages.
	Needs []string `yaml:"needs,omitempty" json:"needs,omitempty" jsonschema:"description=ids of the upstream stages whose outputs this stage reads (no cycles)"`
	// With is the kind's configuration.
	With yaml.Node `yaml:"with,omitempty" json:"with,omitempty" jsonschema:"description=configuration of the stage kind (its fields are listed under the kind)"`
}

// Job is a loaded and validated job file.
type Job struct {
	// File is the job file path as given; Dir its absolute directory.
	File string
	Dir  string
	// Name is the job name.
	Name string
	// Workdir is the absolute working directory.
	Workdir string
	// Resources are the effective resource settings (defaults applied).
	Resources Resources
	// Stages in file order.
	Stages []*JobStage
}

// JobStage is one configured stage of a job.
type JobStage struct {
	ID    string
	Kind  *Kind
	Needs []string
	// Config is the decoded, validated config (NewConfig's pointer type).
	Config any
	// ConfigJSON is the canonical JSON of Config; it is part of every
	// task identity of this stage.
	ConfigJSON []byte
	// Pos is "file:line:col" of the stage entry, for messages.
	Pos string
}

// Stage returns the job stage with the given id.
func (j *Job) Stage(id string) *JobStage {
	for _, s := range j.Stages {
		if s.ID == id {
			return s
		}
	}
	return nil
}

// LoadOptions tune Load.
type LoadOptions struct {
	// Set holds "path=value" overrides applied after ${VAR} expansion and
	// before validation ("stages.quant.with.default.format=nvfp4").
	Set []string
	// Getenv looks up variables for ${VAR}; nil means os.LookupEnv.
	Getenv func(string) (string, bool)
	// Workdir, when set, overrides the job's workdir.
	Workdir string
}

var stageIDRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]*$`)

// Load reads and validates a job file. Every problem found is reported
// (as an ErrorList of *PosError) with file:line:col and the field path.
func Load(path string, reg *Registry, opts LoadOptions) (*Job, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load job: %w", err)
	}
	return LoadBytes(path, data, reg, opts)
}

// ParseDocument parses job file bytes into a YAML node tree with ${VAR}
// expansion and --set overrides applied. It is the first step of Load and
// of schema validation.
func ParseDocument(name string, data []byte, opts LoadOptions) (*yaml.Node, map[*yaml.Node]string, error) {
	d := &docCtx{file: name, origin: map[*yaml.Node]string{}}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, nil, syntaxError(name, data, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, nil, ErrorList{&PosError{File: name, Line: 1, Column: 1, Err: errors.New("empty job file")}}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, nil, ErrorList{d.errf(root, "", "job file must be a mapping, got %s", nodeKindName(root))}
	}
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.LookupEnv
	}
	var errs ErrorList
	d.expandEnv(root, getenv, "", &errs)
	if len(errs) > 0 {
		return nil, nil, errs
	}
	for _, s := range opts.Set {
		if err := d.applySet(root, s); err != nil {
			return nil, nil, err
		}
	}
	return root, d.origin, nil
}

// unquotedVarRE finds a ${VAR} written as an unquoted flow value.
var unquotedVarRE = regexp.MustCompile(`[{\[,][^"'{}\[\]]*?(?::\s*)?(\$\{[^}"']*\})`)

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError turns a yaml.v3 parse error ("yaml: line 3: ...") into a
// PosError. yaml.v3 does not report a column for syntax errors; the column
// given is that of the line's first non-blank character.
func syntaxError(name string, data []byte, err error) error {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		col := 1
		lines := strings.Split(string(data), "\n")
		if line >= 1 && line <= len(lines) {
			col = len(lines[line-1]) - len(strings.TrimLeft(lines[line-1], " \t")) + 1
		}
		msg := m[2]
		for l := max(line-1, 1); l <= min(line+1, len(lines)); l++ {
			if m := unquotedVarRE.FindStringSubmatch(lines[l-1]); m != nil {
				msg += fmt.Sprintf(" (line %d: an unquoted %s cannot stand inside a flow {...} or [...]: write \"%s\", which also fills number and boolean fields)", l, m[1], m[1])
				break
			}
		}
		return ErrorList{&PosError{File: name, Line: line, Column: col, Err: fmt.Errorf("yaml syntax: %s", msg)}}
	}
	return ErrorList{&PosError{File: name, Line: 1, Column: 1, Err: fmt.Errorf("yaml syntax: %s", strings.TrimPrefix(msg, "yaml: "))}}
}

// LoadBytes is Load on the bytes of a file named name.
func LoadBytes(name string, data []byte, reg *Registry, opts LoadOptions) (*Job, error) {
	root, origin, err := ParseDocument(name, data, opts)
	if err != nil {
		return nil, err
	}
	d := &docCtx{file: name, origin: origin}
	var errs ErrorList
	d.checkStrict(root, reflect.TypeOf(JobSpec{}), "", &errs)
	if len(errs) > 0 {
		return nil, errs
	}
	var spec JobSpec
	if err := root.Decode(&spec); err != nil {
		return nil, ErrorList{d.errAt(root, "", cleanYAMLErr(err))}
	}
	absFile, err := filepath.Abs(name)
	if err != nil {
		return nil, fmt.Errorf("load job: %w", err)
	}
	job := &Job{File: name, Dir: filepath.Dir(absFile), Name: spec.Name}
	if job.Name == "" {
		job.Name = strings.TrimSuffix(filepath.Base(name), filepath.Ext(name))
	}
	if v, _ := mapGet(root, "version"); v == nil {
		errs = append(errs, d.errf(root, "version", "missing (want version: 1)"))
	} else if spec.Version != 1 {
		errs = append(errs, d.errf(v, "version", "unsupported version %d (want 1)", spec.Version))
	}
	// resources
	resNode, _ := mapGet(root, "resources")
	job.Resources = Resources{Memory: int64(spec.Resources.Memory), Workers: spec.Resources.Workers, Backend: spec.Resources.Backend,
		AllowOverBudget: spec.Resources.AllowOverBudget}
	if job.Resources.Workers < 0 {
		n, _ := mapGet(resNode, "workers")
		errs = append(errs, d.errf(n, "resources.workers", "must be >= 0, got %d", job.Resources.Workers))
	}
	if job.Resources.Workers == 0 {
		job.Resources.Workers = runtime.GOMAXPROCS(0)
	}
	switch job.Resources.Backend {
	case "":
		job.Resources.Backend = "auto"
	case "auto", "cpu", "metal":
	default:
		n, _ := mapGet(resNode, "backend")
		errs = append(errs, d.errf(n, "resources.backend", "unknown backend %q (known: auto, cpu, metal)", job.Resources.Backend))
	}
	// workdir
	wd := spec.Workdir
	if opts.Workdir != "" {
		wd = opts.Workdir
	} else if wd == "" {
		wd = filepath.Join("runs", job.Name)
	}
	if !filepath.IsAbs(wd) {
		if opts.Workdir != "" {
			wd, _ = filepath.Abs(wd)
		} else {
			wd = filepath.Join(job.Dir, wd)
		}
	}
	job.Workdir = filepath.Clean(wd)

	stagesNode, _ := mapGet(root, "stages")
	if len(spec.Stages) == 0 {
		errs = append(errs, d.errf(orNode(stagesNode, root), "stages", "at least one stage is required"))
	}
	seen := map[string]int{}
	for i := range spec.Stages {
		ss := &spec.Stages[i]
		sn := stagesNode.Content[i]
		sp := fmt.Sprintf("stages[%d]", i)
		idNode, _ := mapGet(sn, "id")
		kindNode, _ := mapGet(sn, "kind")
		st := &JobStage{ID: ss.ID, Needs: ss.Needs, Pos: fmt.Sprintf("%s:%d:%d", name, sn.Line, sn.Column)}
		switch {
		case idNode == nil:
			errs = append(errs, d.errf(sn, sp+".id", "missing"))
		case !stageIDRE.MatchString(ss.ID):
			errs = append(errs, d.errf(idNode, sp+".id", "invalid id %q (want %s)", ss.ID, stageIDRE))
		default:
			if j, dup := seen[ss.ID]; dup {
				errs = append(errs, d.errf(idNode, sp+".id", "duplicate id %q (also stages[%d])", ss.ID, j))
			}
			seen[ss.ID] = i
		}
		if kindNode == nil {
			errs = append(errs, d.errf(sn, sp+".kind", "missing"))
			job.Stages = append(job.Stages, st)
			continue
		}
		kind, ok := reg.Lookup(ss.Kind)
		if !ok {
			errs = append(errs, d.errf(kindNode, sp+".kind", "unknown stage kind %q (known: %s)", ss.Kind, strings.Join(reg.Names(), ", ")))
			job.Stages = append(job.Stages, st)
			continue
		}
		st.Kind = kind
		cfg := kind.NewConfig()
		withNode, _ := mapGet(sn, "with")
		if withNode != nil {
			before := len(errs)
			d.checkStrict(withNode, reflect.TypeOf(cfg), sp+".with", &errs)
			if len(errs) == before {
				if err := withNode.Decode(cfg); err != nil {
					errs = append(errs, d.errAt(withNode, sp+".with", cleanYAMLErr(err)))
				}
			}
			if len(errs) > before {
				job.Stages = append(job.Stages, st)
				continue
			}
		}
		if v, ok := cfg.(ConfigValidator); ok {
			if err := v.Validate(); err != nil {
				errs = append(errs, d.configError(withNode, sn, sp+".with", err)...)
			}
		}
		st.Config = cfg
		cj, err := json.Marshal(cfg)
		if err != nil {
			errs = append(errs, d.errf(sn, sp+".with", "config does not encode as JSON: %v", err))
		}
		st.ConfigJSON = cj
		job.Stages = append(job.Stages, st)
	}
	// needs: existence and cycles
	for i, ss := range spec.Stages {
		needsNode, _ := mapGet(stagesNode.Content[i], "needs")
		for j, n := range ss.Needs {
			var nn *yaml.Node
			if needsNode != nil && j < len(needsNode.Content) {
				nn = needsNode.Content[j]
			}
			p := fmt.Sprintf("stages[%d].needs[%d]", i, j)
			if _, ok := seen[n]; !ok {
				errs = append(errs, d.errf(nn, p, "unknown stage %q", n))
			} else if n == ss.ID {
				errs = append(errs, d.errf(nn, p, "stage %q needs itself", n))
			}
		}
	}
	if len(errs) == 0 {
		if cyc := findCycle(job.Stages); cyc != nil {
			i := seen[cyc[0]]
			errs = append(errs, d.errf(stagesNode.Content[i], fmt.Sprintf("stages[%d].needs", i), "cycle: %s", strings.Join(cyc, " -> ")))
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return job, nil
}

func orNode(a, b *yaml.Node) *yaml.Node {
	if a != nil {
		return a
	}
	return b
}

// configError positions a ConfigValidator error: a *FieldError (or a
// message starting with a field path that exists in the with block) points
// at that field; otherwise at the with block.
func (d *docCtx) configError(withNode, stageNode *yaml.Node, path string, err error) []error {
	var list ErrorList
	if errors.As(err, &list) {
		var out []error
		for _, e := range list {
			out = append(out, d.configError(withNode, stageNode, path, e)...)
		}
		return out
	}
	if withNode == nil {
		return []error{d.errAt(stageNode, path, err)}
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		if n, ok := lookupPath(withNode, fe.Field); ok {
			return []error{d.errAt(n, path+"."+fe.Field, fe.Err)}
		}
		return []error{d.errAt(withNode, path+"."+fe.Field, fe.Err)}
	}
	if field, rest, ok := strings.Cut(err.Error(), ": "); ok && !strings.ContainsAny(field, " \t") {
		if n, ok := lookupPath(withNode, field); ok {
			return []error{d.errAt(n, path+"."+field, errors.New(rest))}
		}
	}
	return []error{d.errAt(withNode, path, err)}
}

// findCycle returns a stage-id cycle (first id repeated at the end) or nil.
func findCycle(stages []*JobStage) []string {
	byID := map[string]*JobStage{}
	for _, s := range stages {
		byID[s.ID] = s
	}
	state := map[string]int{} // 0 new, 1 on stack, 2 done
	var stack []string
	var visit func(id string) []string
	visit = func(id string) []string {
		state[id] = 1
		stack = append(stack, id)
		for _, n := range byID[id].Needs {
			if _, ok := byID[n]; !ok {
				continue
			}
			switch state[n] {
			case 1:
				for k, s := range stack {
					if s == n {
						return append(append([]string(nil), stack[k:]...), n)
					}
				}
			case 0:
				if c := visit(n); c != nil {
					return c
				}
			}
		}
		stack = stack[:len(stack)-1]
		state[id] = 2
		return nil
	}
	for _, s := range stages {
		if state[s.ID] == 0 {
			if c := visit(s.ID); c != nil {
				return c
			}
		}
	}
	return nil
}
