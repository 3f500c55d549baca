package stages

// Measuring: kernel and end-to-end timings of a packed checkpoint.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/marlin-llm/marlin/kernels"
	"github.com/marlin-llm/marlin/model/arch"
	"github.com/marlin-llm/marlin/model/qmodel"
	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/report"
)

// measure runs Measure on each backend and merges the results.
func (s *benchmarkStage) measure(ctx context.Context, packed string, backends []string, memLimit int64) (*report.Benchmark, error) {
	res := &report.Benchmark{Threads: runtime.GOMAXPROCS(0),
		Note: "best of repeats; timings on a shared machine are noisy"}
	if !s.cfg.F32Activations {
		res.Note += "; CPU decode GEMVs of 4-bit weights quantize activations to int8 blocks of 32 (f32_activations: true turns it off)"
	}
	for _, name := range backends {
		b, err := kernels.Open(name, kernels.Options{F32Activations: s.cfg.F32Activations})
		if err != nil {
			return nil, err
		}
		res.Backend = strings.TrimPrefix(res.Backend+","+b.Name(), ",")
		r, err := Measure(ctx, b, packed, BenchOptions{Prompt: s.cfg.PromptTokens, Decode: s.cfg.DecodeTokens, Repeats: s.cfg.Repeats, Shapes: s.cfg.KernelShapes, MaxF32Bytes: memLimit})
		if err != nil {
			return nil, err
		}
		if r.Note != "" {
			res.Note += "; " + b.Name() + ": " + r.Note
		}
		res.Kernels = append(res.Kernels, r.Kernels...)
		res.E2E = append(res.E2E, r.E2E...)
	}
	return res, nil
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
