package calib

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/marlin-llm/marlin/model/arch"
	"github.com/marlin-llm/marlin/model/hfconfig"
	"github.com/marlin-llm/marlin/model/tensorname"
	"github.com/marlin-llm/marlin/quant/gptq"
)

// Options configure calibration runs.
type Options struct {
	// Window is the number of tokens per calibration sample.
	Window int
	// Batch is how many samples one forward call runs (default 8).
	Batch int
	// Precision of the Hessian accumulation (default F32).
	Precision gptq.Precision
	// TrueSequential quantizes a layer's sub-layers one group at a time
	// (q/k/v, then o, then gate/up, then down, ...), each calibrated on
	// the outputs of the already-quantized groups before it.
	TrueSequential bool
	// Progress, when set, receives a line per finished step.
	Progress func(msg string)
	// MinExpertTokens: a routed expert projection that received fewer
	// tokens gets no Hessian (policy "rtn"): the QuantizeFunc rounds it to
	// nearest (0: never).
	MinExpertTokens int
	// AllExperts accumulates every routed expert's Hessians from all
	// tokens entering its MoE block (see arch.Hooks.AllExperts); the
	// layer's output still combines the routed experts only.
	AllExperts bool
	// ShrinkExperts mixes every routed expert's Hessian with the pooled
	// one (see ExpertPolicy), not only those of experts with fewer tokens
	// than their input width.
	ShrinkExperts bool
}

// DefaultBatch is how many windows a calibration pass runs at once when
// Options.Batch is not set.
const DefaultBatch = 8

func (o *Options) batch() int {
	if o.Batch <= 0 {
		return DefaultBatch
	}
	return o.Batch
}

// QuantizeFunc quantizes projs with their Hessians (keyed by Proj.Name) and
// must replace each Proj's Linear with its quantized version, so that later
// calibration sees quantized outputs. It may delete the entries of hess it
// has finished with (Layer does not read them afterwards), which frees
// their memory.
type QuantizeFunc func(ctx context.Context, projs []*arch.Proj, hess map[string]*gptq.Hessian) error

// Report summarises a calibration run.
type Report struct {
	// Tokens is the number of calibration tokens.
	Tokens int `json:"tokens"`
	// Experts is the coverage of every routed expert projection.
	Experts []ExpertCoverage `json:"experts,omitempty"`
	// RouterCounts are the tokens routed to each expert, per router.
	RouterCounts map[string][]int64 `json:"router_counts,omitempty"`
	// Passes is the number of layer forward passes run.
	Passes int `json:"passes"`
	// HessianSeconds is the part of the passes' wall time spent
	// accumulating Hessians; HessianFlops and ForwardFlops count the
	// operations of that accumulation and of the passes' Linear products
	// (Collector.Work). Set by Layer.
	HessianSeconds float64 `json:"hessian_s,omitempty"`
	HessianFlops   int64   `json:"hessian_flops,omitempty"`
	ForwardFlops   int64   `json:"forward_flops,omitempty"`
}

func checkIDs(m *arch.Model, ids []int32, win int) (int, error) {
	if win <= 0 || len(ids) < win || len(ids)%win != 0 {
		return 0, fmt.Errorf("calib: %d tokens is not a whole number of windows of %d", len(ids), win)
	}
	for i, id := range ids {
		if id < 0 || int(id) >= m.Vocab() {
			return 0, fmt.Errorf("calib: token %d at %d outside the vocabulary of %d", id, i, m.Vocab())
		}
	}
	return len(ids) / win, nil
}

// Collect runs the full-precision model over ids (windows of opts.Window
// tokens) and returns the Hessians of the Linears want accepts, with the
// expert policy applied, and the coverage report (non-sequential
// calibration).
func Collect(ctx context.Context, m *arch.Model, ids []int32, opts Options, want func(name string) bool) (map[string]*gptq.Hessian, *Report, error) {
	n, err := checkIDs(m, ids, opts.Window)
	if err != nil {
		return nil, nil, err
	}
	c := NewCollector(opts.Precision, wantWithRouters(want))
	c.UseGemm(serialGemm(m.Backend()))
	c.UseInputKeys(inputKeys(m))
	hooks := c.Hooks()
	for s := 0; s < n; s += opts.batch() {
		k := min(opts.batch(), n-s)
		b := arch.Batch{Seqs: k, Len: opts.Window}
		if _, err := m.Forward(ctx, ids[s*opts.Window:(s+k)*opts.Window], b, hooks); err != nil {
			return nil, nil, fmt.Errorf("calib: %w", err)
		}
		if err := c.Err(); err != nil {
			return nil, nil, err
		}
	}
	hess := c.TakeHessians()
	var names []string
	cols := map[string]int{}
	for _, p := range m.Projs() {
		if want == nil || want(p.Name()) {
			names = append(names, p.Name())
			_, in := p.Linear().Dims()
			cols[p.Name()] = in
		}
	}
	cov, err := ExpertPolicy(hess, names, cols, opts.Precision, opts.ShrinkExperts)
	if err != nil {
		return nil, nil, err
	}
	rep := &Report{Tokens: len(ids), Experts: cov, RouterCounts: c.RouterCounts(), Passes: m.NumLayers()}
	return hess, rep, nil
}

// wantWithRouters also collects MoE routers' inputs (the pooled Hessian of
// the expert policy).
func wantWithRouters(want func(string) bool) func(string) bool {
	return func(n string) bool { return tensorname.ParseModule(n).Router() || want == nil || want(n) }
}

// moeIn and moeDown are the patterns (tensorname.Name.Is) of the
// projections of an MoE block that read its input (router, shared and
// routed experts' gate/up) and of its down projections.
var (
	moeIn = tensorname.MoEPatterns("gate", "shared_experts.gate_proj", "shared_experts.up_proj",
		"shared_expert.gate_proj", "shared_expert.up_proj", "experts.*.gate_proj", "experts.*.up_proj")
	moeDown = tensorname.MoEPatterns("shared_experts.down_proj", "shared_expert.down_proj", "experts.*.down_proj")
)

// role strips the layer and expert indices from a projection name. The
// projections of an MoE block that read its input share one role, and so
// do its down projections: true-sequential quantizes an MoE block in two
// groups, as a dense MLP's gate/up then down (GPTQModel and llm-compressor
// calibrate a block's experts together too).
func role(name string) string {
	tn := tensorname.ParseModule(name)
	if hfconfig.DecoderLayer(tn) < 0 {
		return name
	}
	switch {
	case tn.Is(moeIn...):
		return "mlp.moe.in"
	case tn.Is(moeDown...):
		return "mlp.moe.down"
	}
	return tn.Pattern
}

// Groups is how Layer quantizes a layer's projections (names, in
// execution order, each with its input key, see arch.Proj.InputKey): with
// trueSequential the groups Layer calibrates and quantizes one after the
// other (q/k/v, o, gate/up, down, an MoE block's inputs then its down
// projections), otherwise one group. Memory planning uses it before the
// layer runs; Layer finds the same groups from the calibration pass.
func Groups(names []string, inputKey func(name string) string, trueSequential bool) [][]string {
	if !trueSequential {
		return [][]string{slices.Clone(names)}
	}
	alias := map[string]string{}
	first := map[string]string{}
	for _, n := range names {
		k := inputKey(n)
		if f, ok := first[k]; ok {
			alias[n] = f
		} else {
			first[k] = n
		}
	}
	return stages(names, alias)
}

// stages groups a layer's projections, in execution order, into true-
// sequential stages: projections reading the same input (aliases) or
// sharing a role (the same projection of different experts) share a stage.
func stages(order []string, alias map[string]string) [][]string {
	stageOf := map[string]int{}
	var out [][]string
	for i, n := range order {
		s := -1
		if a, ok := alias[n]; ok {
			if st, ok := stageOf[role(a)]; ok {
				s = st
			}
		}
		if st, ok := stageOf[role(n)]; ok && s < 0 {
			s = st
		}
		if s < 0 && i > 0 {
			// gate_proj/up_proj of one expert: same input as the previous call.
			if a, ok := alias[n]; ok && a == order[i-1] {
				s = stageOf[role(order[i-1])]
			}
		}
		if s < 0 {
			s = len(out)
			out = append(out, nil)
		}
		stageOf[role(n)] = s
		out[s] = append(out[s], n)
	}
	return out
}

// Sequential calibrates and quantizes m layer by layer: the hidden states of
// all calibration windows are kept, each layer's Linears (those include
// accepts) are calibrated on the current hidden states, i.e. the outputs of
// the already-quantized layers before it, quantized by fn (see Layer), and
// the layer is re-run with its quantized weights to produce the next
// layer's inputs.
func Sequential(ctx context.Context, m *arch.Model, ids []int32, opts Options, include func(*arch.Proj) bool, fn QuantizeFunc) (*Report, error) {
	n, err := checkIDs(m, ids, opts.Window)
	if err != nil {
		return nil, err
	}
	h, err := m.Embed(ids)
	if err != nil {
		return nil, fmt.Errorf("calib: %w", err)
	}
	rep := &Report{Tokens: len(ids), RouterCounts: map[string][]int64{}}
	for l := 0; l < m.NumLayers(); l++ {
		ly := m.DecoderLayer(l)
		lr, err := Layer(ctx, ly, h, n, opts, include, fn)
		if err != nil {
			return nil, err
		}
		rep.merge(lr)
		if err := Advance(ctx, ly, h, n, opts); err != nil {
			return nil, err
		}
		rep.Passes++
	}
	return rep, nil
}

// merge adds a layer's report to r (tokens are not summed: every layer
// sees the same calibration tokens).
func (r *Report) merge(lr *Report) {
	if r.RouterCounts == nil {
		r.RouterCounts = map[string][]int64{}
	}
	for k, v := range lr.RouterCounts {
		r.RouterCounts[k] = v
	}
	r.Experts = append(r.Experts, lr.Experts...)
	r.Passes += lr.Passes
	r.Tokens = max(r.Tokens, lr.Tokens)
}

// Advance runs ly over the hidden states h of n windows of opts.Window
// tokens in place, opts.Batch windows per call: h becomes the next layer's
// input.
func Advance(ctx context.Context, ly *arch.Layer, h []float32, n int, opts Options) error {
	W, Hd := opts.Window, ly.Hidden()
	if len(h) != n*W*Hd {
		return fmt.Errorf("calib: %d hidden floats for %d windows of %d×%d", len(h), n, W, Hd)
	}
	for s := 0; s < n; s += opts.batch() {
		k := min(opts.batch(), n-s)
		if err := ly.Forward(ctx, h[s*W*Hd:(s+k)*W*Hd], arch.Batch{Seqs: k, Len: W}, nil); err != nil {
			return fmt.Errorf("calib: %w", err)
		}
	}
	return nil
}

// Layer calibrates and quantizes one decoder layer on h, the hidden states
// at its input for n windows of opts.Window tokens (left unchanged): the
// Linears include accepts (nil: all) get Hessians from passes over h and
// are quantized by fn, which must swap in their quantized Linears. With
// opts.TrueSequential the layer's projections are quantized one group at a
// time (q/k/v, then o, then gate/up, then down, ...), each calibrated on a
// pass through the groups already quantized; otherwise one pass calibrates
// them all. The expert policy (see ExpertPolicy) applies to routed experts.
func Layer(ctx context.Context, ly *arch.Layer, h []float32, n int, opts Options, include func(*arch.Proj) bool, fn QuantizeFunc) (*Report, error) {
	W, Hd := opts.Window, ly.Hidden()
	if len(h) != n*W*Hd {
		return nil, fmt.Errorf("calib: %d hidden floats for %d windows of %d×%d", len(h), n, W, Hd)
	}
	rep := &Report{Tokens: n * W, RouterCounts: map[string][]int64{}}
	keys := map[string]string{}
	projs := map[string]*arch.Proj{}
	cols := map[string]int{}
	for _, p := range ly.Projs() {
		keys[p.Name()] = p.InputKey()
		if include == nil || include(p) {
			projs[p.Name()] = p
			_, cols[p.Name()] = p.Linear().Dims()
		}
	}
	// pass runs the layer over all windows on a scratch copy of h.
	buf := make([]float32, min(opts.batch(), n)*W*Hd)
	pass := func(hooks *arch.Hooks) error {
		rep.Passes++
		for s := 0; s < n; s += opts.batch() {
			k := min(opts.batch(), n-s)
			x := buf[:k*W*Hd]
			copy(x, h[s*W*Hd:(s+k)*W*Hd])
			if err := ly.Forward(ctx, x, arch.Batch{Seqs: k, Len: W}, hooks); err != nil && !errors.Is(err, arch.ErrStopped) {
				return fmt.Errorf("calib: %w", err)
			}
		}
		return nil
	}
	// collect runs a calibration pass for the Linears want accepts; with
	// stopAt it ends each forward pass at the first Linear stopAt accepts
	// (one of a later group: what follows cannot change this group's
	// inputs).
	collect := func(want, stopAt func(string) bool) (*Collector, error) {
		c := NewCollector(opts.Precision, wantWithRouters(want))
		c.UseGemm(serialGemm(ly.Backend()))
		c.UseInputKeys(keys)
		hooks := c.Hooks()
		hooks.AllExperts = opts.AllExperts
		hooks.StopBefore = stopAt
		hooks.InputsOnly = true // the pass's output (a scratch copy) is dropped
		err := pass(hooks)
		hs, hf, ff := c.Work()
		rep.HessianSeconds += hs
		rep.HessianFlops += hf
		rep.ForwardFlops += ff
		if err != nil {
			return nil, err
		}
		return c, c.Err()
	}
	want := func(name string) bool { _, ok := projs[name]; return ok }
	// The groups come from the projections' input keys (Groups), before
	// any pass, so that the first pass accumulates only the first group's
	// Hessians: the later groups' come from their own passes.
	var names []string
	for _, p := range ly.Projs() {
		names = append(names, p.Name())
	}
	var groups [][]string
	for _, g := range Groups(names, func(n string) string { return keys[n] }, opts.TrueSequential) {
		var keep []string
		for _, name := range g {
			if want(name) {
				keep = append(keep, name)
			}
		}
		if keep != nil {
			groups = append(groups, keep)
		}
	}
	first := map[string]bool{}
	if len(groups) > 0 {
		for _, name := range groups[0] {
			first[name] = true
		}
	}
	// The first pass runs the whole layer: the router counts of the report
	// are those of the layer's original weights.
	c, err := collect(func(name string) bool { return first[name] }, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range c.RouterCounts() {
		rep.RouterCounts[k] = v
	}
	groupOf := map[string]int{}
	for gi, g := range groups {
		for _, name := range g {
			groupOf[name] = gi
		}
	}
	// hess alone holds the Hessians (TakeHessians), so that fn can free
	// each one as it finishes with it.
	hess := c.TakeHessians()
	for gi, g := range groups {
		if len(g) == 0 {
			continue
		}
		if gi > 0 {
			inG := map[string]bool{}
			experts := false
			for _, o := range g {
				inG[o] = true
				experts = experts || expertProj(o)
			}
			// Routed experts run expert by expert (gate, up, down of one,
			// then the next): a group holding them needs the whole pass.
			var stopAt func(string) bool
			if !experts {
				stopAt = func(name string) bool { gj, ok := groupOf[name]; return ok && gj > gi }
			}
			if c, err = collect(func(name string) bool { return inG[name] }, stopAt); err != nil {
				return nil, err
			}
			hess = c.TakeHessians()
		}
		rtn := map[string]bool{}
		if opts.MinExpertTokens > 0 {
			for _, name := range g {
				if expertProj(name) && (hess[name] == nil || hess[name].Samples() < int64(opts.MinExpertTokens)) {
					rtn[name] = true
				}
			}
		}
		cov, err := ExpertPolicy(hess, g, cols, opts.Precision, opts.ShrinkExperts)
		if err != nil {
			return nil, err
		}
		for i := range cov {
			if rtn[cov[i].Name] {
				cov[i].Policy, cov[i].Pool = "rtn", ""
			}
		}
		rep.Experts = append(rep.Experts, cov...)
		ps := make([]*arch.Proj, 0, len(g))
		for _, name := range g {
			if rtn[name] {
				delete(hess, name)
			} else if hess[name] == nil {
				return nil, fmt.Errorf("calib: %s received no calibration input", name)
			}
			ps = append(ps, projs[name])
		}
		if err := fn(ctx, ps, hess); err != nil {
			return nil, err
		}
		if opts.Progress != nil {
			opts.Progress(fmt.Sprintf("layer %d group %d: %d projections quantized", ly.Index(), gi, len(ps)))
		}
	}
	return rep, nil
}
