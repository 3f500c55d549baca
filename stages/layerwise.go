package stages

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/marlin-llm/marlin/kernels"
	"github.com/marlin-llm/marlin/model/arch"
	"github.com/marlin-llm/marlin/model/hfconfig"
	"github.com/marlin-llm/marlin/pipeline"
	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/quant/calib"
	"github.com/marlin-llm/marlin/quant/gptq"
	"github.com/marlin-llm/marlin/quant/hadamard"
	"github.com/marlin-llm/marlin/tensor"
)

// This file is the quantize stage's layer-streamed mode, planned when a
// calibrate stage is upstream. A model streams through one decoder layer at
// a time:
//
//	act.0      token embeddings of the calibration windows (transient)
//	layer.L    builds layer L from the upstream weights, runs act.L through
//	           it to accumulate the Hessians (one per distinct input; per
//	           routed expert from its routed tokens), quantizes the layer's
//	           Linears (GPTQ / MR-GPTQ / RTN by the rules, in parallel) and
//	           outputs the layer's packed tensors
//	act.L+1    act.L through layer L: quantized (sequential, the default) or
//	           original (sequential: false) weights (transient)
//	lm_head    with a Hessian method: calibrated on the final-normed act.N
//
// Activations are the only thing that flows between layers; Hessians live
// inside a layer task and are never stored. act.* are transient outputs
// (pipeline.Task.Transient): the runner deletes each once the tasks reading
// it are done, so the workdir holds about two activation snapshots, and a
// killed run resumes at the layer it was in.

// Layer-mode task keys (their Meta keys are in meta.go).
const (
	actKeyPrefix   = "act."
	layerKeyPrefix = "layer."
	lmHeadName     = "lm_head.weight"
)

// layerPlan is what the layer tasks share.
type layerPlan struct {
	s          *quantizeStage
	cfg        *hfconfig.Config
	ix         *tensorIndex
	calRef     pipeline.TaskRef
	stageID    string
	sequential bool
	// trueSequential: one calibration pass per projection group (with
	// sequential), else one per layer.
	trueSequential bool
	prec           gptq.Precision
	allExperts     bool
	minTokens      int
	shrinkExperts  bool
	backend        string
}

// calibrationTask returns the calibrate stage's task among the inputs.
func calibrationTask(inputs []*pipeline.StagePlan) (*pipeline.StagePlan, *pipeline.Task) {
	for _, in := range inputs {
		for _, t := range in.Tasks {
			if t.Key != CalibrationKey {
				continue
			}
			if _, ok := decodeCalibMeta(t.Meta); ok {
				return in, t
			}
		}
	}
	return nil, nil
}

// planLayers plans the layer-streamed tasks (see the file comment).
func (s *quantizeStage) planLayers(pc *pipeline.PlanContext, calStage *pipeline.StagePlan, cal *pipeline.Task) ([]*pipeline.Task, error) {
	if len(pc.Inputs) != 1 {
		return nil, fmt.Errorf("quantize: with a calibrate stage upstream, it must be the only input (got %d)", len(pc.Inputs))
	}
	cm, _ := decodeCalibMeta(cal.Meta)
	var weights []*pipeline.StagePlan
	for _, id := range cm.Inputs {
		sp := pc.Upstream[id]
		if sp == nil {
			return nil, fmt.Errorf("quantize: calibrate stage %q reads stage %q, which is not planned", calStage.ID, id)
		}
		weights = append(weights, sp)
	}
	ix, err := indexTensors(weights)
	if err != nil {
		return nil, fmt.Errorf("quantize: %w", err)
	}
	cfg, err := hfconfig.Load(cm.Model)
	if err != nil {
		return nil, fmt.Errorf("quantize: %w", err)
	}
	if _, ok := ix.refs[lmHeadName]; ok {
		cfg.TieWordEmbeddings = false // the rotate stage unties lm_head
	}
	if err := s.planRecipe(cfg, ix, cm.Model); err != nil {
		return nil, fmt.Errorf("quantize: %w", err)
	}
	lp := &layerPlan{s: s, cfg: cfg, ix: ix, calRef: pipeline.TaskRef{Stage: calStage.ID, Key: cal.Key}, stageID: pc.StageID,
		sequential: cm.Sequential, trueSequential: cm.TrueSequential, prec: gptq.F32, allExperts: cm.AllExperts,
		minTokens: cm.MinExpertTokens, shrinkExperts: cm.ShrinkExperts, backend: pc.Resources.Backend}
	if cm.Precision == "f64" {
		lp.prec = gptq.F64
	}
	actBytes := int64(cm.Samples) * int64(cm.SeqLen) * int64(cfg.HiddenSize) * 4
	batchTokens := int64(min(cm.Samples, calib.DefaultBatch)) * int64(cm.SeqLen)

	perLayer := make([][]string, cfg.NumLayers)
	var others []string
	for _, n := range ix.names {
		if l := hfconfig.LayerIndex(n); l >= 0 && l < cfg.NumLayers {
			perLayer[l] = append(perLayer[l], n)
			continue
		}
		others = append(others, n)
	}
	if _, ok := ix.refs[lp.cfg.EmbedName()]; !ok {
		return nil, fmt.Errorf("quantize: the calibration forward pass needs %s, which no upstream task produces", lp.cfg.EmbedName())
	}
	// Per-layer estimates (layerMemory): what a layer task holds at its peak.
	layerEst := make([]int64, cfg.NumLayers)
	layerF32 := make([]int64, cfg.NumLayers) // the advance task: the layer's F32 weights beside its source
	workers := runtime.GOMAXPROCS(0)
	for l, names := range perLayer {
		if len(names) == 0 {
			return nil, fmt.Errorf("quantize: no upstream tensor of decoder layer %d (config.json says %d layers)", l, cfg.NumLayers)
		}
		m, err := lp.layerMemory(l, names, actBytes, batchTokens, workers)
		if err != nil {
			return nil, fmt.Errorf("quantize: planning %w", err)
		}
		layerF32[l] = m.f32 + m.stored
		layerEst[l] = m.peak()
	}

	headNeedsAct := false
	if _, ok := ix.refs[lmHeadName]; ok {
		rq, err := s.cfg.Resolve(lmHeadName)
		if err != nil {
			return nil, fmt.Errorf("quantize: %s: %w", lmHeadName, err)
		}
		headNeedsAct = lp.headByHessian(rq)
	}
	var tasks []*pipeline.Task
	var bpwNeeds []pipeline.TaskRef // what quantizing tasks wait for: the target_bpw allocation
	if s.bpwPlanned() {
		s.bpw.ref = pipeline.TaskRef{Stage: pc.StageID, Key: bpwKey}
		bpwNeeds = []pipeline.TaskRef{s.bpw.ref}
		var est int64
		for _, e := range layerEst {
			est = max(est, e)
		}
		tasks = append(tasks, &pipeline.Task{
			Key: bpwKey, Needs: append([]pipeline.TaskRef{lp.calRef}, lp.refsOf(ix.names)...),
			EstBytes: est, Meta: map[string]string{MetaInternal: "true"}, Run: lp.runBPW(),
		})
	}
	act := func(l int) pipeline.TaskRef {
		return pipeline.TaskRef{Stage: pc.StageID, Key: actKeyPrefix + strconv.Itoa(l)}
	}
	layer := func(l int) pipeline.TaskRef {
		return pipeline.TaskRef{Stage: pc.StageID, Key: layerKeyPrefix + strconv.Itoa(l)}
	}
	internal := func(extra map[string]string) map[string]string {
		m := map[string]string{MetaInternal: "true", metaCalibSequential: strconv.FormatBool(lp.sequential)}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	tasks = append(tasks, &pipeline.Task{
		Key: act(0).Key, Needs: []pipeline.TaskRef{lp.calRef, ix.refs[lp.cfg.EmbedName()]}, Transient: true,
		EstBytes: 2*actBytes + 64<<20, Meta: internal(nil), Run: lp.runEmbed(),
	})
	for l, names := range perLayer {
		needs := lp.refsOf(names)
		var stored int64
		for _, n := range names {
			stored += taskBytes(ix.metas[n])
		}
		meta := map[string]string{MetaTensors: strings.Join(names, ","), MetaBytes: strconv.FormatInt(stored, 10), metaLayer: strconv.Itoa(l)}
		s.recipeMeta(meta)
		for _, n := range names {
			rq, err := s.cfg.Resolve(n)
			if err != nil {
				return nil, fmt.Errorf("quantize: %s: %w", n, err)
			}
			if !rq.Skip {
				meta[quant.MetaFormat] = rq.Format.String() // any: pack only needs "not skip"
			}
		}
		tasks = append(tasks, &pipeline.Task{
			Key: layer(l).Key, Needs: append(append(needs, act(l)), bpwNeeds...), EstBytes: layerEst[l], Meta: meta,
			Run: lp.runLayer(l, names, act(l)),
		})
		if l+1 < cfg.NumLayers || headNeedsAct {
			next := []pipeline.TaskRef{act(l)}
			if lp.sequential {
				next = append(next, layer(l))
			} else {
				next = append(next, needs...)
				if l > 0 {
					next = append(next, layer(l-1)) // bounds how far activations run ahead
				}
			}
			tasks = append(tasks, &pipeline.Task{
				Key: act(l + 1).Key, Needs: next, Transient: true,
				EstBytes: 2*actBytes + layerF32[l] + 64<<20, Meta: internal(map[string]string{metaLayer: strconv.Itoa(l)}),
				Run: lp.runAdvance(l, names, act(l), layer(l)),
			})
		}
	}
	// Tensors outside the decoder layers: one task each.
	for _, n := range others {
		rq, err := s.cfg.Resolve(n)
		if err != nil {
			return nil, fmt.Errorf("quantize: %s: %w", n, err)
		}
		meta := map[string]string{}
		for k, v := range ix.metas[n] {
			if k != MetaTensors {
				meta[k] = v
			}
		}
		meta[MetaHasHessian] = "none"
		s.recipeMeta(meta)
		if rq.Skip {
			meta[quant.MetaFormat] = "skip"
		} else {
			meta[quant.MetaFormat] = rq.Format.String()
			meta[quant.MetaMethod] = rq.Method
		}
		t := &pipeline.Task{Key: n, Needs: append([]pipeline.TaskRef{ix.refs[n]}, bpwNeeds...), EstBytes: 3*taskBytes(ix.metas[n]) + 1<<20, Meta: meta}
		if n == lmHeadName && lp.headByHessian(rq) {
			normRef, ok := ix.refs[lp.cfg.FinalNormName()]
			if !ok {
				return nil, fmt.Errorf("quantize: %s by %s needs %s", n, rq.Method, lp.cfg.FinalNormName())
			}
			meta[MetaHasHessian] = "true"
			t.Needs = append([]pipeline.TaskRef{ix.refs[n], normRef, act(cfg.NumLayers)}, bpwNeeds...)
			// GPTQ's working set on the head (gptq.WorkingBytes: its
			// result, one slab of float64 rows, the Hessian's factors):
			// a 154880×2048 lm_head (Q6_K) peaked at 13.5 GiB when GPTQ
			// still copied the whole weight to float64 four times.
			if sh, ok := taskShape(ix.metas[n]); ok && len(sh) == 2 {
				t.EstBytes += gptq.WorkingBytes(sh[0], sh[1], rq.Format.Group(sh[1]))
			}
			t.EstBytes += 2*actBytes + 8*int64(cfg.HiddenSize)*int64(cfg.HiddenSize)
			t.Run = lp.runHead(t.Needs)
		} else {
			if hfconfig.LayerIndex(n) >= 0 && !rq.Skip && rq.needsHessian() && pc.Log != nil {
				pc.Log.Warn("tensor of a layer the forward pass does not run (beyond num_hidden_layers): quantized without a Hessian (round to nearest)", "tensor", n, "num_hidden_layers", cfg.NumLayers)
			}
			t.Run = lp.runTensor(ix.refs[n], n)
		}
		tasks = append(tasks, t)
	}
	return tasks, nil
}

// headByHessian reports whether lm_head is quantized with a Hessian (its
// task then needs the activations after the last layer).
func (lp *layerPlan) headByHessian(rq ResolvedQuant) bool {
	return !rq.Skip && rq.needsHessian() && rq.Format.Quantized()
}

// refsOf returns the distinct upstream tasks holding names.
func (lp *layerPlan) refsOf(names []string) []pipeline.TaskRef {
	var refs []pipeline.TaskRef
	for _, n := range names {
		if r := lp.ix.refs[n]; !slices.Contains(refs, r) {
			refs = append(refs, r)
		}
	}
	return refs
}

func (lp *layerPlan) openBackend() (kernels.Backend, error) {
	name := lp.backend
	if name == "" {
		name = "auto"
	}
	return kernels.Open(name, kernels.Options{})
}

// activations is a layer boundary's hidden states: n windows of w tokens.
type activations struct {
	h      []float32
	n, w   int
	hidden int
}

func (a *activations) opts(prec gptq.Precision) calib.Options {
	return calib.Options{Window: a.w, Precision: prec}
}

// actOutput stores activations, one F32 tensor per window.
func actOutput(a *activations, meta map[string]string) (*pipeline.Output, error) {
	out := &pipeline.Output{Meta: meta}
	if out.Meta == nil {
		out.Meta = map[string]string{}
	}
	sz := a.w * a.hidden
	for i := 0; i < a.n; i++ {
		t, err := tensor.FromFloat32(fmt.Sprintf("hidden.%06d", i), tensor.F32, []int{a.w, a.hidden}, a.h[i*sz:(i+1)*sz])
		if err != nil {
			return nil, err
		}
		out.Tensors = append(out.Tensors, t)
	}
	return out, nil
}

// readActivations reads an act.* output back.
func readActivations(env *pipeline.TaskEnv, ref pipeline.TaskRef) (*activations, error) {
	o, err := env.Input(ref)
	if err != nil {
		return nil, err
	}
	if len(o.Tensors) == 0 {
		return nil, fmt.Errorf("%s holds no activations", ref)
	}
	t0 := o.Tensors[0]
	if len(t0.Shape) != 2 {
		return nil, fmt.Errorf("%s: activations of shape %v", ref, t0.Shape)
	}
	a := &activations{n: len(o.Tensors), w: t0.Shape[0], hidden: t0.Shape[1]}
	sz := a.w * a.hidden
	a.h = make([]float32, a.n*sz)
	for i, t := range o.Tensors {
		if t.DType != tensor.F32 || !slices.Equal(t.Shape, t0.Shape) {
			return nil, fmt.Errorf("%s: window %d is %s %v", ref, i, t.DType, t.Shape)
		}
		if err := tensor.DecodeFloat32(a.h[i*sz:(i+1)*sz], t.DType, t.Data); err != nil {
			return nil, fmt.Errorf("%s: %w", ref, err)
		}
	}
	return a, nil
}

// upstreamTensors serves the upstream tensors of one task's needs to
// arch.BuildLayer, reading each upstream output once.
type upstreamTensors struct {
	env  *pipeline.TaskEnv
	ix   *tensorIndex
	mu   sync.Mutex
	outs map[pipeline.TaskRef]*pipeline.Output
}

func (u *upstreamTensors) Tensor(name string) (*tensor.Tensor, error) {
	ref, ok := u.ix.refs[name]
	if !ok {
		return nil, fmt.Errorf("no upstream tensor %q", name)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.outs == nil {
		u.outs = map[pipeline.TaskRef]*pipeline.Output{}
	}
	o := u.outs[ref]
	if o == nil {
		var err error
		if o, err = u.env.Input(ref); err != nil {
			return nil, err
		}
		u.outs[ref] = o
	}
	for _, t := range o.Tensors {
		if t.Name == name {
			return t, nil
		}
	}
	return nil, fmt.Errorf("task %s has no tensor %q", ref, name)
}

// runEmbed makes act.0: the embeddings of the calibration windows.
func (lp *layerPlan) runEmbed() func(context.Context, *pipeline.TaskEnv) (*pipeline.Output, error) {
	return func(ctx context.Context, env *pipeline.TaskEnv) (*pipeline.Output, error) {
		a, err := lp.embed(env)
		if err != nil {
			return nil, err
		}
		return actOutput(a, map[string]string{"calib.windows": strconv.Itoa(a.n), "calib.seq_len": strconv.Itoa(a.w)})
	}
}

// embed looks up the embeddings of the calibration windows.
func (lp *layerPlan) embed(env *pipeline.TaskEnv) (*activations, error) {
	cal, err := env.Input(lp.calRef)
	if err != nil {
		return nil, err
	}
	ids, n, w, err := calibIDs(cal)
	if err != nil {
		return nil, fmt.Errorf("calibration: %w", err)
	}
	src := &upstreamTensors{env: env, ix: lp.ix}
	emb, err := src.Tensor(lp.cfg.EmbedName())
	if err != nil {
		return nil, err
	}
	hd := lp.cfg.HiddenSize
	if len(emb.Shape) != 2 || emb.Shape[1] != hd {
		return nil, fmt.Errorf("%s has shape %v, want [vocab, %d]", lp.cfg.EmbedName(), emb.Shape, hd)
	}
	a := &activations{h: make([]float32, len(ids)*hd), n: n, w: w, hidden: hd}
	sz := emb.DType.Size()
	for t, id := range ids {
		if id < 0 || int(id) >= emb.Shape[0] {
			return nil, fmt.Errorf("calibration token %d at %d outside the vocabulary of %d", id, t, emb.Shape[0])
		}
		if err := tensor.DecodeFloat32(a.h[t*hd:(t+1)*hd], emb.DType, emb.Data[int(id)*hd*sz:(int(id)+1)*hd*sz]); err != nil {
			return nil, fmt.Errorf("%s: %w", lp.cfg.EmbedName(), err)
		}
	}
	return a, nil
}

// runAdvance makes act.L+1 from act.L through layer L: its quantized
// weights (the layer task's output) in sequential mode, else the originals.
func (lp *layerPlan) runAdvance(l int, names []string, in, quantized pipeline.TaskRef) func(context.Context, *pipeline.TaskEnv) (*pipeline.Output, error) {
	return func(ctx context.Context, env *pipeline.TaskEnv) (*pipeline.Output, error) {
		a, err := readActivations(env, in)
		if err != nil {
			return nil, err
		}
		b, err := lp.openBackend()
		if err != nil {
			return nil, err
		}
		var src arch.TensorSource = &upstreamTensors{env: env, ix: lp.ix}
		if lp.sequential {
			q, err := env.Input(quantized)
			if err != nil {
				return nil, err
			}
			src = &effectiveTensors{out: q}
		}
		ly, err := arch.BuildLayer(lp.cfg, src, l, arch.Options{Backend: b, Lazy: true})
		if err != nil {
			return nil, err
		}
		opts := a.opts(lp.prec)
		if err := calib.Advance(ctx, ly, a.h, a.n, opts); err != nil {
			return nil, err
		}
		return actOutput(a, nil)
	}
}

// effectiveTensors serves a layer task's output as the weights a forward
// pass must use: packed weights dequantized to F32 in their own input basis
// (an MR-GPTQ weight stored as W·Rᵀ is turned back into W), everything else
// as stored.
type effectiveTensors struct {
	out *pipeline.Output
}

func (e *effectiveTensors) Tensor(name string) (*tensor.Tensor, error) {
	var group []*tensor.Tensor
	var main *tensor.Tensor
	for _, t := range e.out.Tensors {
		if t.Name == name {
			main = t
		}
		if t.Name == name || strings.HasPrefix(t.Name, name+".") {
			group = append(group, t)
		}
	}
	if main == nil {
		return nil, fmt.Errorf("quantized layer has no tensor %q", name)
	}
	if !quant.IsPacked(main) {
		return main, nil
	}
	w, rows, cols, err := effectiveWeight(name, group)
	if err != nil {
		return nil, err
	}
	return tensor.FromFloat32(name, tensor.F32, []int{rows, cols}, w)
}

// effectiveWeight dequantizes a packed weight (quant.Packed.ToTensors) into
// the weight's own input basis.
func effectiveWeight(name string, ts []*tensor.Tensor) ([]float32, int, int, error) {
	p, err := quant.FromTensors(name, ts)
	if err != nil {
		return nil, 0, 0, err
	}
	w := make([]float32, p.Rows*p.Cols)
	p.Dequantize(w)
	for _, t := range ts {
		if t.Name != name || t.Meta[hadamard.MetaInputPlacement] != hadamard.PlacementOnline {
			continue
		}
		r, err := hadamard.Parse(t.Meta[hadamard.MetaInput], p.Cols)
		if err != nil {
			return nil, 0, 0, fmt.Errorf("%s: %w", name, err)
		}
		// Rows of W·Rᵀ are R·w; Rᵀ gives w back.
		if err := r.ApplyT(w, p.Rows); err != nil {
			return nil, 0, 0, fmt.Errorf("%s: %w", name, err)
		}
	}
	return w, p.Rows, p.Cols, nil
}

// layerTimes is a layer task's time split.
type layerTimes struct {
	Build    float64 `json:"build"`
	Calib    float64 `json:"calibrate"`
	Quantize float64 `json:"quantize"`
	Passes   int     `json:"passes"`
}

// layerMemory is a layer task's memory (bytes), by what holds it.
type layerMemory struct {
	act    int64 // the input activations in F32 (their blob's bytes are live too while they are decoded)
	pass   int64 // a calibration pass: one batch of windows and the layer's intermediates for it
	stored int64 // the upstream tensors as stored, which the layer reads in place (arch.Options.Lazy)
	// groups is the peak of each quantization group (calib.Groups) over
	// what stored and act hold: the results and swapped-in weights of the
	// groups before it, its Hessians turning into its results, and the
	// larger of its calibration pass and its projections being quantized
	// (one per worker: GPTQ's working set and the weight's F32 copies).
	groups []int64
	f32    int64 // the layer's weights in F32: what the advance task builds
}

// peak is the most the task holds at once.
func (m layerMemory) peak() int64 {
	g := slices.Max(append([]int64{0}, m.groups...))
	return m.act + max(m.act, m.stored+g) + 64<<20
}

// projectionBytes is what quantizing one rows×cols projection (quantizeProj)
// allocates beside its stored weight and its Hessian: work while it runs
// (its F32 copies, GPTQ's working set, MR-GPTQ's rotated weight and
// Hessian) and result, what stays (the packed tensors and, with wantEff,
// the effective F32 weight swapped into the layer).
// TestProjectionBytesBoundsHeap checks both against the heap.
func projectionBytes(rq ResolvedQuant, rows, cols int, wantEff bool) (work, result int64) {
	numel, c := int64(rows)*int64(cols), int64(cols)
	if rq.Skip {
		return 0, 0
	}
	result = int64(float64(numel) * rq.Format.BitsPerWeight(rows, cols) / 8)
	work = 8 * numel // the weight in F32, its dequantized copy
	if rq.needsHessian() && rq.Format.Quantized() {
		work += gptq.WorkingBytes(rows, cols, rq.Format.Group(cols))
		if rq.Method == MethodMRGPTQ {
			work += 8*c*c + 4*numel // the rotated Hessian and weight
		}
	}
	if wantEff {
		result += 4 * numel
	}
	return work + result, result
}

// layerMemory estimates layer l's task from the shapes of its upstream
// tensors (names) and the calibration settings, phase by phase as
// calib.Layer runs: the projections come from the architecture's own
// builder (arch.LayerProjShapes), so projections that share an input
// (q/k/v, gate/up, a router and its shared experts) count one Hessian, as
// calibration accumulates one, and each Hessian counts until its last
// projection is quantized (calib.Collector.TakeHessians), when that
// projection's packed result (and with true-sequential its effective F32
// weight) takes its place.
func (lp *layerPlan) layerMemory(l int, names []string, act, batchTokens int64, workers int) (layerMemory, error) {
	m := layerMemory{act: act}
	for _, n := range names {
		m.stored += taskBytes(lp.ix.metas[n])
		if sh, ok := taskShape(lp.ix.metas[n]); ok {
			numel := int64(1)
			for _, d := range sh {
				numel *= int64(d)
			}
			m.f32 += 4 * numel
		}
	}
	projs, err := arch.LayerProjShapes(lp.cfg, func(n string) ([]int, bool) {
		meta, ok := lp.ix.metas[n]
		if !ok {
			return nil, false
		}
		return taskShape(meta)
	}, l)
	if err != nil {
		return m, err
	}
	hb := int64(4)
	if lp.prec == gptq.F64 {
		hb = 8
	}
	swap := lp.sequential && lp.trueSequential
	byName := map[string]arch.ProjShape{}
	order := make([]string, len(projs))
	var perToken int64 // floats a token holds in a pass: the batch copy, the residual, the projections' outputs
	perToken = 2 * int64(lp.cfg.HiddenSize)
	for i, p := range projs {
		byName[p.Name], order[i] = p, p.Name
		if p.Expert < 0 {
			perToken += int64(p.Out)
		} else if p.Expert == 0 {
			perToken += int64(max(lp.cfg.MoE.NumExpertsPerTok, 1)) * int64(p.Out)
		}
	}
	m.pass = 4 * batchTokens * perToken
	groups := calib.Groups(order, func(n string) string { return byName[n].InputKey }, swap)
	var prior int64 // what the groups quantized before hold
	for _, g := range groups {
		keys := map[string][]string{}
		var keyOrder []string
		for _, n := range g {
			k := byName[n].InputKey
			if keys[k] == nil {
				keyOrder = append(keyOrder, k)
			}
			keys[k] = append(keys[k], n)
		}
		var hold, done int64
		var work []int64
		for _, k := range keyOrder {
			ps := keys[k]
			c := int64(byName[ps[0]].In)
			h := hb * c * c
			var res int64
			for _, n := range ps {
				p := byName[n]
				rq, err := lp.s.cfg.Resolve(n + ".weight")
				if err != nil {
					return m, err
				}
				w, r := projectionBytes(rq, p.Out, p.In, swap)
				res += r
				work = append(work, w)
			}
			done += res
			if len(ps) > 1 { // the Hessian lives until the last of them is done
				hold += h + res
			} else {
				hold += max(h, res)
			}
		}
		// The experts' down_proj Hessians pooled per MoE block, in F64
		// (calib.ExpertPolicy).
		for _, n := range g {
			if p := byName[n]; p.Expert == 0 && strings.HasSuffix(n, ".down_proj") {
				hold += 8 * int64(p.In) * int64(p.In)
			}
		}
		slices.SortFunc(work, func(a, b int64) int { return cmp.Compare(b, a) })
		var quantize int64
		for _, w := range work[:min(len(work), workers)] {
			quantize += w
		}
		m.groups = append(m.groups, prior+hold+max(m.pass, quantize))
		prior += done
	}
	return m, nil
}

// runLayer is layer.L: calibrate and quantize decoder layer l.
func (lp *layerPlan) runLayer(l int, names []string, in pipeline.TaskRef) func(context.Context, *pipeline.TaskEnv) (*pipeline.Output, error) {
	return func(ctx context.Context, env *pipeline.TaskEnv) (*pipeline.Output, error) {
		start := time.Now()
		if err := lp.s.loadBPW(env); err != nil {
			return nil, err
		}
		a, err := readActivations(env, in)
		if err != nil {
			return nil, err
		}
		b, err := lp.openBackend()
		if err != nil {
			return nil, err
		}
		src := &upstreamTensors{env: env, ix: lp.ix}
		ly, err := arch.BuildLayer(lp.cfg, src, l, arch.Options{Backend: b, Lazy: true})
		if err != nil {
			return nil, err
		}
		var times layerTimes
		times.Build = time.Since(start).Seconds()
		swap := lp.sequential && lp.trueSequential
		results := map[string][]*tensor.Tensor{}
		var reports []quant.Report
		var imx []imatrixEntry
		var mu sync.Mutex
		total := int64(len(ly.Projs()))
		var done int64
		var quantSecs float64
		fn := func(ctx context.Context, ps []*arch.Proj, hess map[string]*gptq.Hessian) error {
			t0 := time.Now()
			g, gctx := errgroup.WithContext(ctx)
			g.SetLimit(runtime.GOMAXPROCS(0))
			for _, p := range ps {
				g.Go(func() error {
					name := p.Name() + ".weight"
					t, err := src.Tensor(name)
					if err != nil {
						return err
					}
					mu.Lock()
					h := hess[p.Name()]
					mu.Unlock()
					// Only true-sequential runs the layer again in this task
					// (the next group's calibration pass): it alone needs
					// the quantized weights swapped in. The next layer's
					// activations come from the advance task, which builds
					// the layer from this task's output.
					ts, rep, eff, err := lp.quantizeProj(gctx, t, h, swap)
					if err != nil {
						return err
					}
					if eff != nil {
						rows, cols := p.Linear().Dims()
						var bias []float32
						if d, ok := p.Linear().(*arch.Dense); ok {
							bias = d.Bias()
						}
						d, err := arch.NewDense(rows, cols, eff, bias)
						if err != nil {
							return err
						}
						if err := p.Set(d); err != nil {
							return err
						}
					}
					mu.Lock()
					defer mu.Unlock()
					if h != nil && lp.s.cfg.Imatrix != "" {
						imx = append(imx, newImatrixEntry(name, h))
					}
					// Done with it: a Hessian shared by several projections
					// is freed with the last of them.
					delete(hess, p.Name())
					results[name] = ts
					if rep != nil {
						reports = append(reports, *rep)
					}
					done++
					if env.Progress != nil {
						env.Progress(done, total)
					}
					return nil
				})
			}
			err := g.Wait()
			quantSecs += time.Since(t0).Seconds()
			return err
		}
		opts := a.opts(lp.prec)
		opts.TrueSequential = swap
		opts.MinExpertTokens = lp.minTokens
		opts.ShrinkExperts = lp.shrinkExperts
		opts.AllExperts = lp.allExperts
		t0 := time.Now()
		rep, err := calib.Layer(ctx, ly, a.h, a.n, opts, nil, fn)
		if err != nil {
			return nil, err
		}
		times.Quantize = quantSecs
		times.Calib = time.Since(t0).Seconds() - quantSecs
		times.Passes = rep.Passes
		a = nil
		// Every tensor of the layer, in upstream order: quantized Linears,
		// and the rest (norms, router biases) through the tensor path.
		out := &pipeline.Output{Meta: map[string]string{}}
		for _, n := range names {
			if ts, ok := results[n]; ok {
				out.Tensors = append(out.Tensors, ts...)
				continue
			}
			t, err := src.Tensor(n)
			if err != nil {
				return nil, err
			}
			ts, r, err := lp.s.quantizeNoHessian(ctx, t)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", n, err)
			}
			out.Tensors = append(out.Tensors, ts...)
			if r != nil {
				reports = append(reports, *r)
			}
		}
		slices.SortFunc(reports, func(x, y quant.Report) int { return strings.Compare(x.Name, y.Name) })
		if err := setReports(out, reports); err != nil {
			return nil, err
		}
		if len(imx) > 0 {
			slices.SortFunc(imx, func(x, y imatrixEntry) int { return strings.Compare(x.Name, y.Name) })
			js, err := json.Marshal(imx)
			if err != nil {
				return nil, err
			}
			out.Meta[metaImatrix] = string(js)
		}
		out.Stats = map[string]float64{"build_s": times.Build, "calibrate_s": times.Calib, "quantize_s": times.Quantize, "passes": float64(times.Passes)}
		// The calibration passes split into the forward pass and the
		// Hessian accumulation, with the operations each did (Linear
		// products only: attention's own products are not counted).
		if fwd := times.Calib - rep.HessianSeconds; rep.ForwardFlops > 0 && fwd > 0 {
			out.Stats["forward_s"], out.Stats["forward_gflop"] = fwd, float64(rep.ForwardFlops)/1e9
		}
		if rep.HessianFlops > 0 {
			out.Stats["hessian_s"], out.Stats["hessian_gflop"] = rep.HessianSeconds, float64(rep.HessianFlops)/1e9
		}
		for _, k := range []struct {
			key string
			v   any
		}{{metaExperts, rep.Experts}, {metaRouterCounts, rep.RouterCounts}} {
			js, err := json.Marshal(k.v)
			if err != nil {
				return nil, err
			}
			out.Meta[k.key] = string(js)
		}
		if env.Log != nil {
			env.Log.Info("layer quantized", "layer", l, "tensors", len(names), "experts", len(rep.Experts),
				"calibrate_s", fmt.Sprintf("%.2f", times.Calib), "hessian_s", fmt.Sprintf("%.2f", rep.HessianSeconds),
				"quantize_s", fmt.Sprintf("%.2f", times.Quantize), "passes", rep.Passes)
		}
		return out, nil
	}
}

// quantizeProj quantizes one Linear weight of a layer with its Hessian (nil
// when the expert policy chose round to nearest) and returns its tensors,
// its report and, with wantEff for formats that change the weight, the
// effective F32 weight a forward pass must use next.
func (lp *layerPlan) quantizeProj(ctx context.Context, t *tensor.Tensor, h *gptq.Hessian, wantEff bool) ([]*tensor.Tensor, *quant.Report, []float32, error) {
	rq, err := lp.s.cfg.Resolve(t.Name)
	if err != nil {
		return nil, nil, nil, err
	}
	c := *t
	c.Meta = map[string]string{}
	for k, v := range t.Meta {
		c.Meta[k] = v
	}
	if h != nil {
		c.Meta[MetaHasHessian] = "true"
	} else {
		c.Meta[MetaHasHessian] = "none"
		if rq.needsHessian() {
			c.Meta[metaCalibFallback] = MethodRTN
		}
	}
	ts, rep, err := lp.s.quantizeResolved(ctx, &c, h, rq)
	if err != nil {
		return nil, nil, nil, err
	}
	if !wantEff || rq.Skip || !rq.Format.Quantized() || len(t.Shape) != 2 {
		return ts, rep, nil, nil
	}
	eff, _, _, err := effectiveWeight(t.Name, ts)
	if err != nil {
		return nil, nil, nil, err
	}
	return ts, rep, eff, nil
}

// quantizeNoHessian quantizes t as a tensor no Linear reads (norms, biases,
// embeddings): Hessian methods fall back to RTN for it.
func (s *quantizeStage) quantizeNoHessian(ctx context.Context, t *tensor.Tensor) ([]*tensor.Tensor, *quant.Report, error) {
	c := *t
	c.Meta = map[string]string{MetaHasHessian: "none"}
	for k, v := range t.Meta {
		c.Meta[k] = v
	}
	return s.quantizeTensor(ctx, &c, nil)
}

// tensorOutput is the output of a one-tensor task with its report.
func tensorOutput(ts []*tensor.Tensor, rep *quant.Report) (*pipeline.Output, error) {
	out := &pipeline.Output{Tensors: ts, Meta: map[string]string{}}
	var reps []quant.Report
	if rep != nil {
		reps = append(reps, *rep)
	}
	return out, setReports(out, reps)
}

// runTensor quantizes one tensor outside the decoder layers (embeddings,
// final norm, an lm_head by RTN) with no Hessian.
func (lp *layerPlan) runTensor(ref pipeline.TaskRef, name string) func(context.Context, *pipeline.TaskEnv) (*pipeline.Output, error) {
	return func(ctx context.Context, env *pipeline.TaskEnv) (*pipeline.Output, error) {
		if err := lp.s.loadBPW(env); err != nil {
			return nil, err
		}
		t, err := fetch(env, ref, name)
		if err != nil {
			return nil, err
		}
		ts, rep, err := lp.s.quantizeNoHessian(ctx, t)
		if err != nil {
			return nil, fmt.Errorf("quantize %s: %w", name, err)
		}
		return tensorOutput(ts, rep)
	}
}

// runHead quantizes lm_head with the Hessian of its input: the final-normed
// hidden states after the last layer (needs: lm_head, final norm, act.N).
func (lp *layerPlan) runHead(needs []pipeline.TaskRef) func(context.Context, *pipeline.TaskEnv) (*pipeline.Output, error) {
	return func(ctx context.Context, env *pipeline.TaskEnv) (*pipeline.Output, error) {
		if err := lp.s.loadBPW(env); err != nil {
			return nil, err
		}
		w, err := fetch(env, needs[0], lmHeadName)
		if err != nil {
			return nil, err
		}
		nt, err := fetch(env, needs[1], lp.cfg.FinalNormName())
		if err != nil {
			return nil, err
		}
		norm, err := tensor.ToFloat32(nt)
		if err != nil {
			return nil, err
		}
		a, err := readActivations(env, needs[2])
		if err != nil {
			return nil, err
		}
		if len(norm) != a.hidden {
			return nil, fmt.Errorf("%s has %d entries for a hidden size of %d", lp.cfg.FinalNormName(), len(norm), a.hidden)
		}
		b, err := lp.openBackend()
		if err != nil {
			return nil, err
		}
		rows := a.n * a.w
		if err := b.RMSNorm(a.h, a.h, norm, rows, a.hidden, float32(lp.cfg.RMSNormEps)); err != nil {
			return nil, err
		}
		h, err := gptq.NewHessian(a.hidden, lp.prec)
		if err != nil {
			return nil, err
		}
		sb, _ := kernels.Serial(b)
		h.UseGemm(sb.Sgemm)
		// Window batches as the layer passes run them.
		step := 8 * a.w * a.hidden
		for s := 0; s < len(a.h); s += step {
			e := min(s+step, len(a.h))
			if err := h.Add(a.h[s:e], (e-s)/a.hidden); err != nil {
				return nil, fmt.Errorf("%s: %w", lmHeadName, err)
			}
		}
		a = nil
		ts, rep, _, err := lp.quantizeProj(ctx, w, h, false)
		if err != nil {
			return nil, fmt.Errorf("quantize %s: %w", lmHeadName, err)
		}
		return tensorOutput(ts, rep)
	}
}
