package arch

import (
	"context"
	"fmt"
	"math"

	"github.com/marlin-llm/marlin/kernels"
)

// This file is the incremental (KV-cached) decode path: Cache holds every
// attention layer's keys and values of the tokens seen so far, and
// Model.Decode runs only the new tokens through the model, attending to
// the cached ones. It computes the same function as Forward on the whole
// sequence (decode_test.go compares both with the golden prefill logits).
// GQA (qwen3, qwen3_moe) caches keys and values per KV head; MLA
// (glm4_moe_lite, decode_mla.go) caches the expanded per-head keys and
// values.

// Cache is the key/value cache of one sequence. It is not safe for
// concurrent use.
type Cache struct {
	max    int
	pos    int
	layers []kvLayer
	// Decode's reusable state: the run, scratch buffers and RoPE tables.
	rc      run
	scratch scratch
	rope    []ropeTable
}

// kvLayer is one layer's cache: for attention, keys of kw floats and
// values of vw floats per token (all heads); for a Mamba-2 mixer, its
// recurrent state (the last conv_kernel-1 conv inputs and the SSM state),
// which is all it needs of the past. MoE and MLP layers cache nothing.
type kvLayer struct {
	k, v      []float32
	kw, vw    int
	conv, ssm []float32
}

// recurrentState is a mixer whose decode carries a fixed-size state
// instead of per-token keys and values (Mamba-2).
type recurrentState interface {
	// stateSizes returns the floats of its conv and SSM states.
	stateSizes() (conv, ssm int)
}

// cachedAttention is an attention mixer with an incremental decode path.
type cachedAttention interface {
	// kvWidths returns the floats per token of the cached keys and values.
	kvWidths() (kw, vw int)
	// decode runs rc.batch.Len new tokens at positions pos.., appending
	// their keys and values to kv.
	decode(rc *run, kv *kvLayer, pos int, x, out []float32) error
}

// NewCache returns an empty cache for sequences of up to maxLen tokens.
func (m *Model) NewCache(maxLen int) (*Cache, error) {
	if maxLen <= 0 {
		return nil, fmt.Errorf("arch: cache of %d tokens", maxLen)
	}
	c := &Cache{max: maxLen, layers: make([]kvLayer, len(m.layers))}
	for i, l := range m.layers {
		if l.attn == nil {
			continue
		}
		a, ok := l.attn.(cachedAttention)
		if !ok {
			return nil, fmt.Errorf("arch: %s: layer %d's attention (%T) has no incremental decode path", m.cfg.ModelType, i, l.attn)
		}
		kw, vw := a.kvWidths()
		if int64(maxLen)*int64(kw+vw) > 1<<31 {
			return nil, fmt.Errorf("arch: cache of %d tokens is too large", maxLen)
		}
		c.layers[i] = kvLayer{k: make([]float32, maxLen*kw), v: make([]float32, maxLen*vw), kw: kw, vw: vw}
		if r, ok := l.attn.(recurrentState); ok {
			cs, ss := r.stateSizes()
			c.layers[i].conv, c.layers[i].ssm = make([]float32, cs), make([]float32, ss)
		}
	}
	return c, nil
}

// Len is the number of tokens in the cache.
func (c *Cache) Len() int { return c.pos }

// Cap is the largest number of tokens the cache holds.
func (c *Cache) Cap() int { return c.max }

// Reset empties the cache.
func (c *Cache) Reset() { c.pos = 0 }

// Decode appends ids to the cached sequence, runs them through the model
// (prefill when the cache is empty and ids is the prompt, one step when ids
// is one token) and returns their logits (len(ids)×vocab).
func (m *Model) Decode(ctx context.Context, c *Cache, ids []int32) ([]float32, error) {
	if c == nil || len(c.layers) != len(m.layers) {
		return nil, fmt.Errorf("arch: decode: cache does not belong to this model")
	}
	n := len(ids)
	if n == 0 {
		return nil, fmt.Errorf("arch: decode: no tokens")
	}
	if c.pos+n > c.max {
		return nil, fmt.Errorf("arch: decode: %d cached + %d new tokens exceed the cache of %d", c.pos, n, c.max)
	}
	s := &c.scratch
	s.reset()
	h := s.alloc(n * m.hidden)
	if err := m.embedInto(h, ids); err != nil {
		return nil, err
	}
	batch := Batch{Seqs: 1, Len: n}
	rc := &c.rc
	*rc = run{ctx: ctx, b: m.b, batch: batch, hidden: m.hidden, theta: m.cfg.Rope.Theta, cache: c}
	defer func() { c.rc = run{} }() // keep no reference to ctx
	x := s.alloc(len(h))
	out := s.alloc(len(h))
	for l, d := range m.layers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		mark := s.mark() // the layer's buffers are dead after it
		if d.attn != nil {
			if err := d.inputNorm.apply(m.b, x, h); err != nil {
				return nil, fmt.Errorf("arch: layer %d: input_layernorm: %w", l, err)
			}
			if err := d.attn.(cachedAttention).decode(rc, &c.layers[l], c.pos, x, out); err != nil {
				return nil, fmt.Errorf("arch: layer %d: %w", l, err)
			}
			for i, v := range out {
				h[i] += v
			}
		}
		if d.mlp != nil {
			if err := d.postNorm.apply(m.b, x, h); err != nil {
				return nil, fmt.Errorf("arch: layer %d: post_attention_layernorm: %w", l, err)
			}
			if err := d.mlp.forward(rc, x, out); err != nil {
				return nil, fmt.Errorf("arch: layer %d: %w", l, err)
			}
			for i, v := range out {
				h[i] += v
			}
		}
		s.release(mark)
	}
	c.pos += n
	return m.Head(ctx, h, batch, nil)
}

func (a *GQAttention) kvWidths() (int, int) { return a.kvHeads * a.hd, a.kvHeads * a.hd }

func (a *GQAttention) decode(rc *run, kv *kvLayer, pos int, x, out []float32) error {
	n := rc.batch.Len
	q, k, v, err := a.qkv(rc, x, n)
	if err != nil {
		return err
	}
	if !a.noRope {
		cos, sin, err := rc.cache.ropeTables(a.hd, rc.theta, pos, n)
		if err != nil {
			return err
		}
		if err := rc.b.RoPE(q, n, a.heads, a.hd, a.hd, cos, sin, kernels.RoPENeoX); err != nil {
			return fmt.Errorf("rope q: %w", err)
		}
		if err := rc.b.RoPE(k, n, a.kvHeads, a.hd, a.hd, cos, sin, kernels.RoPENeoX); err != nil {
			return fmt.Errorf("rope k: %w", err)
		}
	}
	ctx, err := kv.attend(rc, pos, q, k, v, a.heads, a.kvHeads, a.hd, a.hd, float32(1/math.Sqrt(float64(a.hd))))
	if err != nil {
		return err
	}
	return rc.linearInto(a.o, ctx, n, out)
}

// attend appends the n new tokens' keys k (n×kw) and values v (n×vw) at
// positions pos.. and returns the attention output (n×heads·dv) of the
// queries q (n×heads·dqk): head h reads key/value head h/(heads/kvHeads),
// query pos+i sees keys 0..pos+i.
func (kv *kvLayer) attend(rc *run, pos int, q, k, v []float32, heads, kvHeads, dqk, dv int, scale float32) ([]float32, error) {
	n := rc.batch.Len
	copy(kv.k[pos*kv.kw:(pos+n)*kv.kw], k)
	copy(kv.v[pos*kv.vw:(pos+n)*kv.vw], v)
	total := pos + n
	qw, ow := heads*dqk, heads*dv
	out := rc.alloc(n * ow)
	rep := heads / kvHeads
	if n == 1 {
		// One query sees every key: score all heads, then softmax them in
		// one call (row by row, as below).
		scores := rc.alloc(heads * total)
		for h := 0; h < heads; h++ {
			if err := rc.ctx.Err(); err != nil {
				return nil, err
			}
			g := h / rep
			if err := rc.b.Sgemm(false, true, 1, total, dqk, scale, q[h*dqk:], qw,
				kv.k[g*dqk:], kv.kw, 0, scores[h*total:], total); err != nil {
				return nil, fmt.Errorf("attention scores: %w", err)
			}
		}
		if err := rc.b.Softmax(scores, heads, total); err != nil {
			return nil, fmt.Errorf("attention softmax: %w", err)
		}
		for h := 0; h < heads; h++ {
			g := h / rep
			if err := rc.b.Sgemm(false, false, 1, dv, total, 1, scores[h*total:], total, kv.v[g*dv:], kv.vw,
				0, out[h*dv:], ow); err != nil {
				return nil, fmt.Errorf("attention values: %w", err)
			}
		}
		return out, nil
	}
	scores := rc.alloc(n * total)
	for h := 0; h < heads; h++ {
		if err := rc.ctx.Err(); err != nil {
			return nil, err
		}
		g := h / rep
		if err := rc.b.Sgemm(false, true, n, total, dqk, scale, q[h*dqk:], qw,
			kv.k[g*dqk:], kv.kw, 0, scores, total); err != nil {
			return nil, fmt.Errorf("attention scores: %w", err)
		}
		for i := 0; i < n; i++ {
			row := scores[i*total : (i+1)*total]
			seen := pos + i + 1
			if err := rc.b.Softmax(row[:seen], 1, seen); err != nil {
				return nil, fmt.Errorf("attention softmax: %w", err)
			}
			clear(row[seen:])
		}
		if err := rc.b.Sgemm(false, false, n, dv, total, 1, scores, total, kv.v[g*dv:], kv.vw,
			0, out[h*dv:], ow); err != nil {
			return nil, fmt.Errorf("attention values: %w", err)
		}
	}
	return out, nil
}
