package arch

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/marlin-llm/marlin/kernels"
)

var negInf = float32(math.Inf(-1))

// attnBlock is the number of query rows attend handles per GEMM: block b
// only needs the keys up to its last row, which skips most of the masked
// upper triangle for long sequences.
const attnBlock = 128

// attend computes causal softmax attention for every sequence of the batch
// and every query head: out[t, h] = softmax(scale·q[t,h]·k[:,g]ᵀ)·v[:,g]
// with g = h / (heads/kvHeads). Head h of token t lives at
// q[t*ldq+h*dqk], k[t*ldk+g*dqk], v[t*ldv+g*dv] and out[t*ldo+h*dv].
// (sequence, head) pairs run on up to GOMAXPROCS goroutines; each writes
// its own part of out, so the result does not depend on scheduling.
func attend(rc *run, q []float32, ldq int, k []float32, ldk int, v []float32, ldv int,
	heads, kvHeads, dqk, dv int, scale float32, out []float32, ldo int) error {
	rep := heads / kvHeads
	L := rc.batch.Len
	pairs := rc.batch.Seqs * heads
	scores := make([][]float32, min(runtime.GOMAXPROCS(0), pairs)) // per worker
	return parallelFor(rc, pairs, func(wk, i int) error {
		if scores[wk] == nil {
			scores[wk] = make([]float32, min(attnBlock, L)*L)
		}
		return attendPair(rc, i, scores[wk], q, ldq, k, ldk, v, ldv, heads, rep, dqk, dv, scale, out, ldo)
	})
}

// attendPair computes attention for (sequence, head) pair i = s·heads + h
// with scratch scores.
func attendPair(rc *run, i int, scores []float32, q []float32, ldq int, k []float32, ldk int,
	v []float32, ldv int, heads, rep, dqk, dv int, scale float32, out []float32, ldo int) error {
	L := rc.batch.Len
	s, h := i/heads, i%heads
	base, g := s*L, h/rep
	for r0 := 0; r0 < L; r0 += attnBlock {
		r1 := min(r0+attnBlock, L) // query rows [r0, r1) see keys [0, r1)
		rows := r1 - r0
		if err := rc.b.Sgemm(false, true, rows, r1, dqk, scale, q[(base+r0)*ldq+h*dqk:], ldq,
			k[base*ldk+g*dqk:], ldk, 0, scores, r1); err != nil {
			return fmt.Errorf("attention scores: %w", err)
		}
		// Causal mask: query r0+i attends to keys 0..r0+i; softmax just
		// those and zero the rest.
		for i := 0; i < rows; i++ {
			row := scores[i*r1 : (i+1)*r1]
			n := r0 + i + 1
			if err := rc.b.Softmax(row[:n], 1, n); err != nil {
				return fmt.Errorf("attention softmax: %w", err)
			}
			clear(row[n:])
		}
		if err := rc.b.Sgemm(false, false, rows, dv, r1, 1, scores, r1, v[base*ldv+g*dv:], ldv,
			0, out[(base+r0)*ldo+h*dv:], ldo); err != nil {
			return fmt.Errorf("attention values: %w", err)
		}
	}
	return nil
}

// parallelFor runs f(worker, i) for i in 0..n-1 on up to GOMAXPROCS
// goroutines (worker in [0, min(GOMAXPROCS, n))), stopping at the first
// error or when the pass's context ends.
func parallelFor(rc *run, n int, f func(worker, i int) error) error {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		for i := 0; i < n; i++ {
			if err := rc.ctx.Err(); err != nil {
				return err
			}
			if err := f(0, i); err != nil {
				return err
			}
		}
		return nil
	}
	var next atomic.Int64
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for wk := 0; wk < workers; wk++ {
		wg.Add(1)
		go func(wk int) {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := rc.ctx.Err(); err != nil {
					errs[wk] = err
					return
				}
				if err := f(wk, i); err != nil {
					errs[wk] = err
					return
				}
			}
		}(wk)
	}
	wg.Wait()
	return errors.Join(errs...)
}

// GQAttention is grouped-query attention with per-head q/k RMSNorm and
// rotate-half RoPE (Qwen3).
type GQAttention struct {
	q, k, v, o         *Proj
	qNorm, kNorm       *RMSNorm // per head_dim; nil when absent
	heads, kvHeads, hd int
	// noRope skips the rotary embedding (NemotronH attention has no
	// positional encoding: order comes from its Mamba layers).
	noRope bool
}

func (a *GQAttention) projs() []*Proj { return []*Proj{a.q, a.k, a.v, a.o} }

// qkv projects rows×hidden inputs x to queries, keys and values and applies
// the per-head q/k RMSNorms where the model has them (prefill and decode).
func (a *GQAttention) qkv(rc *run, x []float32, rows int) (q, k, v []float32, err error) {
	if q, err = rc.linear(a.q, x, rows); err != nil {
		return nil, nil, nil, err
	}
	if k, err = rc.linear(a.k, x, rows); err != nil {
		return nil, nil, nil, err
	}
	if v, err = rc.linear(a.v, x, rows); err != nil {
		return nil, nil, nil, err
	}
	if a.qNorm != nil {
		if err := a.qNorm.apply(rc.b, q, q); err != nil {
			return nil, nil, nil, fmt.Errorf("q_norm: %w", err)
		}
	}
	if a.kNorm != nil {
		if err := a.kNorm.apply(rc.b, k, k); err != nil {
			return nil, nil, nil, fmt.Errorf("k_norm: %w", err)
		}
	}
	return q, k, v, nil
}

func (a *GQAttention) forward(rc *run, x, out []float32) error {
	T := rc.batch.Tokens()
	q, k, v, err := a.qkv(rc, x, T)
	if err != nil {
		return err
	}
	if !a.noRope {
		cos, sin, err := rc.ropeTables(a.hd)
		if err != nil {
			return err
		}
		if err := rc.b.RoPE(q, T, a.heads, a.hd, a.hd, cos, sin, kernels.RoPENeoX); err != nil {
			return fmt.Errorf("rope q: %w", err)
		}
		if err := rc.b.RoPE(k, T, a.kvHeads, a.hd, a.hd, cos, sin, kernels.RoPENeoX); err != nil {
			return fmt.Errorf("rope k: %w", err)
		}
	}
	ctx := make([]float32, T*a.heads*a.hd)
	scale := float32(1 / math.Sqrt(float64(a.hd)))
	if err := attend(rc, q, a.heads*a.hd, k, a.kvHeads*a.hd, v, a.kvHeads*a.hd,
		a.heads, a.kvHeads, a.hd, a.hd, scale, ctx, a.heads*a.hd); err != nil {
		return err
	}
	o, err := rc.linear(a.o, ctx, T)
	if err != nil {
		return err
	}
	copy(out, o)
	return nil
}

// MLAttention is DeepSeek-V2/V3 multi-head latent attention (GLM-4.7-Flash):
// queries through a low-rank q_a/q_b pair (or q_proj), keys and values from
// a compressed latent (kv_a_proj_with_mqa, kv_b_proj) plus one decoupled
// RoPE key shared by all heads. Prefill expands the latent to full keys and
// values.
type MLAttention struct {
	qA, qB, q, kvA, kvB, o *Proj // q is used when q_lora_rank is 0
	qANorm, kvANorm        *RMSNorm
	heads                  int
	nope, rope, vDim       int
	kvRank                 int
	style                  kernels.RoPEStyle
}

func (a *MLAttention) projs() []*Proj {
	if a.q != nil {
		return []*Proj{a.q, a.kvA, a.kvB, a.o}
	}
	return []*Proj{a.qA, a.qB, a.kvA, a.kvB, a.o}
}

func (a *MLAttention) forward(rc *run, x, out []float32) error {
	T := rc.batch.Tokens()
	H, qk := a.heads, a.nope+a.rope
	var q []float32
	var err error
	if a.q != nil {
		if q, err = rc.linear(a.q, x, T); err != nil {
			return err
		}
	} else {
		qa, err := rc.linear(a.qA, x, T)
		if err != nil {
			return err
		}
		if err := a.qANorm.apply(rc.b, qa, qa); err != nil {
			return fmt.Errorf("q_a_layernorm: %w", err)
		}
		if q, err = rc.linear(a.qB, qa, T); err != nil {
			return err
		}
	}
	kva, err := rc.linear(a.kvA, x, T) // T × (kvRank + rope)
	if err != nil {
		return err
	}
	cos, sin, err := rc.ropeTables(a.rope)
	if err != nil {
		return err
	}
	// RoPE rotates the first rotDim elements of each headDim vector; shift
	// the views so those are the rope parts (pad so the last view is whole).
	nq := len(q)
	q = append(q, make([]float32, a.nope)...)
	if err := rc.b.RoPE(q[a.nope:], T, H, qk, a.rope, cos, sin, a.style); err != nil {
		return fmt.Errorf("rope q: %w", err)
	}
	q = q[:nq]
	kvw := a.kvRank + a.rope
	nkv := len(kva)
	kva = append(kva, make([]float32, a.kvRank)...)
	if err := rc.b.RoPE(kva[a.kvRank:], T, 1, kvw, a.rope, cos, sin, a.style); err != nil {
		return fmt.Errorf("rope k: %w", err)
	}
	kva = kva[:nkv]
	latent := make([]float32, T*a.kvRank)
	for t := 0; t < T; t++ {
		copy(latent[t*a.kvRank:(t+1)*a.kvRank], kva[t*kvw:])
	}
	if err := a.kvANorm.apply(rc.b, latent, latent); err != nil {
		return fmt.Errorf("kv_a_layernorm: %w", err)
	}
	kv, err := rc.linear(a.kvB, latent, T) // T × H × (nope + vDim)
	if err != nil {
		return err
	}
	keys := make([]float32, T*H*qk)
	vals := make([]float32, T*H*a.vDim)
	kvh := a.nope + a.vDim
	for t := 0; t < T; t++ {
		kr := kva[t*kvw+a.kvRank : (t+1)*kvw]
		for h := 0; h < H; h++ {
			src := kv[(t*H+h)*kvh:]
			dk := keys[(t*H+h)*qk:]
			copy(dk[:a.nope], src[:a.nope])
			copy(dk[a.nope:qk], kr)
			copy(vals[(t*H+h)*a.vDim:(t*H+h+1)*a.vDim], src[a.nope:kvh])
		}
	}
	ctx := make([]float32, T*H*a.vDim)
	scale := float32(1 / math.Sqrt(float64(qk)))
	if err := attend(rc, q, H*qk, keys, H*qk, vals, H*a.vDim, H, H, qk, a.vDim, scale, ctx, H*a.vDim); err != nil {
		return err
	}
	o, err := rc.linear(a.o, ctx, T)
	if err != nil {
		return err
	}
	copy(out, o)
	return nil
}

// MLP is the SwiGLU feed-forward block: down(silu(gate(x)) * up(x)); with
// no gate it is NemotronH's non-gated relu2 block: down(relu(up(x))²).
type MLP struct {
	gate, up, down *Proj
}

func (m *MLP) projs() []*Proj {
	if m.gate == nil {
		return []*Proj{m.up, m.down}
	}
	return []*Proj{m.gate, m.up, m.down}
}

func (m *MLP) forward(rc *run, x, out []float32) error {
	if rc.discard {
		return m.reportOnly(rc, x, rc.batch.Tokens())
	}
	return m.applyInto(rc, x, rc.batch.Tokens(), out)
}

// apply runs the MLP on rows rows of x and returns rows×hidden outputs.
func (m *MLP) apply(rc *run, x []float32, rows int) ([]float32, error) {
	o, _ := m.down.lin.Dims()
	y := rc.alloc(rows * o)
	if err := m.applyInto(rc, x, rows, y); err != nil {
		return nil, err
	}
	return y, nil
}

// applyInto is apply writing the rows×hidden outputs to y.
func (m *MLP) applyInto(rc *run, x []float32, rows int, y []float32) error {
	if m.gate == nil {
		u, err := rc.linear(m.up, x, rows)
		if err != nil {
			return err
		}
		relu2(u)
		return rc.linearInto(m.down, u, rows, y)
	}
	g, err := rc.linear(m.gate, x, rows)
	if err != nil {
		return err
	}
	u, err := rc.linear(m.up, x, rows)
	if err != nil {
		return err
	}
	if err := rc.b.SiLUMul(g, g, u); err != nil {
		return fmt.Errorf("silu: %w", err)
	}
	return rc.linearInto(m.down, g, rows, y)
}

// router picks each token's experts and their weights from the router
// logits (tokens×experts); it returns tokens×k experts and weights.
type router interface {
	route(rc *run, logits []float32, tokens int) ([]int32, []float32, error)
}

// softmaxRouter is Qwen3-MoE's: softmax over all experts, top-k, optional
// renormalisation of the k weights.
type softmaxRouter struct {
	experts, k int
	norm       bool
}

func (r *softmaxRouter) route(rc *run, logits []float32, tokens int) ([]int32, []float32, error) {
	if err := rc.b.Softmax(logits, tokens, r.experts); err != nil {
		return nil, nil, err
	}
	idx := make([]int32, tokens*r.k)
	w := make([]float32, tokens*r.k)
	if err := rc.b.TopK(logits, tokens, r.experts, r.k, w, idx); err != nil {
		return nil, nil, err
	}
	if r.norm {
		for t := 0; t < tokens; t++ {
			row := w[t*r.k : (t+1)*r.k]
			var s float32
			for _, v := range row {
				s += v
			}
			for i := range row {
				row[i] /= s
			}
		}
	}
	return idx, w, nil
}

// sigmoidRouter is DeepSeek-V3 / GLM-4.7-Flash "noaux_tc" routing: sigmoid
// scores; the correction bias is added only to choose experts (groups by the
// sum of their top-2 biased scores, then top-k within the kept groups); the
// weights are the unbiased scores of the chosen experts, renormalised when
// norm_topk_prob, times routed_scaling_factor.
type sigmoidRouter struct {
	experts, k        int
	nGroup, topKGroup int
	norm              bool
	scale             float32
	bias              []float32 // e_score_correction_bias; nil means zeros
}

func (r *sigmoidRouter) route(rc *run, logits []float32, tokens int) ([]int32, []float32, error) {
	E := r.experts
	scores := logits
	if err := rc.b.Sigmoid(scores, logits); err != nil {
		return nil, nil, err
	}
	choice := make([]float32, len(scores))
	copy(choice, scores)
	if r.bias != nil {
		for t := 0; t < tokens; t++ {
			row := choice[t*E : (t+1)*E]
			for e := range row {
				row[e] += r.bias[e]
			}
		}
	}
	if r.nGroup > 1 && r.topKGroup < r.nGroup {
		per := E / r.nGroup
		gs := make([]float32, r.nGroup)
		gidx := make([]int32, r.topKGroup)
		gval := make([]float32, r.topKGroup)
		top2v := make([]float32, 2)
		top2i := make([]int32, 2)
		keep := make([]bool, r.nGroup)
		for t := 0; t < tokens; t++ {
			row := choice[t*E : (t+1)*E]
			for g := 0; g < r.nGroup; g++ {
				n := min(2, per)
				if err := rc.b.TopK(row[g*per:(g+1)*per], 1, per, n, top2v[:n], top2i[:n]); err != nil {
					return nil, nil, err
				}
				gs[g] = 0
				for _, v := range top2v[:n] {
					gs[g] += v
				}
			}
			if err := rc.b.TopK(gs, 1, r.nGroup, r.topKGroup, gval, gidx); err != nil {
				return nil, nil, err
			}
			clear(keep)
			for _, g := range gidx {
				keep[g] = true
			}
			for g := 0; g < r.nGroup; g++ {
				if !keep[g] {
					for e := g * per; e < (g+1)*per; e++ {
						row[e] = negInf
					}
				}
			}
		}
	}
	idx := make([]int32, tokens*r.k)
	tmp := make([]float32, tokens*r.k)
	if err := rc.b.TopK(choice, tokens, E, r.k, tmp, idx); err != nil {
		return nil, nil, err
	}
	w := make([]float32, tokens*r.k)
	for t := 0; t < tokens; t++ {
		row := w[t*r.k : (t+1)*r.k]
		var s float32
		for i := range row {
			row[i] = scores[t*E+int(idx[t*r.k+i])]
			s += row[i]
		}
		for i := range row {
			if r.norm {
				row[i] /= s + 1e-20
			}
			row[i] *= r.scale
		}
	}
	return idx, w, nil
}

// MoE is a routed mixture of SwiGLU experts, with optional shared experts
// applied to every token.
type MoE struct {
	gate    *Proj // router: experts × hidden
	router  router
	experts []*MLP
	shared  *MLP
	k       int
	// heavyRows overrides heavyExpertRows (tests); 0 keeps it.
	heavyRows int
}

func (m *MoE) projs() []*Proj {
	ps := []*Proj{m.gate}
	for _, e := range m.experts {
		ps = append(ps, e.projs()...)
	}
	if m.shared != nil {
		ps = append(ps, m.shared.projs()...)
	}
	return ps
}

func (m *MoE) forward(rc *run, x, out []float32) error {
	T, Hd := rc.batch.Tokens(), rc.hidden
	logits, err := rc.linear(m.gate, x, T)
	if err != nil {
		return err
	}
	idx, w, err := m.router.route(rc, logits, T)
	if err != nil {
		return fmt.Errorf("%s: %w", m.gate.name, err)
	}
	if rc.hooks != nil && rc.hooks.Route != nil {
		rc.hooks.Route(&Routing{Gate: m.gate.name, Experts: idx, Weights: w, Tokens: T, K: m.k, NumExperts: len(m.experts)})
	}
	// Group the (token, weight) pairs by expert, tokens in order (a
	// counting sort): expert e's pairs are toks/wts[start[e]:start[e+1]].
	E, TK := len(m.experts), T*m.k
	start := make([]int, 2*E+1)
	fill := start[E+1:]
	for _, e := range idx[:TK] {
		if e < 0 || int(e) >= E {
			return fmt.Errorf("%s: router chose expert %d of %d", m.gate.name, e, E)
		}
		start[e+1]++
	}
	for e := 0; e < E; e++ {
		start[e+1] += start[e]
		fill[e] = start[e]
	}
	toks := make([]int32, TK)
	wts := rc.alloc(TK)
	for i, e := range idx[:TK] {
		toks[fill[e]], wts[fill[e]] = int32(i/m.k), w[i]
		fill[e]++
	}
	clear(out[:T*Hd])
	if rc.discard {
		return m.reportInputs(rc, x, toks, start[:E+1])
	}
	rcRouted := rc
	if rc.hooks != nil && rc.hooks.AllExperts {
		if err := m.runExperts(rc, allExpertsWork(x, T)); err != nil {
			return err
		}
		c := *rc
		c.hooks = nil
		rcRouted = &c
	}
	routed := m.routedWork(x, toks, start[:E+1], Hd)
	routed.done = func(e int, ye []float32) error {
		te, we := toks[start[e]:start[e+1]], wts[start[e]:start[e+1]]
		for i, t := range te {
			dst := out[int(t)*Hd : (int(t)+1)*Hd]
			wt := we[i]
			for c, v := range ye[i*Hd : (i+1)*Hd] {
				dst[c] += wt * v
			}
		}
		return nil
	}
	if err := m.runExperts(rcRouted, routed); err != nil {
		return err
	}
	if m.shared != nil {
		ys, err := m.shared.apply(rc, x, T)
		if err != nil {
			return err
		}
		for i, v := range ys {
			out[i] += v
		}
	}
	return nil
}

// routedWork is the pass over the routed experts' inputs: expert e
// gathers the rows of x (tokens×hidden) of its tokens toks[start[e]:start[e+1]].
func (m *MoE) routedWork(x []float32, toks []int32, start []int, hidden int) expertWork {
	active := 0
	for e := range m.experts {
		if start[e+1] > start[e] {
			active++
		}
	}
	return expertWork{
		input: func(rc *run, e int) ([]float32, int) {
			te := toks[start[e]:start[e+1]]
			if len(te) == 0 {
				return nil, 0
			}
			xe := rc.alloc(len(te) * hidden)
			for i, t := range te {
				copy(xe[i*hidden:(i+1)*hidden], x[int(t)*hidden:])
			}
			return xe, len(te)
		},
		avgRows: len(toks) / max(1, active),
	}
}

// allExpertsWork is the all-experts calibration pass: every expert on all
// T rows of x, reporting its inputs only.
func allExpertsWork(x []float32, T int) expertWork {
	return expertWork{input: func(*run, int) ([]float32, int) { return x, T }, avgRows: T, noOutput: true}
}

// reportInputs is forward for a pass that discards the block's output
// (Hooks.InputsOnly): the experts (every one on every token under
// AllExperts, else each on its routed tokens toks[start[e]:start[e+1]])
// and the shared experts report their projections' inputs in forward
// order, and no down projection runs.
func (m *MoE) reportInputs(rc *run, x []float32, toks []int32, start []int) error {
	T := rc.batch.Tokens()
	w := allExpertsWork(x, T)
	if !rc.hooks.AllExperts {
		w = m.routedWork(x, toks, start, rc.hidden)
		w.noOutput = true
	}
	if err := m.runExperts(rc, w); err != nil {
		return err
	}
	if m.shared == nil {
		return nil
	}
	return m.shared.reportOnly(rc, x, T)
}
