// Package calib drives GPTQ-style calibration through marlin's forward pass
// (model/arch): it accumulates one Hessian H = 2XᵀX/n per Linear from the
// inputs the forward pass reports (for routed experts only the tokens routed
// to that expert), counts router decisions, applies a stated policy to
// experts that received too few tokens, and runs sequential quantization
// where layer L is calibrated on the outputs of the already-quantized layers
// < L (and, with true-sequential, each sub-layer on the outputs of the
// already-quantized sub-layers before it, as the reference GPTQ's
// --true-sequential does).
//
// Expert policy (ExpertPolicy): a routed expert whose projection saw fewer
// tokens than its input width (a rank-deficient Hessian) is not skipped and
// does not silently fall back: its Hessian is shrunk towards a pooled
// Hessian, H = (n·H_e + (m−n)·H_pool)/m with m the input width, where
// H_pool is the router input's Hessian for gate_proj/up_proj (all tokens
// entering the MoE block) and the token-weighted mean of the layer's other
// experts' down_proj Hessians for down_proj. An expert with no tokens gets
// H_pool itself. Every expert's token count and the policy applied are in
// the coverage report.
package calib

import (
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/marlin-llm/marlin/kernels"
	"github.com/marlin-llm/marlin/model/arch"
	"github.com/marlin-llm/marlin/model/tensorname"
	"github.com/marlin-llm/marlin/quant/gptq"
)

// inputKey identifies a Linear input within one forward pass, so that
// projections reading the same activations (q/k/v, gate/up) share one
// Hessian instead of accumulating it twice.
type inputKey struct {
	ptr         *float32
	rows, cols  int
	first, last float32
}

// Collector accumulates per-Linear Hessians and router counts through
// arch.Hooks. It is safe for use by one forward pass at a time.
type Collector struct {
	mu      sync.Mutex
	prec    gptq.Precision
	want    func(name string) bool
	hess    map[string]*gptq.Hessian
	alias   map[string]string
	order   []string
	seen    map[string]bool
	last    string
	lastKey inputKey
	counts  map[string][]int64
	err     error
	gemm    gptq.GemmFunc
	keys    map[string]string // name → arch.Proj.InputKey (nil: detect by pointer)
	byKey   map[string]string // input key → first name seen
	// Work done: Hessian accumulation time and operations, and the
	// forward pass's Linear operations (arch.Hooks.Flops).
	hessTime  time.Duration
	hessFlops int64
	fwdFlops  atomic.Int64
}

// Work reports what the passes through the collector's hooks cost so far:
// the seconds spent accumulating Hessians (on the pass's goroutine, so
// part of the pass's wall time), their floating-point operations (the
// upper triangle of each XᵀX: rows·cols·(cols+1)), and the operations of
// the forward pass's Linear products.
func (c *Collector) Work() (hessianSeconds float64, hessianFlops, forwardFlops int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hessTime.Seconds(), c.hessFlops, c.fwdFlops.Load()
}

// UseInputKeys makes projections with the same input key (arch.Proj
// InputKey: q/k/v, gate/up, a router and its shared experts) share one
// Hessian, instead of detecting shared inputs by buffer identity.
func (c *Collector) UseInputKeys(keys map[string]string) {
	c.keys = keys
	c.byKey = map[string]string{}
}

// UseGemm makes the collector's Hessians form XᵀX with g (see
// gptq.Hessian.UseGemm: called on several goroutines at once, each call
// best on its caller's goroutine, as serialGemm's).
func (c *Collector) UseGemm(g gptq.GemmFunc) { c.gemm = g }

// serialGemm is the Sgemm of b's serial variant (kernels.Serial), for
// Hessians that run their tiles in parallel themselves.
func serialGemm(b kernels.Backend) gptq.GemmFunc {
	sb, _ := kernels.Serial(b)
	return sb.Sgemm
}

// NewCollector returns a collector for the Linears want accepts (nil: all).
func NewCollector(prec gptq.Precision, want func(name string) bool) *Collector {
	if want == nil {
		want = func(string) bool { return true }
	}
	return &Collector{prec: prec, want: want, hess: map[string]*gptq.Hessian{},
		alias: map[string]string{}, seen: map[string]bool{}, counts: map[string][]int64{}}
}

// Hooks returns the forward-pass hooks that feed the collector.
func (c *Collector) Hooks() *arch.Hooks {
	return &arch.Hooks{Linear: c.linear, Route: c.route, Flops: &c.fwdFlops}
}

func (c *Collector) linear(name string, x []float32, rows, cols int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil || rows == 0 {
		return
	}
	key := inputKey{ptr: &x[0], rows: rows, cols: cols, first: x[0], last: x[len(x)-1]}
	prev, prevKey := c.last, c.lastKey
	c.last, c.lastKey = name, key
	if !c.want(name) {
		return
	}
	if !c.seen[name] {
		c.seen[name] = true
		c.order = append(c.order, name)
		if c.keys != nil {
			if k, ok := c.keys[name]; ok {
				if first, ok := c.byKey[k]; ok {
					c.alias[name] = c.canonical(first)
				} else {
					c.byKey[k] = name
				}
			}
		} else if prev != "" && prevKey == key && c.want(prev) {
			c.alias[name] = c.canonical(prev)
		}
	}
	if _, ok := c.alias[name]; ok {
		return
	}
	h := c.hess[name]
	if h == nil {
		var err error
		if h, err = gptq.NewHessian(cols, c.prec); err != nil {
			c.err = fmt.Errorf("calib: %s: %w", name, err)
			return
		}
		if c.gemm != nil {
			h.UseGemm(c.gemm)
		}
		c.hess[name] = h
	}
	t0 := time.Now()
	if err := h.Add(x, rows); err != nil {
		c.err = fmt.Errorf("calib: %s: %w", name, err)
	}
	c.hessTime += time.Since(t0)
	c.hessFlops += int64(rows) * int64(cols) * int64(cols+1)
}

func (c *Collector) canonical(name string) string {
	if a, ok := c.alias[name]; ok {
		return a
	}
	return name
}

func (c *Collector) route(r *arch.Routing) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cnt := c.counts[r.Gate]
	if cnt == nil {
		cnt = make([]int64, r.NumExperts)
		c.counts[r.Gate] = cnt
	}
	for _, e := range r.Experts {
		if e >= 0 && int(e) < len(cnt) {
			cnt[e]++
		}
	}
}

// Err reports the first accumulation error (a non-finite activation).
func (c *Collector) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// TakeHessians returns the accumulated Hessians by projection name
// (projections that share an input share one) and drops the collector's
// own references: the caller owns them, and can free each one as it
// finishes with it.
func (c *Collector) TakeHessians() map[string]*gptq.Hessian {
	out := make(map[string]*gptq.Hessian, len(c.order))
	for _, n := range c.order {
		if h := c.hess[c.canonical(n)]; h != nil {
			out[n] = h
		}
	}
	c.hess = map[string]*gptq.Hessian{}
	return out
}

// RouterCounts returns the tokens routed to each expert, per router name.
func (c *Collector) RouterCounts() map[string][]int64 {
	out := make(map[string][]int64, len(c.counts))
	for k, v := range c.counts {
		out[k] = append([]int64(nil), v...)
	}
	return out
}

// expertProj reports whether a module name is a routed expert's gate, up
// or down projection.
func expertProj(name string) bool { return tensorname.ParseModule(name).ExpertProj() }

// ExpertCoverage is one routed expert projection's calibration record.
type ExpertCoverage struct {
	Name   string `json:"name"`
	Expert int    `json:"expert"`
	// Tokens is the number of calibration tokens routed to it.
	Tokens int64 `json:"tokens"`
	// Needed is the threshold (the projection's input width).
	Needed int `json:"needed"`
	// Policy is "own" (enough tokens), "shrunk" (mixed with the pooled
	// Hessian), "pooled" (no tokens: pooled Hessian only) or "rtn" (fewer
	// than Options.MinExpertTokens: rounded to nearest, no Hessian).
	Policy string `json:"policy"`
	// Pool names the pooled Hessian's source.
	Pool string `json:"pool,omitempty"`
}

// ExpertPolicy applies the package's expert policy to hess in place (an
// expert's Hessian is mixed into itself, not copied) for the expert
// projections named in names (all routed experts of the model's
// layers being quantized) and returns their coverage records. Projections
// outside experts are left alone. It fails when an expert has neither
// tokens nor any pooled Hessian to fall back on. With shrinkAll every
// expert's Hessian is mixed with the pooled one, the pool counting as
// many tokens as the projection's input width ((n·h + w·pool)/(n+w), a
// prior of one input width of samples): an expert's own Hessian from a
// few thousand tokens is a noisy estimate of its inputs' second moments.
func ExpertPolicy(hess map[string]*gptq.Hessian, names []string, cols map[string]int, prec gptq.Precision, shrinkAll bool) ([]ExpertCoverage, error) {
	// Pooled down_proj Hessians per MoE block.
	pools := map[string]*gptq.Hessian{}
	for _, n := range names {
		tn := tensorname.ParseModule(n)
		if !tn.ExpertProj() || tn.Proj != "down_proj" {
			continue
		}
		h := hess[n]
		if h == nil || h.Samples() == 0 {
			continue
		}
		p := pools[tn.ExpertBlock]
		if p == nil {
			var err error
			if p, err = gptq.NewHessian(h.Cols(), gptq.F64); err != nil {
				return nil, err
			}
			pools[tn.ExpertBlock] = p
		}
		if err := p.Merge(h); err != nil {
			return nil, fmt.Errorf("calib: pooling %s: %w", n, err)
		}
	}
	var cov []ExpertCoverage
	done := map[*gptq.Hessian]*gptq.Hessian{} // gate/up share one Hessian
	tokensOf := map[*gptq.Hessian]int64{}     // its samples before it was mixed in place
	for _, n := range names {
		tn := tensorname.ParseModule(n)
		if !tn.ExpertProj() {
			continue
		}
		e := tn.Expert
		h := hess[n]
		var tokens int64
		if h != nil {
			var ok bool
			if tokens, ok = tokensOf[h]; !ok {
				tokens = h.Samples()
			}
		}
		need := cols[n]
		rec := ExpertCoverage{Name: n, Expert: e, Tokens: tokens, Needed: need, Policy: "own"}
		if tokens >= int64(need) && !shrinkAll {
			cov = append(cov, rec)
			continue
		}
		var pool *gptq.Hessian
		if tn.Proj == "down_proj" {
			pool, rec.Pool = pools[tn.ExpertBlock], tn.ExpertBlock+".experts.*.down_proj"
		} else {
			pool, rec.Pool = hess[tn.ExpertBlock+".gate"], tn.ExpertBlock+".gate"
		}
		if pool == nil || pool.Samples() == 0 {
			return nil, fmt.Errorf("calib: expert %s got %d tokens and no pooled Hessian (%s) exists", n, tokens, rec.Pool)
		}
		if h != nil {
			if mixed, ok := done[h]; ok {
				hess[n] = mixed
				rec.Policy = "shrunk"
				if tokens == 0 {
					rec.Policy = "pooled"
				}
				cov = append(cov, rec)
				continue
			}
		}
		m := int64(need)
		if shrinkAll {
			m = tokens + int64(need)
		}
		if h != nil {
			tokensOf[h] = tokens
		}
		mixed, err := shrink(h, pool, m, prec)
		if err != nil {
			return nil, fmt.Errorf("calib: %s: %w", n, err)
		}
		if h != nil {
			done[h] = mixed
		}
		hess[n] = mixed
		rec.Policy = "shrunk"
		if tokens == 0 {
			rec.Policy = "pooled"
		}
		cov = append(cov, rec)
	}
	sort.Slice(cov, func(i, j int) bool { return cov[i].Name < cov[j].Name })
	return cov, nil
}

// shrink returns (n·h + (m−n)·pool)/m as a Hessian carrying m samples.
func shrink(h, pool *gptq.Hessian, m int64, prec gptq.Precision) (*gptq.Hessian, error) {
	var n int64
	if h != nil {
		n = h.Samples()
	}
	if h != nil && n > 0 && h.Precision() == prec {
		// In place: merging h into an empty Hessian copies it exactly, so
		// this is what a fresh one would hold, without a second copy of
		// every expert's Hessian while the policy runs.
		if err := h.MergeWeighted(pool, m-n); err != nil {
			return nil, err
		}
		return h, nil
	}
	out, err := gptq.NewHessian(pool.Cols(), prec)
	if err != nil {
		return nil, err
	}
	if n > 0 {
		if err := out.Merge(h); err != nil {
			return nil, err
		}
	}
	if err := out.MergeWeighted(pool, m-n); err != nil {
		return nil, err
	}
	return out, nil
}

// inputKeys maps every projection of m to its input key.
func inputKeys(m *arch.Model) map[string]string {
	k := map[string]string{}
	for _, p := range m.Projs() {
		k[p.Name()] = p.InputKey()
	}
	return k
}
