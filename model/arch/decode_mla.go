package arch

import (
	"fmt"
	"math"
)

// The MLA decode path caches the expanded per-head keys (nope ‖ rope) and
// values, as prefill computes them (not the compressed latent: simpler, and
// the same numbers as Forward; the latent cache would be smaller).

func (a *MLAttention) kvWidths() (int, int) {
	return a.heads * (a.nope + a.rope), a.heads * a.vDim
}

func (a *MLAttention) decode(rc *run, kv *kvLayer, pos int, x, out []float32) error {
	n := rc.batch.Len
	H, qk := a.heads, a.nope+a.rope
	// RoPE rotates the first rotDim elements of each headDim view; the views
	// are shifted to the rope parts, so q and kva get room for the last one.
	nq := n * H * qk
	q := rc.alloc(nq + a.nope)
	if a.q != nil {
		if err := rc.linearInto(a.q, x, n, q[:nq]); err != nil {
			return err
		}
	} else {
		qa, err := rc.linear(a.qA, x, n)
		if err != nil {
			return err
		}
		if err := a.qANorm.apply(rc.b, qa, qa); err != nil {
			return fmt.Errorf("q_a_layernorm: %w", err)
		}
		if err := rc.linearInto(a.qB, qa, n, q[:nq]); err != nil {
			return err
		}
	}
	kvw := a.kvRank + a.rope
	kva := rc.alloc(n*kvw + a.kvRank) // n × (kvRank + rope)
	if err := rc.linearInto(a.kvA, x, n, kva[:n*kvw]); err != nil {
		return err
	}
	cos, sin, err := rc.cache.ropeTables(a.rope, rc.theta, pos, n)
	if err != nil {
		return err
	}
	if err := rc.b.RoPE(q[a.nope:], n, H, qk, a.rope, cos, sin, a.style); err != nil {
		return fmt.Errorf("rope q: %w", err)
	}
	q = q[:nq]
	if err := rc.b.RoPE(kva[a.kvRank:], n, 1, kvw, a.rope, cos, sin, a.style); err != nil {
		return fmt.Errorf("rope k: %w", err)
	}
	kva = kva[:n*kvw]
	latent := rc.alloc(n * a.kvRank)
	for t := 0; t < n; t++ {
		copy(latent[t*a.kvRank:(t+1)*a.kvRank], kva[t*kvw:])
	}
	if err := a.kvANorm.apply(rc.b, latent, latent); err != nil {
		return fmt.Errorf("kv_a_layernorm: %w", err)
	}
	kvb, err := rc.linear(a.kvB, latent, n) // n × H × (nope + vDim)
	if err != nil {
		return err
	}
	keys := rc.alloc(n * H * qk)
	vals := rc.alloc(n * H * a.vDim)
	kvh := a.nope + a.vDim
	for t := 0; t < n; t++ {
		kr := kva[t*kvw+a.kvRank : (t+1)*kvw]
		for h := 0; h < H; h++ {
			src := kvb[(t*H+h)*kvh:]
			dk := keys[(t*H+h)*qk:]
			copy(dk[:a.nope], src[:a.nope])
			copy(dk[a.nope:qk], kr)
			copy(vals[(t*H+h)*a.vDim:(t*H+h+1)*a.vDim], src[a.nope:kvh])
		}
	}
	ctx, err := kv.attend(rc, pos, q, keys, vals, H, H, qk, a.vDim, float32(1/math.Sqrt(float64(qk))))
	if err != nil {
		return err
	}
	return rc.linearInto(a.o, ctx, n, out)
}
