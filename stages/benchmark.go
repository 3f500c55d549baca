package stages

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/marlin-llm/marlin/pipeline"
)

// BenchmarkConfig configures the benchmark stage: kernel and end-to-end
// throughput of the packed model against the F32 model of its dequantized
// weights, per backend, and the run's report.html / report.json.
type BenchmarkConfig struct {
	// Packed is the native packed checkpoint directory in the output
	// directory (a pack stage's out).
	Packed string `yaml:"packed" json:"packed" jsonschema:"required,description=native packed checkpoint directory in the output directory (a pack stage's out)"`
	// Backends lists kernel backends to measure (default: resources.backend).
	Backends []string `yaml:"backends,omitempty" json:"backends,omitempty" jsonschema:"description=kernel backends to measure (default: the job's resources.backend)"`
	// PromptTokens is the prefill length (default 64).
	PromptTokens int `yaml:"prompt_tokens,omitempty" json:"prompt_tokens,omitempty" jsonschema:"minimum=1,description=prefill tokens (default 64)"`
	// DecodeTokens is the number of decode steps timed (default 32).
	DecodeTokens int `yaml:"decode_tokens,omitempty" json:"decode_tokens,omitempty" jsonschema:"minimum=1,description=decode steps (default 32)"`
	// Repeats is how many times each measurement runs; the best counts (default 3).
	Repeats int `yaml:"repeats,omitempty" json:"repeats,omitempty" jsonschema:"minimum=1,description=repetitions; best counts (default 3)"`
	// KernelShapes adds kernel measurements on seeded random out×in
	// weights quantized (RTN) to each packed format of the model: shapes
	// of a real model, where weights no longer fit in cache.
	KernelShapes [][2]int `yaml:"kernel_shapes,omitempty" json:"kernel_shapes,omitempty" jsonschema:"description=extra [out; in] kernel shapes on random weights (e.g. [[4096; 4096]])"`
	// F32Activations keeps the decode GEMVs of 4-bit weights on float32
	// activations (kernels.Options.F32Activations); by default the CPU
	// backend quantizes them to int8 blocks of 32, as llama.cpp does.
	F32Activations bool `yaml:"f32_activations,omitempty" json:"f32_activations,omitempty" jsonschema:"description=decode GEMVs of 4-bit weights on float32 activations (default: int8 blocks of 32 on the CPU as llama.cpp)"`
	// Out is the JSON result file in the output directory (default benchmark.json).
	Out string `yaml:"out,omitempty" json:"out,omitempty" jsonschema:"description=JSON result file (default benchmark.json)"`
	// NoReport skips writing report.html and report.json.
	NoReport bool `yaml:"no_report,omitempty" json:"no_report,omitempty" jsonschema:"description=do not write report.html / report.json"`
}

// Validate checks the fields.
func (c *BenchmarkConfig) Validate() error {
	var errs []error
	if err := pipeline.CheckOutPath(c.Packed); err != nil {
		errs = append(errs, &pipeline.FieldError{Field: "packed", Err: err})
	}
	if c.Out != "" {
		if err := pipeline.CheckOutPath(c.Out); err != nil {
			errs = append(errs, &pipeline.FieldError{Field: "out", Err: err})
		}
	}
	for i, b := range c.Backends {
		switch b {
		case "auto", "cpu", "metal":
		default:
			errs = append(errs, &pipeline.FieldError{Field: fmt.Sprintf("backends[%d]", i), Err: fmt.Errorf("unknown backend %q (known: auto, cpu, metal)", b)})
		}
	}
	for i, sh := range c.KernelShapes {
		if sh[0] <= 0 || sh[1] <= 0 || int64(sh[0])*int64(sh[1]) > 1<<28 {
			errs = append(errs, &pipeline.FieldError{Field: fmt.Sprintf("kernel_shapes[%d]", i), Err: fmt.Errorf("want 0 < out·in <= 2^28, got %v", sh)})
		}
	}
	if c.PromptTokens < 0 || c.DecodeTokens < 0 || c.Repeats < 0 {
		errs = append(errs, &pipeline.FieldError{Field: "prompt_tokens", Err: errors.New("counts must not be negative")})
	}
	return errors.Join(errs...)
}

// BenchmarkKind is the "benchmark" stage kind.
func BenchmarkKind() pipeline.Kind {
	return pipeline.Kind{
		Name: "benchmark",
		Doc: "dequant-GEMM/GEMV and end-to-end prefill/decode throughput of the packed model vs its F32 dequantization, " +
			"per backend; writes the JSON results, a table and report.html/report.json",
		NewConfig: func() any { return &BenchmarkConfig{PromptTokens: 64, DecodeTokens: 32, Repeats: 3} },
		New: func(cfg any) (pipeline.Stage, error) {
			c, ok := cfg.(*BenchmarkConfig)
			if !ok {
				return nil, fmt.Errorf("benchmark: config is %T", cfg)
			}
			return &benchmarkStage{cfg: *c}, nil
		},
	}
}

type benchmarkStage struct{ cfg BenchmarkConfig }

// BenchmarkKey is the key of the benchmark stage's one task.
const BenchmarkKey = "benchmark"

func (s *benchmarkStage) Plan(ctx context.Context, pc *pipeline.PlanContext) ([]*pipeline.Task, error) {
	if len(pc.Inputs) == 0 {
		return nil, errors.New("benchmark: needs the pack stage that writes the native checkpoint (and optionally validate)")
	}
	var needs []pipeline.TaskRef
	seen := map[pipeline.TaskRef]bool{}
	var packed, validate int64 // from the inputs' estimates
	for _, in := range pc.Inputs {
		for _, t := range in.Tasks {
			switch in.Kind {
			case "pack":
				packed += t.EstBytes / 2 // a shard task estimates twice its bytes
			case "validate":
				validate = max(validate, t.EstBytes)
			}
			for _, r := range append([]pipeline.TaskRef{{Stage: in.ID, Key: t.Key}}, t.Needs...) {
				if !seen[r] {
					seen[r] = true
					needs = append(needs, r)
				}
			}
		}
	}
	backends := s.cfg.Backends
	if len(backends) == 0 {
		b := pc.Resources.Backend
		if b == "" {
			b = "auto"
		}
		backends = []string{b}
	}
	// The packed model and the F32 model of its weights: at most eight
	// times a 4-bit model, and Measure skips it beyond half the budget.
	// Validate holds as much (its estimate covers the unquantized model
	// in F32 and the packed one).
	est := int64(256 << 20)
	if packed > 0 {
		f32 := 8 * packed
		if m := pc.Resources.Memory; m > 0 {
			f32 = min(f32, m/2)
		}
		est = 64<<20 + packed + f32
	} else if validate > 0 {
		est = validate
	}
	return []*pipeline.Task{{
		Key:      BenchmarkKey,
		Needs:    needs,
		EstBytes: est,
		// Timings differ per run, but a finished measurement is kept like
		// any other output: `run --rerun STAGE` measures again.
		// The job name titles the report.
		Meta: map[string]string{"backends": strings.Join(backends, ","), "job": pc.JobName},
		Run:  s.run(needs, backends, cmp.Or(pc.JobName, pc.StageID), pc.Resources.Memory/2),
	}}, nil
}

func (s *benchmarkStage) run(needs []pipeline.TaskRef, backends []string, jobName string, memLimit int64) func(context.Context, *pipeline.TaskEnv) (*pipeline.Output, error) {
	return func(ctx context.Context, env *pipeline.TaskEnv) (*pipeline.Output, error) {
		res, err := s.measure(ctx, filepath.Join(env.OutDir, s.cfg.Packed), backends, memLimit) // benchmark_measure.go
		if err != nil {
			return nil, fmt.Errorf("benchmark: %w", err)
		}
		out, err := s.publish(env, res, needs, jobName) // benchmark_report.go
		if err != nil {
			return nil, fmt.Errorf("benchmark: %w", err)
		}
		return out, nil
	}
}
