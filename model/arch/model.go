// Package arch is marlin's forward pass: the decoder-only architectures it
// quantizes (Qwen3, Qwen3-MoE, GLM-4.7-Flash / Glm4MoeLite), built from a
// Hugging Face config.json and safetensors weights, computing batched
// prefill in F32 on a kernels.Backend so that calibration and perplexity run
// the same code.
//
// Layout follows ollama's model/models: one file per family (qwen3.go,
// qwen3moe.go, glm4moelite.go) builds a Model from shared layer structs
// (RMSNorm, attention, MLP, MoE), and a registry keyed by config.json's
// model_type picks the builder.
//
// Hooks for quantization:
//   - every nn.Linear is a named Proj slot (Model.Projs, Model.Proj) whose
//     Linear can be swapped (dequantized weights via NewDense, packed
//     weights via NewQuantized and the backend's dequant-GEMM);
//   - Hooks.Linear observes each Linear's input rows (for routed experts,
//     only the tokens routed to that expert), which is what GPTQ's Hessian
//     needs; Proj.InputKey tells which Linears share an input (one Hessian
//     serves q/k/v or gate/up); Hooks.Route observes router decisions
//     (ExpertCounts);
//   - Embed, Layer and Head run the model one stage at a time, so sequential
//     GPTQ can calibrate layer L on the outputs of quantized layers < L.
//
// By default weights are converted to F32 when the model is built (4 bytes
// per parameter, fastest). With Options.Lazy, projections and embeddings
// stay views of the mmapped checkpoint and are converted per use (Lazy), so
// large checkpoints run within the page cache; norms and routers' biases are
// always F32 copies (they are small).
package arch

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/marlin-llm/marlin/kernels"
	"github.com/marlin-llm/marlin/model/hfconfig"
	"github.com/marlin-llm/marlin/model/safetensors"
	"github.com/marlin-llm/marlin/tensor"
)

// Batch describes the token layout of a forward pass: Seqs independent
// sequences of Len tokens each, stored one after the other (token-major),
// every sequence starting at position 0.
type Batch struct {
	Seqs, Len int
}

// Tokens is Seqs×Len.
func (b Batch) Tokens() int { return b.Seqs * b.Len }

// Hooks lets callers observe a forward pass. Callbacks run synchronously on
// the forward pass's goroutine; they must not retain or modify the slices.
type Hooks struct {
	// Linear sees the input of every Linear just before it runs: rows×cols
	// row-major floats. For a routed expert's projections rows are only the
	// tokens routed to that expert; gate_proj and up_proj see the same rows.
	Linear func(name string, x []float32, rows, cols int)
	// Route sees each MoE router's decision.
	Route func(r *Routing)
	// StopBefore, when set, ends the pass before the first Linear it
	// accepts (its input already reported to Linear): the pass returns
	// ErrStopped and the hidden states are left partly computed. A
	// calibration pass that only needs the inputs of earlier Linears
	// skips the rest of the layer.
	StopBefore func(name string) bool
	// AllExperts runs every routed expert on every token of its MoE block
	// for Linear to observe (calibration of experts that few tokens
	// reach); the block's output still combines the routed experts only,
	// computed without reporting their inputs.
	AllExperts bool
	// Flops, when set, accumulates the floating-point operations
	// (2·rows·in·out) of every Linear product the pass runs, hooked or not
	// (the products of experts run for AllExperts included).
	Flops *atomic.Int64
	// InputsOnly tells a Layer pass (Layer.Forward; a whole-model pass
	// ignores it) that its caller only wants the Linears' inputs and
	// discards the hidden states it returns, as a calibration pass does:
	// the layer's last MLP or MoE block reports its down projections'
	// inputs but skips their products and the block's output (about a
	// quarter of a MoE layer's Linear work), and with AllExperts the
	// routed pass that only made the block's output is skipped too. The
	// hidden states are left partly computed.
	InputsOnly bool
}

// flops returns h.Flops, or nil for nil hooks.
func (h *Hooks) flops() *atomic.Int64 {
	if h == nil {
		return nil
	}
	return h.Flops
}

// ErrStopped is returned by a pass that Hooks.StopBefore ended early.
var ErrStopped = errors.New("arch: pass stopped by a hook")

// Routing is one MoE router's decision for a batch of tokens.
type Routing struct {
	// Gate is the router's name ("model.layers.1.mlp.gate").
	Gate string
	// Experts and Weights hold Tokens×K entries, token-major: the chosen
	// experts and the weights the MLP applies to their outputs.
	Experts []int32
	Weights []float32
	// Tokens, K and NumExperts give the shapes.
	Tokens, K, NumExperts int
}

// Options configures Build and Load.
type Options struct {
	// Backend runs the math; nil opens kernels "auto".
	Backend kernels.Backend
	// Lazy keeps projection and embedding weights as stored (views of the
	// mmapped files) and converts them per use (see Lazy), instead of
	// holding an F32 copy of the model. Load then keeps the files open
	// until Model.Close; with Build the source must outlive the model.
	Lazy bool
}

// TensorSource yields checkpoint tensors by name (a safetensors.Checkpoint,
// or anything holding modified tensors).
type TensorSource interface {
	Tensor(name string) (*tensor.Tensor, error)
}

// TensorLister is a TensorSource that also lists its tensors. Build
// refuses a lister holding tensors the model does not use (beyond
// hfconfig's SpareTensor: rotary buffers, a tied lm_head, next-n layers),
// e.g. layers past a config.json's num_hidden_layers, with an
// *hfconfig.UnusedTensorsError naming them: a model built without them
// would silently compute something else than the checkpoint.
type TensorLister interface {
	TensorSource
	Names() []string
}

// mixer is a sub-layer (attention or MLP): it reads the normalised input x
// (tokens×hidden) and overwrites out (tokens×hidden).
type mixer interface {
	forward(rc *run, x, out []float32) error
	projs() []*Proj
}

// DecoderLayer is one pre-norm transformer block: h += attn(inputNorm(h)),
// then h += mlp(postNorm(h)). A nemotron_h layer is one block of one
// mixer: a Mamba-2 or attention layer has only attn (and inputNorm), a MoE
// or MLP layer only mlp (and postNorm).
type DecoderLayer struct {
	index     int
	inputNorm *RMSNorm
	postNorm  *RMSNorm
	attn      mixer
	mlp       mixer
}

// projs lists the layer's Linear slots in execution order.
func (d *DecoderLayer) projs() []*Proj {
	var ps []*Proj
	if d.attn != nil {
		ps = append(ps, d.attn.projs()...)
	}
	if d.mlp != nil {
		ps = append(ps, d.mlp.projs()...)
	}
	return ps
}

// Model is a built decoder-only language model. Its weights are read-only
// during forward passes, so concurrent forward passes are safe as long as
// no Proj is swapped meanwhile.
type Model struct {
	cfg    *hfconfig.Config
	b      kernels.Backend
	vocab  int
	hidden int
	embed  []float32      // vocab×hidden (nil when lazy)
	embedT *tensor.Tensor // stored embeddings when lazy
	closer func() error   // closes the checkpoint Load opened lazily
	layers []*DecoderLayer
	norm   *RMSNorm
	lmHead *Proj
	projs  []*Proj
	byName map[string]*Proj
}

// builder builds decoder layer l of one architecture family.
type builder func(cfg *hfconfig.Config, w *weights, l int) (*DecoderLayer, error)

// builders holds the forward pass of every hfconfig.Family marked Forward,
// keyed by config.json model_type (internal/conformance checks the two
// agree).
var builders = map[string]builder{
	"qwen3":         buildQwen3,
	"qwen3_moe":     buildQwen3MoE,
	"glm4_moe_lite": buildGlm4MoeLite,
	"nemotron_h":    buildNemotronH,
}

// Supported lists the model_type values arch can build (the hfconfig
// families marked Forward).
func Supported() []string { return hfconfig.WithForward() }

// Builders returns the model_type values arch holds a forward pass for,
// sorted (internal/conformance checks they are the Forward families).
func Builders() []string { return slices.Sorted(maps.Keys(builders)) }

// Load builds the model in dir (config.json plus safetensors, sharded or
// not). The weights are copied to F32, so the files are closed on return.
func Load(dir string, opts Options) (*Model, error) {
	cfg, err := hfconfig.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("arch: %w", err)
	}
	ck, err := safetensors.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("arch: %w", err)
	}
	m, err := Build(cfg, ck, opts)
	if err != nil || !opts.Lazy {
		if cerr := ck.Close(); err == nil && cerr != nil {
			return nil, fmt.Errorf("arch: %w", cerr)
		}
		return m, err
	}
	m.closer = ck.Close
	return m, nil
}

// Close releases the files a lazily loaded model reads; the model must not
// be used afterwards. It is a no-op for other models.
func (m *Model) Close() error {
	if m.closer == nil {
		return nil
	}
	err := m.closer()
	m.closer = nil
	return err
}

// builderFor checks what every architecture shares and returns the
// config's builder and the backend to run on.
func builderFor(cfg *hfconfig.Config, opts Options) (builder, kernels.Backend, error) {
	bld, err := builderOf(cfg)
	if err != nil {
		return nil, nil, err
	}
	b := opts.Backend
	if b == nil {
		var err error
		if b, err = kernels.Open("auto", kernels.Options{}); err != nil {
			return nil, nil, fmt.Errorf("arch: %w", err)
		}
	}
	return bld, b, nil
}

// builderOf returns the builder of cfg's model type, refusing what its
// forward pass does not implement.
func builderOf(cfg *hfconfig.Config) (builder, error) {
	bld, ok := builders[cfg.ModelType]
	if !ok {
		return nil, fmt.Errorf("arch: no forward pass for model_type %q (supported: %v)", cfg.ModelType, Builders())
	}
	if cfg.HiddenAct != "silu" && cfg.Hybrid == nil { // nemotron_h checks its own activations
		return nil, fmt.Errorf("arch: hidden_act %q not supported (want silu)", cfg.HiddenAct)
	}
	if cfg.Rope.Type != "default" && cfg.Rope.Type != "" {
		return nil, fmt.Errorf("arch: rope type %q not supported (want default)", cfg.Rope.Type)
	}
	return bld, nil
}

// Build builds a model from a parsed config and a tensor source.
func Build(cfg *hfconfig.Config, src TensorSource, opts Options) (*Model, error) {
	bld, b, err := builderFor(cfg, opts)
	if err != nil {
		return nil, err
	}
	w := &weights{src: src, lazy: opts.Lazy, used: map[string]bool{}}
	m := &Model{cfg: cfg, b: b, vocab: cfg.VocabSize, hidden: cfg.HiddenSize, byName: map[string]*Proj{}}
	if opts.Lazy {
		m.embedT = w.stored(cfg.EmbedName(), cfg.VocabSize, cfg.HiddenSize)
	} else {
		m.embed = w.get(cfg.EmbedName(), cfg.VocabSize, cfg.HiddenSize)
	}
	m.layers = make([]*DecoderLayer, cfg.NumLayers)
	for l := range m.layers {
		if m.layers[l], err = bld(cfg, w, l); err != nil {
			return nil, fmt.Errorf("arch: %s: %w", cfg.ModelType, err)
		}
	}
	m.norm = w.norm(cfg.FinalNormName(), cfg.HiddenSize, cfg.RMSNormEps)
	if cfg.TieWordEmbeddings {
		var lin Linear
		switch {
		case m.embed != nil:
			lin, err = NewDense(cfg.VocabSize, cfg.HiddenSize, m.embed, nil)
		case m.embedT != nil:
			lin, err = NewLazy(m.embedT)
		}
		if err != nil {
			return nil, err
		}
		if lin != nil {
			m.lmHead = &Proj{name: "lm_head", layer: -1, expert: -1, lin: lin}
		}
	} else {
		m.lmHead = w.proj("lm_head", -1, -1, cfg.VocabSize, cfg.HiddenSize)
	}
	if err := w.err(); err != nil {
		return nil, fmt.Errorf("arch: %s: %w", cfg.ModelType, err)
	}
	if ls, ok := src.(TensorLister); ok {
		if err := cfg.CheckUsed(ls.Names(), func(n string) bool { return w.used[n] }); err != nil {
			return nil, fmt.Errorf("arch: %s: %w", cfg.ModelType, err)
		}
	}
	for _, l := range m.layers {
		for _, p := range l.projs() {
			m.addProj(p)
		}
	}
	m.addProj(m.lmHead)
	return m, nil
}

func (m *Model) addProj(p *Proj) {
	m.projs = append(m.projs, p)
	m.byName[p.name] = p
}

// Config returns the model's configuration.
func (m *Model) Config() *hfconfig.Config { return m.cfg }

// Backend returns the backend the model runs on.
func (m *Model) Backend() kernels.Backend { return m.b }

// NumLayers is the number of decoder layers.
func (m *Model) NumLayers() int { return len(m.layers) }

// Hidden is the hidden size.
func (m *Model) Hidden() int { return m.hidden }

// Vocab is the number of logits per token (embedding rows).
func (m *Model) Vocab() int { return m.vocab }

// Projs lists every Linear slot in execution order (layer by layer,
// lm_head last).
func (m *Model) Projs() []*Proj { return append([]*Proj(nil), m.projs...) }

// Proj returns the Linear slot called name ("model.layers.0.mlp.down_proj").
func (m *Model) Proj(name string) (*Proj, bool) {
	p, ok := m.byName[name]
	return p, ok
}

// LayerProjs lists the Linear slots of decoder layer l in execution order.
func (m *Model) LayerProjs(l int) []*Proj {
	if l < 0 || l >= len(m.layers) {
		return nil
	}
	return m.layers[l].projs()
}

// Embed returns the embeddings of ids (len(ids)×hidden).
func (m *Model) Embed(ids []int32) ([]float32, error) {
	h := make([]float32, len(ids)*m.hidden)
	if err := m.embedInto(h, ids); err != nil {
		return nil, err
	}
	return h, nil
}

// embedInto writes the embeddings of ids to h (len(ids)×hidden).
func (m *Model) embedInto(h []float32, ids []int32) error {
	for t, id := range ids {
		if id < 0 || int(id) >= m.vocab {
			return fmt.Errorf("arch: token %d at position %d outside the vocabulary of %d", id, t, m.vocab)
		}
		dst := h[t*m.hidden : (t+1)*m.hidden]
		if m.embed != nil {
			copy(dst, m.embed[int(id)*m.hidden:])
			continue
		}
		sz := m.embedT.DType.Size()
		row := m.embedT.Data[int(id)*m.hidden*sz : (int(id)+1)*m.hidden*sz]
		if err := tensor.DecodeFloat32(dst, m.embedT.DType, row); err != nil {
			return fmt.Errorf("arch: embeddings: %w", err)
		}
		if i := firstNonFinite(dst); i >= 0 {
			return fmt.Errorf("arch: embedding of token %d holds %v", id, dst[i])
		}
	}
	return nil
}

func (m *Model) checkHidden(h []float32, batch Batch) error {
	if batch.Seqs <= 0 || batch.Len <= 0 || len(h) != batch.Tokens()*m.hidden {
		return fmt.Errorf("arch: hidden states of %d floats for %d×%d tokens of %d", len(h), batch.Seqs, batch.Len, m.hidden)
	}
	return nil
}

// Layer runs decoder layer l on the hidden states h (tokens×hidden), in
// place: h becomes the residual stream after the layer.
func (m *Model) Layer(ctx context.Context, l int, h []float32, batch Batch, hooks *Hooks) error {
	if l < 0 || l >= len(m.layers) {
		return fmt.Errorf("arch: layer %d of %d", l, len(m.layers))
	}
	if err := m.checkHidden(h, batch); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	rc := &run{ctx: ctx, b: m.b, hooks: hooks, batch: batch, hidden: m.hidden, theta: m.cfg.Rope.Theta, flops: hooks.flops()}
	if err := m.layers[l].forward(rc, h); err != nil {
		return fmt.Errorf("arch: layer %d: %w", l, err)
	}
	return nil
}

// Norm applies the final RMSNorm to h in place (what lm_head multiplies).
func (m *Model) Norm(h []float32, batch Batch) error {
	if err := m.checkHidden(h, batch); err != nil {
		return err
	}
	return m.norm.apply(m.b, h, h)
}

// LMHead returns the logits (tokens×vocab) of final-normed hidden states.
func (m *Model) LMHead(ctx context.Context, h []float32, batch Batch, hooks *Hooks) ([]float32, error) {
	if err := m.checkHidden(h, batch); err != nil {
		return nil, err
	}
	rc := &run{ctx: ctx, b: m.b, hooks: hooks, batch: batch, hidden: m.hidden, flops: hooks.flops()}
	return rc.linear(m.lmHead, h, batch.Tokens())
}

// Head applies the final norm and lm_head: h is modified in place (it ends
// as the final norm's output) and the logits are returned.
func (m *Model) Head(ctx context.Context, h []float32, batch Batch, hooks *Hooks) ([]float32, error) {
	if err := m.Norm(h, batch); err != nil {
		return nil, err
	}
	return m.LMHead(ctx, h, batch, hooks)
}

// Forward runs the whole model on batch.Seqs sequences of batch.Len tokens
// (ids holds them one after the other) and returns the logits
// (tokens×vocab).
func (m *Model) Forward(ctx context.Context, ids []int32, batch Batch, hooks *Hooks) ([]float32, error) {
	if len(ids) != batch.Tokens() {
		return nil, fmt.Errorf("arch: %d ids for %d×%d tokens", len(ids), batch.Seqs, batch.Len)
	}
	h, err := m.Embed(ids)
	if err != nil {
		return nil, err
	}
	for l := range m.layers {
		if err := m.Layer(ctx, l, h, batch, hooks); err != nil {
			return nil, err
		}
	}
	return m.Head(ctx, h, batch, hooks)
}

// run carries the per-call state of a forward pass.
type run struct {
	ctx    context.Context
	b      kernels.Backend
	hooks  *Hooks
	batch  Batch
	hidden int
	theta  float64
	// flops is Hooks.Flops (nil: not counted); copies of the run share it.
	flops *atomic.Int64
	// cache is the cache Decode runs with (nil for other passes): alloc
	// takes buffers from its scratch, and RoPE tables come from it.
	cache *Cache
	// inputsOnly is Hooks.InputsOnly on a Layer pass: the layer's output
	// is discarded.
	inputsOnly bool
	// discard is set while the layer's last block runs under inputsOnly:
	// nothing reads its output, so products that only feed it are skipped
	// once their inputs are reported.
	discard bool
}

// alloc returns n zeroed floats for use within the pass: fresh ones, or
// during Decode, buffers of the cache's scratch, which are only valid until
// the current layer ends and must not reach the caller.
func (rc *run) alloc(n int) []float32 {
	if rc.cache != nil {
		return rc.cache.scratch.alloc(n)
	}
	return make([]float32, n)
}

// linear runs p on rows rows of x, reporting the input to the hook, and
// returns the rows×out outputs (from rc.alloc).
func (rc *run) linear(p *Proj, x []float32, rows int) ([]float32, error) {
	out, _ := p.lin.Dims()
	y := rc.alloc(rows * out)
	if err := rc.linearInto(p, x, rows, y); err != nil {
		return nil, err
	}
	return y, nil
}

// linearInto is linear writing the outputs to y, which must hold exactly
// rows×out floats.
func (rc *run) linearInto(p *Proj, x []float32, rows int, y []float32) error {
	out, in := p.lin.Dims()
	if len(x) < rows*in {
		return fmt.Errorf("%s: input of %d floats for %d rows of %d", p.name, len(x), rows, in)
	}
	if len(y) != rows*out {
		return fmt.Errorf("%s: output of %d floats for %d rows of %d", p.name, len(y), rows, out)
	}
	if err := rc.reportInput(p, x, rows); err != nil {
		return err
	}
	if err := p.lin.Forward(rc.b, x[:rows*in], rows, y); err != nil {
		return fmt.Errorf("%s: %w", p.name, err)
	}
	if rc.flops != nil {
		rc.flops.Add(2 * int64(rows) * int64(in) * int64(out))
	}
	return nil
}

// reportInput shows p's input (rows rows of x) to the hooks, and returns
// ErrStopped where StopBefore ends the pass before p.
func (rc *run) reportInput(p *Proj, x []float32, rows int) error {
	if rc.hooks == nil {
		return nil
	}
	_, in := p.lin.Dims()
	if rc.hooks.Linear != nil {
		rc.hooks.Linear(p.name, x[:rows*in], rows, in)
	}
	if rc.hooks.StopBefore != nil && rc.hooks.StopBefore(p.name) {
		return ErrStopped
	}
	return nil
}

// ropeTables returns cos/sin for every token of the batch (position = index
// within its sequence).
func (rc *run) ropeTables(rotDim int) (cos, sin []float32, err error) {
	pos := make([]int, rc.batch.Tokens())
	for t := range pos {
		pos[t] = t % rc.batch.Len
	}
	return kernels.RoPETables(pos, rotDim, rc.theta)
}

func (d *DecoderLayer) forward(rc *run, h []float32) error {
	n := len(h)
	x := make([]float32, n)
	out := make([]float32, n)
	if d.attn != nil {
		if err := d.inputNorm.apply(rc.b, x, h); err != nil {
			return fmt.Errorf("input_layernorm: %w", err)
		}
		if err := d.attn.forward(rc, x, out); err != nil {
			return err
		}
		for i, v := range out {
			h[i] += v
		}
	}
	if d.mlp == nil {
		return nil
	}
	if err := rc.ctx.Err(); err != nil {
		return err
	}
	if err := d.postNorm.apply(rc.b, x, h); err != nil {
		return fmt.Errorf("post_attention_layernorm: %w", err)
	}
	if rc.inputsOnly {
		// The caller discards the hidden states: the block only reports
		// its inputs (see Hooks.InputsOnly).
		c := *rc
		c.discard = true
		return d.mlp.forward(&c, x, out)
	}
	if err := d.mlp.forward(rc, x, out); err != nil {
		return err
	}
	for i, v := range out {
		h[i] += v
	}
	return nil
}

// RMSNorm is a root-mean-square norm with a learned scale.
type RMSNorm struct {
	w   []float32
	eps float32
}

// apply writes the normalised rows of x to dst (which may alias x).
func (n *RMSNorm) apply(b kernels.Backend, dst, x []float32) error {
	cols := len(n.w)
	if len(x)%cols != 0 {
		return fmt.Errorf("rmsnorm of width %d on %d floats", cols, len(x))
	}
	return b.RMSNorm(dst, x, n.w, len(x)/cols, cols, n.eps)
}

// weights reads tensors as F32, collecting errors so a model reports every
// missing or malformed tensor at once.
type weights struct {
	src  TensorSource
	lazy bool
	// shapesOnly builds from shapes alone (see LayerProjShapes): the
	// source's tensors have no data, projections get none and other
	// weights read as zeros.
	shapesOnly bool
	errs       []error
	// used records every tensor name the model asked for.
	used map[string]bool
}

// tensor fetches a tensor from the source, recording its name as used.
func (w *weights) tensor(name string) (*tensor.Tensor, error) {
	w.used[name] = true
	return w.src.Tensor(name)
}

func (w *weights) err() error { return errors.Join(w.errs...) }

func (w *weights) fail(err error) {
	if len(w.errs) < 20 {
		w.errs = append(w.errs, err)
	}
}

// get returns the named tensor as F32 after checking its shape and that
// every value is finite; it returns nil (and records an error) otherwise.
func (w *weights) get(name string, shape ...int) []float32 {
	t, err := w.tensor(name)
	if err != nil {
		w.fail(err)
		return nil
	}
	if len(t.Shape) != len(shape) {
		w.fail(fmt.Errorf("tensor %s has shape %v, want %v", name, t.Shape, shape))
		return nil
	}
	for i := range shape {
		if t.Shape[i] != shape[i] {
			w.fail(fmt.Errorf("tensor %s has shape %v, want %v", name, t.Shape, shape))
			return nil
		}
	}
	if w.shapesOnly {
		return make([]float32, t.NumElements())
	}
	v, err := tensor.ToFloat32(t)
	if err != nil {
		w.fail(fmt.Errorf("tensor %s: %w", name, err))
		return nil
	}
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			w.fail(fmt.Errorf("tensor %s: non-finite value %v at element %d", name, x, i))
			return nil
		}
	}
	return v
}

func (w *weights) norm(name string, n int, eps float64) *RMSNorm {
	return &RMSNorm{w: w.get(name, n), eps: float32(eps)}
}

// stored returns the named tensor as stored after checking its shape.
func (w *weights) stored(name string, shape ...int) *tensor.Tensor {
	t, err := w.tensor(name)
	if err != nil {
		w.fail(err)
		return nil
	}
	if !slices.Equal(t.Shape, shape) {
		w.fail(fmt.Errorf("tensor %s has shape %v, want %v", name, t.Shape, shape))
		return nil
	}
	if w.shapesOnly {
		return t
	}
	if _, err := NewLazy(t); err != nil {
		w.fail(err)
		return nil
	}
	return t
}

// proj loads name+".weight" (out×in) as a Dense slot, or a Lazy one.
func (w *weights) proj(name string, layer, expert, out, in int) *Proj {
	p := &Proj{name: name, layer: layer, expert: expert}
	if w.shapesOnly {
		w.stored(name+".weight", out, in)
		p.lin = &Dense{out: out, in: in}
		return p
	}
	if w.lazy {
		if t := w.stored(name+".weight", out, in); t != nil {
			p.lin, _ = NewLazy(t)
			return p
		}
		p.lin = &Dense{out: out, in: in, w: make([]float32, out*in)}
		return p
	}
	v := w.get(name+".weight", out, in)
	if v == nil {
		p.lin = &Dense{out: out, in: in, w: make([]float32, out*in)}
		return p
	}
	p.lin = &Dense{out: out, in: in, w: v}
	return p
}

// ExpertCounts accumulates how many tokens each router sends to each
// expert; its Hook method plugs into Hooks.Route. Safe for concurrent use.
type ExpertCounts struct {
	mu     sync.Mutex
	counts map[string][]int
}

// Add records one router decision (it has the Hooks.Route signature).
func (e *ExpertCounts) Add(r *Routing) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.counts == nil {
		e.counts = map[string][]int{}
	}
	c := e.counts[r.Gate]
	if len(c) < r.NumExperts {
		c = append(c, make([]int, r.NumExperts-len(c))...)
	}
	for _, x := range r.Experts[:r.Tokens*r.K] {
		if x >= 0 && int(x) < len(c) {
			c[x]++
		}
	}
	e.counts[r.Gate] = c
}

// Counts returns a copy of the per-router counts (index = expert).
func (e *ExpertCounts) Counts() map[string][]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string][]int, len(e.counts))
	for k, v := range e.counts {
		out[k] = append([]int(nil), v...)
	}
	return out
}
