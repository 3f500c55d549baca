package bpw

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/marlin-llm/marlin/quant"
)

// DefaultCandidates are the formats a Planner tries when given none: the
// GGML block types from Q2_K to Q8_0 (a policy, not the registry: types
// without an importance-weighted fit or that llama.cpp runs slowly are
// left out).
func DefaultCandidates() []string {
	return []string{"q2_k", "q3_k", "iq4_xs", "q4_k", "q5_k", "q6_k", "q8_0", "q4_0", "q5_0", "q5_1"}
}

// Planner collects the candidates of every tensor of a model and chooses
// one format per group (Add's group: the routed experts llama.cpp stacks
// into one GGUF tensor must share a type) under an average bits per
// weight. It is safe for concurrent use.
type Planner struct {
	formats  []quant.Format
	fixed    quant.Format
	fallback quant.Format
	relative bool

	mu      sync.Mutex
	groups  map[string]*group
	order   []string
	members map[string]string // tensor → group
}

type group struct {
	t       Tensor
	fixed   bool
	formats map[string]int // format → index in t.Options
}

// PlannerOptions configure a Planner.
type PlannerOptions struct {
	// Candidates are the format names tried (default DefaultCandidates).
	Candidates []string
	// Fixed is the format of tensors without importance (embeddings; an
	// lm_head no calibration reaches); default q6_k, or Fallback where
	// its blocks do not fill the rows (default q8_0). They count in the
	// average.
	Fixed, Fallback string
	// Absolute compares tensors by their predicted absolute output error
	// instead of the error relative to the output energy
	// Σ_c diag_c·Σ_r W²_rc (the default, relative, compares them by their
	// signal-to-noise ratio; by absolute error, on qwen3-nano, o_proj and
	// down_proj starve and the KL divergence doubles).
	Absolute bool
}

// NewPlanner returns a Planner; format names are checked.
func NewPlanner(o PlannerOptions) (*Planner, error) {
	p := &Planner{relative: !o.Absolute, groups: map[string]*group{}, members: map[string]string{}}
	names := o.Candidates
	if len(names) == 0 {
		names = DefaultCandidates()
	}
	for _, n := range names {
		f, err := quant.Lookup(strings.TrimSpace(n))
		if err != nil {
			return nil, fmt.Errorf("bpw: candidate: %w", err)
		}
		if !f.Quantized() {
			return nil, fmt.Errorf("bpw: candidate %s is not a quantized format", f.Name)
		}
		p.formats = append(p.formats, f)
	}
	var err error
	fixed, fallback := o.Fixed, o.Fallback
	if fixed == "" {
		fixed = "q6_k"
	}
	if fallback == "" {
		fallback = "q8_0"
	}
	if p.fixed, err = quant.Lookup(fixed); err != nil {
		return nil, fmt.Errorf("bpw: fixed: %w", err)
	}
	if p.fallback, err = quant.Lookup(fallback); err != nil {
		return nil, fmt.Errorf("bpw: fallback: %w", err)
	}
	return p, nil
}

// fits reports whether f can quantize rows of cols weights.
func fits(f quant.Format, cols int) bool {
	return f.Elem != quant.ElemGGML || f.GroupSize <= 0 || cols%f.GroupSize == 0
}

// Add predicts the error of every candidate for tensor name (rows×cols
// weights w) with importance diag (the Hessian diagonal, len cols; nil
// for a tensor without one, which gets the fixed format) and adds it to
// group (the tensors that must share a format; "" means name). Tensors of
// one group must agree on which candidates fit.
func (p *Planner) Add(ctx context.Context, name, grp string, w []float32, rows, cols int, diag []float64) error {
	if grp == "" {
		grp = name
	}
	if len(w) != rows*cols || rows <= 0 || cols <= 0 {
		return fmt.Errorf("bpw: %s: %d weights for %dx%d", name, len(w), rows, cols)
	}
	var opts []Option
	fixed := diag == nil
	if fixed {
		f := p.fixed
		if !fits(f, cols) {
			f = p.fallback
		}
		opts = []Option{{Format: f.Name, BPW: f.BitsPerWeight(rows, cols)}}
	} else {
		if len(diag) != cols {
			return fmt.Errorf("bpw: %s: %d importance values for %d columns", name, len(diag), cols)
		}
		norm := 1.0
		if p.relative {
			var e float64
			for r := 0; r < rows; r++ {
				for c, v := range w[r*cols : (r+1)*cols] {
					e += diag[c] * float64(v) * float64(v)
				}
			}
			if e > 0 {
				norm = 1 / e
			}
		}
		for _, f := range p.formats {
			if !fits(f, cols) {
				continue
			}
			e, b, err := PredictError(ctx, w, rows, cols, f, diag)
			if err != nil {
				return fmt.Errorf("bpw: %s %s: %w", name, f.Name, err)
			}
			opts = append(opts, Option{Format: f.Name, BPW: b, Err: e * norm})
		}
		if len(opts) == 0 {
			return fmt.Errorf("bpw: %s: no candidate fits rows of %d weights", name, cols)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.add(name, grp, rows, cols, fixed, opts)
}

// add merges one tensor's options into its group (p.mu held).
func (p *Planner) add(name, grp string, rows, cols int, fixed bool, opts []Option) error {
	if _, dup := p.members[name]; dup {
		return fmt.Errorf("bpw: %s added twice", name)
	}
	g := p.groups[grp]
	if g == nil {
		g = &group{t: Tensor{Name: grp}, fixed: fixed, formats: map[string]int{}}
		for i, o := range opts {
			g.formats[o.Format] = i
		}
		g.t.Options = make([]Option, len(opts))
		for i, o := range opts {
			g.t.Options[i] = Option{Format: o.Format}
		}
		p.groups[grp] = g
		p.order = append(p.order, grp)
	}
	if g.fixed != fixed || len(g.formats) != len(opts) {
		return fmt.Errorf("bpw: %s: its candidates differ from those of the rest of group %s", name, grp)
	}
	n := float64(rows) * float64(cols)
	for _, o := range opts {
		i, ok := g.formats[o.Format]
		if !ok {
			return fmt.Errorf("bpw: %s: candidate %s is not one of group %s's", name, o.Format, grp)
		}
		// bits per weight averaged over the group's weights
		old := float64(g.t.Weights)
		g.t.Options[i].BPW = (g.t.Options[i].BPW*old + o.BPW*n) / (old + n)
		g.t.Options[i].Err += o.Err
	}
	g.t.Weights += int64(rows) * int64(cols)
	p.members[name] = grp
	return nil
}

// AddFixed adds tensor name (rows×cols) to group at a format the
// allocation does not choose (a rule's); it counts in the average.
func (p *Planner) AddFixed(name, grp string, rows, cols int, format string) error {
	f, err := quant.Lookup(format)
	if err != nil {
		return fmt.Errorf("bpw: %s: %w", name, err)
	}
	if grp == "" {
		grp = name
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.add(name, grp, rows, cols, true, []Option{{Format: f.Name, BPW: f.BitsPerWeight(rows, cols)}})
}

// Result is an allocation: the average reached, the predicted error and
// the choice per group and per tensor.
type Result struct {
	// Target is the bits per weight asked for; BPW the average reached
	// (at most Target) over Weights weights.
	Target  float64 `json:"target"`
	BPW     float64 `json:"bpw"`
	Weights int64   `json:"weights"`
	// Err is the summed predicted error (relative or absolute, see
	// PlannerOptions.Absolute).
	Err float64 `json:"predicted_error"`
	// Relative says Err is a sum of relative errors.
	Relative bool `json:"relative"`
	// Groups is the choice per group, in the order groups were added.
	Groups []Choice `json:"groups"`
	// Formats is the chosen format per tensor name.
	Formats map[string]string `json:"formats"`
}

// Allocate chooses one candidate per group so that the average bits per
// weight is at most target, minimising the summed predicted error.
func (p *Planner) Allocate(target float64) (*Result, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.order) == 0 {
		return nil, errors.New("bpw: no tensors")
	}
	ts := make([]Tensor, len(p.order))
	for i, n := range p.order {
		ts[i] = p.groups[n].t
	}
	choice, err := Allocate(ts, target)
	if err != nil {
		return nil, err
	}
	r := &Result{Target: target, Relative: p.relative, Groups: choice, Formats: map[string]string{}}
	var bits float64
	byGroup := map[string]string{}
	for i, c := range choice {
		bits += c.BPW * float64(ts[i].Weights)
		r.Weights += ts[i].Weights
		r.Err += c.Err
		byGroup[c.Name] = c.Format
	}
	r.BPW = bits / float64(r.Weights)
	for n, g := range p.members {
		r.Formats[n] = byGroup[g]
	}
	return r, nil
}
