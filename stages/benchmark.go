package stages

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/marlin-llm/marlin/kernels"
	"github.com/marlin-llm/marlin/model/arch"
	"github.com/marlin-llm/marlin/model/qmodel"
	"github.com/marlin-llm/marlin/pipeline"
	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/report"
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
		fail := func(err error) (*pipeline.Output, error) { return nil, fmt.Errorf("benchmark: %w", err) }
		packed := filepath.Join(env.OutDir, s.cfg.Packed)
		res := &report.Benchmark{Threads: runtime.GOMAXPROCS(0),
			Note: "best of repeats; timings on a shared machine are noisy"}
		if !s.cfg.F32Activations {
			res.Note += "; CPU decode GEMVs of 4-bit weights quantize activations to int8 blocks of 32 (f32_activations: true turns it off)"
		}
		for _, name := range backends {
			b, err := kernels.Open(name, kernels.Options{F32Activations: s.cfg.F32Activations})
			if err != nil {
				return fail(err)
			}
			res.Backend = strings.TrimPrefix(res.Backend+","+b.Name(), ",")
			r, err := Measure(ctx, b, packed, BenchOptions{Prompt: s.cfg.PromptTokens, Decode: s.cfg.DecodeTokens, Repeats: s.cfg.Repeats, Shapes: s.cfg.KernelShapes, MaxF32Bytes: memLimit})
			if err != nil {
				return fail(err)
			}
			if r.Note != "" {
				res.Note += "; " + b.Name() + ": " + r.Note
			}
			res.Kernels = append(res.Kernels, r.Kernels...)
			res.E2E = append(res.E2E, r.E2E...)
		}
		js, err := json.Marshal(res)
		if err != nil {
			return fail(err)
		}
		out := &pipeline.Output{Meta: map[string]string{report.MetaBenchmark: string(js)}}
		name := s.cfg.Out
		if name == "" {
			name = "benchmark.json"
		}
		pretty, _ := json.MarshalIndent(res, "", "  ")
		if err := env.WriteArtifact(name, append(pretty, '\n')); err != nil {
			return fail(err)
		}
		// The table goes to the run's display (env.Text: stderr, not in
		// --log-format json) and, for the record, to benchmark.txt next
		// to the JSON.
		var tbl strings.Builder
		WriteBenchTable(&tbl, res)
		if env.Text != nil {
			fmt.Fprint(env.Text, tbl.String())
		}
		txt := strings.TrimSuffix(name, filepath.Ext(name)) + ".txt"
		if err := env.WriteArtifact(txt, []byte(tbl.String())); err != nil {
			return fail(err)
		}
		if !s.cfg.NoReport {
			doc := &report.Doc{Name: jobName, Generated: time.Now().UTC(), Benchmark: res}
			if err := collectReport(env, needs, doc); err != nil {
				return fail(err)
			}
			js, html, err := report.Render(doc)
			if err != nil {
				return fail(err)
			}
			if err := env.WriteArtifact(report.JSONFile, js); err != nil {
				return fail(err)
			}
			if err := env.WriteArtifact(report.HTMLFile, html); err != nil {
				return fail(err)
			}
		}
		return out, nil
	}
}

// collectReport fills doc's tensors and validation from the outputs of refs.
func collectReport(env *pipeline.TaskEnv, refs []pipeline.TaskRef, doc *report.Doc) error {
	var reps []quant.Report
	for _, r := range refs {
		o, err := env.Input(r)
		if err != nil {
			return err
		}
		if err := AddToReport(doc, o.Meta, &reps); err != nil {
			return fmt.Errorf("%s/%s: %w", r.Stage, r.Key, err)
		}
	}
	if len(reps) > 0 {
		doc.Tensors = report.FromQuant(reps)
		doc.Summary = report.Summarize(doc.Tensors)
	}
	return nil
}

// AddToReport adds what one task output's Meta holds for the report: a
// validation, a benchmark, or quantize reports (appended to reps).
func AddToReport(doc *report.Doc, meta map[string]string, reps *[]quant.Report) error {
	if js := meta[report.MetaValidation]; js != "" {
		var v report.Validation
		if err := json.Unmarshal([]byte(js), &v); err != nil {
			return fmt.Errorf("%s: %w", report.MetaValidation, err)
		}
		doc.Validation = &v
	}
	if js := meta[report.MetaBenchmark]; js != "" {
		var b report.Benchmark
		if err := json.Unmarshal([]byte(js), &b); err != nil {
			return fmt.Errorf("%s: %w", report.MetaBenchmark, err)
		}
		doc.Benchmark = &b
	}
	rs, err := reportsOf(meta)
	if err != nil {
		return fmt.Errorf("%s: %w", metaQuantReports, err)
	}
	*reps = append(*reps, rs...)
	return nil
}

// BenchOptions sets the sizes of Measure.
type BenchOptions struct {
	Prompt, Decode, Repeats int
	// Shapes are extra [out, in] kernel shapes on random weights.
	Shapes [][2]int
	// MaxF32Bytes bounds the dequantized F32 model built for the
	// end-to-end comparison (0: 4 GiB); larger models skip it.
	MaxF32Bytes int64
}

// Measure benchmarks the packed checkpoint in dir on b: dequant-GEMV and
// GEMM of each packed format's largest projection against SGEMM on its
// dequantized weights, and end-to-end prefill and decode (KV cache) of the
// packed model against the F32 model of the dequantized weights.
func Measure(ctx context.Context, b kernels.Backend, dir string, o BenchOptions) (*report.Benchmark, error) {
	if o.Prompt <= 0 {
		o.Prompt = 64
	}
	if o.Decode <= 0 {
		o.Decode = 32
	}
	if o.Repeats <= 0 {
		o.Repeats = 3
	}
	q, err := qmodel.Load(dir, qmodel.Options{Backend: b})
	if err != nil {
		return nil, err
	}
	defer q.Close()
	res := &report.Benchmark{Backend: b.Name(), Threads: runtime.GOMAXPROCS(0)}
	// Kernels: the largest packed projection of each format.
	largest := map[string]*quant.Packed{}
	var packedBytes, denseBytes int64
	for _, p := range q.Projs() {
		out, in := p.Linear().Dims()
		denseBytes += int64(out) * int64(in) * 4
		qz, ok := p.Linear().(*arch.Quantized)
		if !ok {
			continue
		}
		m := qz.Matrix()
		packedBytes += int64(len(m.Codes) + len(m.Scales) + len(m.Zeros) + 4*len(m.GIdx))
		f := m.Format.String()
		if l := largest[f]; l == nil || m.Rows*m.Cols > l.Rows*l.Cols {
			largest[f] = m
		}
	}
	var fmts []string
	for f := range largest {
		fmts = append(fmts, f)
	}
	sort.Strings(fmts)
	type job struct {
		f string
		m *quant.Packed
	}
	var jobs []job
	for _, f := range fmts {
		jobs = append(jobs, job{f, largest[f]})
	}
	for _, sh := range o.Shapes {
		rng := rand.New(rand.NewPCG(uint64(sh[0]), uint64(sh[1])))
		w := make([]float32, sh[0]*sh[1])
		for i := range w {
			w[i] = float32(rng.NormFloat64()) * 0.02
		}
		for _, f := range fmts {
			m := largest[f]
			p, err := quant.Quantize(w, sh[0], sh[1], m.Format, nil)
			if err != nil {
				return nil, fmt.Errorf("kernel shape %v: %w", sh, err)
			}
			jobs = append(jobs, job{f, p})
		}
	}
	for _, j := range jobs {
		f, m := j.f, j.m
		w := make([]float32, m.Rows*m.Cols)
		m.Dequantize(w)
		wb := float64(len(m.Codes) + len(m.Scales) + len(m.Zeros))
		// Prepared once, as the model's projections are.
		pw, err := kernels.Prepare(b, m)
		if err != nil {
			return nil, err
		}
		for _, rows := range []int{1, o.Prompt} {
			op := "gemm"
			if rows == 1 {
				op = "gemv"
			}
			x := make([]float32, rows*m.Cols)
			for i := range x {
				x[i] = float32(i%17)*0.01 - 0.08
			}
			y := make([]float32, rows*m.Rows)
			flops := 2 * float64(rows) * float64(m.Rows) * float64(m.Cols)
			tq, err := bestTime(ctx, o.Repeats, func() error { return pw.DequantGEMM(rows, x, m.Cols, 0, y, m.Rows) })
			if err != nil {
				return nil, err
			}
			tf, err := bestTime(ctx, o.Repeats, func() error {
				return b.Sgemm(false, true, rows, m.Rows, m.Cols, 1, x, m.Cols, w, m.Cols, 0, y, m.Rows)
			})
			if err != nil {
				return nil, err
			}
			res.Kernels = append(res.Kernels,
				report.KernelResult{Backend: b.Name(), Format: "f32", Op: op, Rows: rows, Out: m.Rows, In: m.Cols, Seconds: tf, GFLOPs: flops / tf / 1e9, GBs: float64(len(w)*4) / tf / 1e9},
				report.KernelResult{Backend: b.Name(), Format: f, Op: op, Rows: rows, Out: m.Rows, In: m.Cols, Seconds: tq, GFLOPs: flops / tq / 1e9, GBs: wb / tq / 1e9})
		}
	}
	label := strings.Join(fmts, "+")
	type variant struct {
		name  string
		m     *arch.Model
		bytes int64
	}
	variants := []variant{{label + " packed", q.Model, packedBytes + (denseBytes - 4*sumPackedWeights(q))}}
	limit := o.MaxF32Bytes
	if limit == 0 {
		limit = 4 << 30
	}
	if denseBytes <= limit {
		d, err := qmodel.Load(dir, qmodel.Options{Backend: b, Dequantize: true})
		if err != nil {
			return nil, err
		}
		defer d.Close()
		variants = append([]variant{{"f32", d.Model, denseBytes}}, variants...)
	} else {
		res.Note = fmt.Sprintf("F32 end-to-end comparison skipped: the dequantized model would need %.1f GiB (limit %.1f GiB)",
			float64(denseBytes)/(1<<30), float64(limit)/(1<<30))
	}
	for _, v := range variants {
		pre, dec, err := e2e(ctx, v.m, o)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", v.name, err)
		}
		res.E2E = append(res.E2E, report.E2EResult{Backend: b.Name(), Format: v.name, PromptTokens: o.Prompt, DecodeTokens: o.Decode,
			PrefillTokS: pre, DecodeTokS: dec, WeightBytes: v.bytes})
	}
	return res, nil
}

func sumPackedWeights(q *qmodel.Model) int64 {
	var n int64
	for _, p := range q.Projs() {
		if qz, ok := p.Linear().(*arch.Quantized); ok {
			n += int64(qz.Matrix().Rows) * int64(qz.Matrix().Cols)
		}
	}
	return n
}

// bestTime returns the best per-call seconds of fn over repeats rounds,
// each long enough (≥ 20 ms) to time.
func bestTime(ctx context.Context, repeats int, fn func() error) (float64, error) {
	if err := fn(); err != nil { // warm up
		return 0, err
	}
	n := 1
	for {
		t0 := time.Now()
		for i := 0; i < n; i++ {
			if err := fn(); err != nil {
				return 0, err
			}
		}
		if el := time.Since(t0); el > 20*time.Millisecond || n > 1<<20 {
			break
		}
		n *= 4
	}
	best := 0.0
	for r := 0; r < repeats; r++ {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		t0 := time.Now()
		for i := 0; i < n; i++ {
			if err := fn(); err != nil {
				return 0, err
			}
		}
		s := time.Since(t0).Seconds() / float64(n)
		if r == 0 || s < best {
			best = s
		}
	}
	return best, nil
}

// e2e times prefill of o.Prompt tokens and o.Decode greedy decode steps
// with a KV cache; it returns tokens per second of each (best of repeats).
func e2e(ctx context.Context, m *arch.Model, o BenchOptions) (prefill, decode float64, err error) {
	ids := make([]int32, o.Prompt)
	for i := range ids {
		ids[i] = int32((i*7919 + 13) % m.Vocab())
	}
	c, err := m.NewCache(o.Prompt + o.Decode)
	if err != nil {
		return 0, 0, err
	}
	for r := 0; r < o.Repeats; r++ {
		c.Reset()
		t0 := time.Now()
		logits, err := m.Decode(ctx, c, ids)
		if err != nil {
			return 0, 0, err
		}
		tp := time.Since(t0).Seconds()
		next := Argmax(logits[(len(ids)-1)*m.Vocab():])
		t0 = time.Now()
		for i := 0; i < o.Decode; i++ {
			lg, err := m.Decode(ctx, c, []int32{next})
			if err != nil {
				return 0, 0, err
			}
			next = Argmax(lg)
		}
		td := time.Since(t0).Seconds()
		prefill = max(prefill, float64(o.Prompt)/tp)
		decode = max(decode, float64(o.Decode)/td)
	}
	return prefill, decode, nil
}

// Argmax returns the index of the largest value (the first on ties).
func Argmax(v []float32) int32 {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return int32(best)
}

// WriteBenchTable prints the results as two aligned tables.
func WriteBenchTable(w io.Writer, r *report.Benchmark) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "model\tbackend\tprompt\tprefill tok/s\tdecode tok/s\tweights MiB\tdecode vs f32\t")
	var f32dec float64
	for _, e := range r.E2E {
		if e.Format == "f32" {
			f32dec = e.DecodeTokS
		}
	}
	for _, e := range r.E2E {
		ratio := "-"
		if f32dec > 0 {
			ratio = fmt.Sprintf("%.2fx", e.DecodeTokS/f32dec)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.1f\t%.1f\t%.2f\t%s\t\n", e.Format, e.Backend, e.PromptTokens, e.PrefillTokS, e.DecodeTokS, float64(e.WeightBytes)/(1<<20), ratio)
	}
	fmt.Fprintln(tw, "\t\t\t\t\t\t\t")
	fmt.Fprintln(tw, "kernel\tformat\trows×out×in\tµs/call\tGFLOP/s\tweight GB/s\t\t")
	for _, k := range r.Kernels {
		fmt.Fprintf(tw, "%s\t%s\t%d×%d×%d\t%.1f\t%.2f\t%.2f\t\t\n", k.Op, k.Format, k.Rows, k.Out, k.In, 1e6*k.Seconds, k.GFLOPs, k.GBs)
	}
	tw.Flush()
}
