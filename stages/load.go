package stages

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/marlin-llm/marlin/model/gguf"
	"github.com/marlin-llm/marlin/model/hfconfig"
	"github.com/marlin-llm/marlin/model/safetensors"
	"github.com/marlin-llm/marlin/pipeline"
	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/tensor"
)

// LoadConfig configures the load stage: read a model's tensors from a
// safetensors checkpoint (file or directory, sharded or not) or a GGUF file.
type LoadConfig struct {
	// Path is a model directory, a .safetensors file or a .gguf file,
	// relative to the job file's directory.
	Path string `yaml:"path" json:"path" jsonschema:"required,minLength=1,description=model directory or .safetensors/.gguf file (relative to the job file)"`
	// Include keeps only tensors whose names match one of these globs
	// (path.Match syntax; empty: all tensors).
	Include []string `yaml:"include,omitempty" json:"include,omitempty" jsonschema:"description=globs of tensor names to load (empty: all)"`
	// Exclude drops tensors whose names match one of these globs (applied
	// after include).
	Exclude []string `yaml:"exclude,omitempty" json:"exclude,omitempty" jsonschema:"description=globs of tensor names to skip (they are logged); the way to leave out tensors of layers past config.json's num_hidden_layers on purpose"`
	// GroupSmall batches tensors smaller than this many bytes (norms,
	// biases, routers) into shared tasks of up to GroupMax bytes, so that a
	// model with thousands of tiny tensors does not become thousands of
	// tasks. 0 (the default) gives every tensor its own task.
	GroupSmall pipeline.ByteSize `yaml:"group_small,omitempty" json:"group_small,omitempty" jsonschema:"description=tensors below this size share tasks (0: one task per tensor)"`
	// GroupMax bounds the bytes of one group task (default 64MiB).
	GroupMax pipeline.ByteSize `yaml:"group_max,omitempty" json:"group_max,omitempty" jsonschema:"description=largest group task in bytes (default 64MiB)"`
}

// Validate checks the path and globs.
func (c *LoadConfig) Validate() error {
	var errs pipeline.ErrorList
	if strings.TrimSpace(c.Path) == "" {
		errs = append(errs, &pipeline.FieldError{Field: "path", Err: fmt.Errorf("required")})
	}
	for i, g := range c.Include {
		if err := pipeline.CheckGlob(g); err != nil {
			errs = append(errs, &pipeline.FieldError{Field: fmt.Sprintf("include[%d]", i), Err: err})
		}
	}
	for i, g := range c.Exclude {
		if err := pipeline.CheckGlob(g); err != nil {
			errs = append(errs, &pipeline.FieldError{Field: fmt.Sprintf("exclude[%d]", i), Err: err})
		}
	}
	if c.GroupSmall < 0 {
		errs = append(errs, &pipeline.FieldError{Field: "group_small", Err: fmt.Errorf("must be >= 0")})
	}
	if c.GroupMax < 0 {
		errs = append(errs, &pipeline.FieldError{Field: "group_max", Err: fmt.Errorf("must be >= 0")})
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// selected applies the include and exclude globs.
func (c *LoadConfig) selected(name string) bool {
	if len(c.Include) > 0 {
		ok := false
		for _, g := range c.Include {
			if m, _ := path.Match(g, name); m {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for _, g := range c.Exclude {
		if m, _ := path.Match(g, name); m {
			return false
		}
	}
	return true
}

// LoadKind is the "load" stage kind.
func LoadKind() pipeline.Kind {
	return pipeline.Kind{
		Name:      "load",
		Doc:       "read a model's tensors (safetensors dir/file, sharded or not, or GGUF) through mmap, one task per tensor or group of small tensors",
		NewConfig: func() any { return &LoadConfig{} },
		New: func(cfg any) (pipeline.Stage, error) {
			c, ok := cfg.(*LoadConfig)
			if !ok {
				return nil, fmt.Errorf("load: config is %T", cfg)
			}
			return &loadStage{cfg: *c}, nil
		},
	}
}

type loadStage struct {
	cfg LoadConfig

	mu  sync.Mutex
	src loadSource
}

// loadSource abstracts the checkpoint formats.
type loadSource interface {
	names() []string
	entry(name string) (loadEntry, bool)
	tensor(name string) (*tensor.Tensor, error)
}

// loadEntry is what planning knows about one tensor.
type loadEntry struct {
	dtype       string
	shape       []int
	bytes       int64
	fingerprint string
	ggmlType    string
}

func (s *loadStage) open(pc *pipeline.PlanContext) (loadSource, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.src != nil {
		return s.src, nil
	}
	src, err := openLoadSource(s.path(pc))
	if err != nil {
		return nil, err
	}
	s.src = src
	return src, nil
}

// openLoadSource opens a safetensors checkpoint or a GGUF file. The
// mapping stays open for the life of the process: tasks hand out zero-copy
// views of it.
func openLoadSource(p string) (loadSource, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	if !st.IsDir() && gguf.IsFile(p) {
		f, err := gguf.Open(p)
		if err != nil {
			return nil, fmt.Errorf("load: %w", err)
		}
		fp, err := fileFingerprint(p, f.DataOffset)
		if err != nil {
			f.Close()
			return nil, err
		}
		return &ggufSource{f: f, fp: fp}, nil
	}
	ck, err := safetensors.Open(p)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	src := &stSource{ck: ck, fps: map[string]string{}}
	for _, fpath := range ck.Files() {
		fp, err := safetensorsFingerprint(fpath)
		if err != nil {
			ck.Close()
			return nil, err
		}
		src.fps[fpath] = fp
	}
	return src, nil
}

// fileFingerprint identifies a file by base name, size, modification time
// and a SHA-256 of its first hdrLen bytes (the header): a changed file
// re-runs the tasks that read it.
func fileFingerprint(p string, hdrLen int64) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", fmt.Errorf("load: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("load: %w", err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, hdrLen)); err != nil {
		return "", fmt.Errorf("load: %s: %w", p, err)
	}
	return fmt.Sprintf("%s size=%d mtime=%d header=%s", filepath.Base(p), st.Size(), st.ModTime().UnixNano(), hex.EncodeToString(h.Sum(nil)[:12])), nil
}

func safetensorsFingerprint(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", fmt.Errorf("load: %w", err)
	}
	var pre [8]byte
	_, err = io.ReadFull(f, pre[:])
	f.Close()
	if err != nil {
		return "", fmt.Errorf("load: %s: %w", p, err)
	}
	return fileFingerprint(p, 8+int64(binary.LittleEndian.Uint64(pre[:])))
}

type stSource struct {
	ck  *safetensors.Checkpoint
	fps map[string]string
}

func (s *stSource) names() []string { return s.ck.Names() }
func (s *stSource) entry(name string) (loadEntry, bool) {
	ti, ok := s.ck.Info(name)
	if !ok {
		return loadEntry{}, false
	}
	return loadEntry{dtype: ti.DType.String(), shape: ti.Shape, bytes: ti.Size(), fingerprint: s.fps[ti.File]}, true
}
func (s *stSource) tensor(name string) (*tensor.Tensor, error) { return s.ck.Tensor(name) }

// sourceRegions is a load source whose tensors are regions of files that
// the store can reference instead of copying (pipeline.MetaSource).
type sourceRegions interface {
	region(name string) (path string, offset int64, ok bool)
}

func (s *stSource) region(name string) (string, int64, bool) {
	p, off, ok := s.ck.Region(name)
	if !ok {
		return "", 0, false
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", 0, false
	}
	return abs, off, true
}

type ggufSource struct {
	f  *gguf.File
	fp string
}

func (s *ggufSource) names() []string {
	out := make([]string, len(s.f.Tensors))
	for i, t := range s.f.Tensors {
		out[i] = t.Name
	}
	return out
}
func (s *ggufSource) entry(name string) (loadEntry, bool) {
	t, err := s.f.Tensor(name)
	if err != nil {
		return loadEntry{}, false
	}
	return loadEntry{dtype: t.DType.String(), shape: t.Shape, bytes: int64(len(t.Data)), fingerprint: s.fp, ggmlType: t.Meta[MetaGGMLType]}, true
}
func (s *ggufSource) tensor(name string) (*tensor.Tensor, error) { return s.f.Tensor(name) }

// path resolves the configured path against the job directory.
func (s *loadStage) path(pc *pipeline.PlanContext) string {
	p := s.cfg.Path
	if !filepath.IsAbs(p) && pc != nil {
		p = filepath.Join(pc.JobDir, p)
	}
	return p
}

// modelConfig reads config.json beside the model (if any) so downstream
// stages can plan by architecture and the tensors can be checked against
// its layer count. A config hfconfig does not understand is logged and
// left out (nil): loading tensors does not depend on it.
func (s *loadStage) modelConfig(pc *pipeline.PlanContext) *hfconfig.Config {
	dir := s.path(pc)
	if st, err := os.Stat(dir); err == nil && !st.IsDir() {
		dir = filepath.Dir(dir)
	}
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err != nil {
		return nil
	}
	c, err := hfconfig.Load(dir)
	if err != nil {
		if pc != nil && pc.Log != nil {
			pc.Log.Warn("load: config.json not understood; tasks carry no model_type", "err", err)
		}
		return nil
	}
	return c
}

// maxLoggedSkipped bounds the names the "left out" log line lists.
const maxLoggedSkipped = 20

func (s *loadStage) Plan(ctx context.Context, pc *pipeline.PlanContext) ([]*pipeline.Task, error) {
	src, err := s.open(pc)
	if err != nil {
		return nil, err
	}
	var modelType string
	cfg := s.modelConfig(pc)
	if cfg != nil {
		modelType = cfg.ModelType
	}
	groupMax := int64(s.cfg.GroupMax)
	if groupMax == 0 {
		groupMax = 64 << 20
	}
	var tasks []*pipeline.Task
	var group []string
	var groupBytes int64
	flush := func() {
		if len(group) == 0 {
			return
		}
		tasks = append(tasks, s.task(src, "group."+group[0], group, modelType))
		group, groupBytes = nil, 0
	}
	var selected, skipped []string
	for _, name := range src.names() {
		if !s.cfg.selected(name) {
			skipped = append(skipped, name)
			continue
		}
		selected = append(selected, name)
		e, _ := src.entry(name)
		if e.bytes < int64(s.cfg.GroupSmall) {
			if groupBytes+e.bytes > groupMax {
				flush()
			}
			group = append(group, name)
			groupBytes += e.bytes
			continue
		}
		tasks = append(tasks, s.task(src, name, []string{name}, modelType))
	}
	flush()
	if len(selected) == 0 {
		return nil, fmt.Errorf("load: no tensor of %s matches include %v / exclude %v", s.cfg.Path, s.cfg.Include, s.cfg.Exclude)
	}
	if len(skipped) > 0 && pc != nil && pc.Log != nil {
		// include/exclude are the explicit way to leave tensors out: say
		// which ones, since nothing downstream will see them.
		listed := skipped[:min(len(skipped), maxLoggedSkipped)]
		pc.Log.Info("load: tensors left out by include/exclude", "path", s.cfg.Path, "count", len(skipped),
			"tensors", strings.Join(listed, ","), "more", len(skipped)-len(listed))
	}
	if cfg != nil {
		// Tensors of layers the config does not declare would be
		// quantized and then dropped by every consumer (issue 18):
		// refuse them before anything runs.
		if err := cfg.CheckLayers(selected); err != nil {
			return nil, fmt.Errorf("load: %w (fix config.json, or leave them out with exclude globs)", err)
		}
	}
	return tasks, nil
}

func (s *loadStage) task(src loadSource, key string, names []string, modelType string) *pipeline.Task {
	meta := map[string]string{}
	if modelType != "" {
		meta[MetaModel] = modelType
	}
	var total int64
	fps := map[string]bool{}
	for _, n := range names {
		e, _ := src.entry(n)
		total += e.bytes
		fps[e.fingerprint] = true
	}
	if len(names) == 1 {
		e, _ := src.entry(names[0])
		meta[MetaDType] = e.dtype
		meta[MetaShape] = quant.FormatShape(e.shape)
		if e.ggmlType != "" {
			meta[MetaGGMLType] = e.ggmlType
		}
	} else {
		meta[MetaTensors] = strings.Join(names, ",")
	}
	meta[MetaBytes] = strconv.FormatInt(total, 10)
	fpList := make([]string, 0, len(fps))
	for fp := range fps {
		fpList = append(fpList, fp)
	}
	sort.Strings(fpList)
	if ref, ok := src.(sourceRegions); ok {
		// Outputs reference the files by path: a moved model re-runs.
		for _, n := range names {
			if p, _, ok := ref.region(n); ok && !fps["file="+p] {
				fps["file="+p] = true
				fpList = append(fpList, "file="+p)
			}
		}
	}
	return &pipeline.Task{
		Key:         key,
		EstBytes:    total,
		Meta:        meta,
		Fingerprint: strings.Join(fpList, "; "),
		Run: func(ctx context.Context, env *pipeline.TaskEnv) (*pipeline.Output, error) {
			out := &pipeline.Output{}
			for i, n := range names {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				t, err := src.tensor(n)
				if err != nil {
					return nil, fmt.Errorf("load: %w", err)
				}
				if ref, ok := src.(sourceRegions); ok {
					// Stored by reference to the source file (no copy in
					// the workdir): hash the mapped bytes, dropping them.
					if path, off, ok := ref.region(n); ok {
						sum := hashDropping(t.Data)
						if t.Meta == nil {
							t.Meta = map[string]string{}
						}
						t.Meta[pipeline.MetaSource] = pipeline.SourceRegion(path, off, int64(len(t.Data)), sum)
						out.Tensors = append(out.Tensors, t)
						if env != nil && env.Progress != nil {
							env.Progress(int64(i+1), int64(len(names)))
						}
						continue
					}
				}
				// Copy out of the mapping and drop the mapped pages as the
				// copy proceeds: the copy is garbage once the runner has
				// stored it (the GC limit follows resources.memory), while
				// touched mapped pages would stay resident for the whole run.
				t.Data = copyDropping(t.Data)
				out.Tensors = append(out.Tensors, t)
				if env != nil && env.Progress != nil {
					env.Progress(int64(i+1), int64(len(names)))
				}
			}
			return out, nil
		},
	}
}
