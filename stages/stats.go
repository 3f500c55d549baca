package stages

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"path"
	"strconv"

	"github.com/marlin-llm/marlin/pipeline"
	"github.com/marlin-llm/marlin/tensor"
)

// StatsConfig configures the stats stage: per-tensor statistics of the
// tensors produced by the upstream stages.
type StatsConfig struct {
	// Match restricts the statistics to tensor names matching this glob
	// (path.Match syntax; empty: all tensors).
	Match string `yaml:"match,omitempty" json:"match" jsonschema:"description=glob on tensor names (empty: all)"`
	// Out, when set, writes a JSON report of all statistics to this path
	// in the run's output directory.
	Out string `yaml:"out,omitempty" json:"out" jsonschema:"description=JSON report file in the output directory"`
}

// Validate checks the glob and the report path.
func (c *StatsConfig) Validate() error {
	if c.Match != "" {
		if err := pipeline.CheckGlob(c.Match); err != nil {
			return &pipeline.FieldError{Field: "match", Err: err}
		}
	}
	if c.Out != "" {
		if err := pipeline.CheckOutPath(c.Out); err != nil {
			return &pipeline.FieldError{Field: "out", Err: err}
		}
	}
	return nil
}

// StatsKind is the "stats" stage kind.
func StatsKind() pipeline.Kind {
	return pipeline.Kind{
		Name:      "stats",
		Doc:       "per-tensor statistics (count, min, max, mean, std, rms, absmax, NaN/Inf counts) of upstream tensors, optionally as a JSON report",
		NewConfig: func() any { return &StatsConfig{} },
		New: func(cfg any) (pipeline.Stage, error) {
			c, ok := cfg.(*StatsConfig)
			if !ok {
				return nil, fmt.Errorf("stats: config is %T", cfg)
			}
			return &statsStage{cfg: *c}, nil
		},
	}
}

type statsStage struct{ cfg StatsConfig }

// reportKey is the key of the task that writes the JSON report.
const reportKey = "report"

func (s *statsStage) Plan(ctx context.Context, pc *pipeline.PlanContext) ([]*pipeline.Task, error) {
	if len(pc.Inputs) == 0 {
		return nil, fmt.Errorf("stats: needs at least one upstream stage")
	}
	var tasks []*pipeline.Task
	var all []pipeline.TaskRef
	for _, in := range pc.Inputs {
		for _, t := range in.Tasks {
			ref := pipeline.TaskRef{Stage: in.ID, Key: t.Key}
			est := int64(64 << 10 * 4)
			if b := taskBytes(t.Meta); b > 0 {
				est += b
			}
			tasks = append(tasks, &pipeline.Task{
				Key:      in.ID + "/" + t.Key,
				Needs:    []pipeline.TaskRef{ref},
				EstBytes: est,
				Run:      s.runStats(ref),
			})
			all = append(all, pipeline.TaskRef{Stage: pc.StageID, Key: in.ID + "/" + t.Key})
		}
	}
	if s.cfg.Out != "" {
		tasks = append(tasks, &pipeline.Task{
			Key:      reportKey,
			Needs:    all,
			EstBytes: 1 << 20,
			Run:      s.runReport(all),
		})
	}
	return tasks, nil
}

func (s *statsStage) runStats(ref pipeline.TaskRef) func(context.Context, *pipeline.TaskEnv) (*pipeline.Output, error) {
	return func(ctx context.Context, env *pipeline.TaskEnv) (*pipeline.Output, error) {
		in, err := env.Input(ref)
		if err != nil {
			return nil, err
		}
		out := &pipeline.Output{Meta: map[string]string{}}
		for _, t := range in.Tensors {
			if s.cfg.Match != "" {
				if ok, _ := path.Match(s.cfg.Match, t.Name); !ok {
					continue
				}
			}
			st, err := TensorStats(ctx, t)
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				out.Meta[t.Name+".skipped"] = err.Error()
				continue
			}
			for k, v := range st.Map() {
				out.Meta[t.Name+"."+k] = v
			}
		}
		return out, nil
	}
}

func (s *statsStage) runReport(refs []pipeline.TaskRef) func(context.Context, *pipeline.TaskEnv) (*pipeline.Output, error) {
	return func(ctx context.Context, env *pipeline.TaskEnv) (*pipeline.Output, error) {
		report := map[string]map[string]string{}
		for _, r := range refs {
			o, err := env.Input(r)
			if err != nil {
				return nil, err
			}
			report[r.Key] = o.Meta
		}
		data, err := json.MarshalIndent(report, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("stats report: %w", err)
		}
		data = append(data, '\n')
		if err := env.WriteArtifact(s.cfg.Out, data); err != nil {
			return nil, fmt.Errorf("stats report: %w", err)
		}
		return &pipeline.Output{}, nil
	}
}

// Stats are summary statistics of one tensor. Mean, Std, RMS, Min, Max and
// AbsMax are over finite elements; NaN and Inf count the others.
type Stats struct {
	Count             int64
	Min, Max, AbsMax  float64
	Mean, Std, RMS    float64
	NaN, Inf, Finites int64
}

// Map renders the statistics as strings (shortest round-trip formatting).
func (s Stats) Map() map[string]string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	return map[string]string{
		"count": strconv.FormatInt(s.Count, 10), "min": f(s.Min), "max": f(s.Max),
		"absmax": f(s.AbsMax), "mean": f(s.Mean), "std": f(s.Std), "rms": f(s.RMS),
		"nan": strconv.FormatInt(s.NaN, 10), "inf": strconv.FormatInt(s.Inf, 10),
	}
}

// TensorStats computes Stats for a tensor of any dtype tensor.DecodeFloat32
// supports, in chunks of 64Ki elements, with Welford's update in float64
// (numerically stable for data with a large mean).
func TensorStats(ctx context.Context, t *tensor.Tensor) (Stats, error) {
	if err := t.Validate(); err != nil {
		return Stats{}, err
	}
	sz := t.DType.Size()
	n := t.NumElements()
	st := Stats{Count: int64(n), Min: math.Inf(1), Max: math.Inf(-1)}
	const chunk = 1 << 16
	buf := make([]float32, min(chunk, n))
	var mean, m2, sumsq float64 // Welford's running mean and M2
	for off := 0; off < n; off += chunk {
		if err := ctx.Err(); err != nil {
			return Stats{}, err
		}
		m := min(chunk, n-off)
		if err := tensor.DecodeFloat32(buf[:m], t.DType, t.Data[off*sz:(off+m)*sz]); err != nil {
			return Stats{}, err
		}
		for _, f := range buf[:m] {
			v := float64(f)
			switch {
			case math.IsNaN(v):
				st.NaN++
				continue
			case math.IsInf(v, 0):
				st.Inf++
				continue
			}
			st.Finites++
			d := v - mean
			mean += d / float64(st.Finites)
			m2 += d * (v - mean)
			sumsq += v * v
			st.Min = math.Min(st.Min, v)
			st.Max = math.Max(st.Max, v)
			st.AbsMax = math.Max(st.AbsMax, math.Abs(v))
		}
	}
	if st.Finites == 0 {
		st.Min, st.Max = math.NaN(), math.NaN()
		st.Mean, st.Std, st.RMS = math.NaN(), math.NaN(), math.NaN()
		return st, nil
	}
	k := float64(st.Finites)
	st.Mean = mean
	st.RMS = math.Sqrt(sumsq / k)
	st.Std = math.Sqrt(m2 / k) // population standard deviation
	return st, nil
}
