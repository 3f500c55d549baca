package arch

import (
	"fmt"
	"math"

	"github.com/marlin-llm/marlin/kernels"
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
	var q []float32
	var err error
	if a.q != nil {
		if q, err = rc.linear(a.q, x, n); err != nil {
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
		if q, err = rc.linear(a.qB, qa, n); err != nil {
			return err
		}
	}
	kva, err := rc.linear(a.kvA, x, n) // n × (kvRank + rope)
	if err != nil {
		return err
	}
	positions := make([]int, n)
	for i := range positions {
		positions[i] = pos + i
	}
	cos, sin, err := kernels.RoPETables(positions, a.rope, rc.theta)
	if err != nil {
		return err
	}
	nq := len(q)
	q = append(q, make([]float32, a.nope)...)
	if err := rc.b.RoPE(q[a.nope:], n, H, qk, a.rope, cos, sin, a.style); err != nil {
		return fmt.Errorf("rope q: %w", err)
	}
	q = q[:nq]
	kvw := a.kvRank + a.rope
	nkv := len(kva)
	kva = append(kva, make([]float32, a.kvRank)...)
	if err := rc.b.RoPE(kva[a.kvRank:], n, 1, kvw, a.rope, cos, sin, a.style); err != nil {
		return fmt.Errorf("rope k: %w", err)
	}
	kva = kva[:nkv]
	latent := make([]float32, n*a.kvRank)
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
	keys := make([]float32, n*H*qk)
	vals := make([]float32, n*H*a.vDim)
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
	o, err := rc.linear(a.o, ctx, n)
	if err != nil {
		return err
	}
	copy(out, o)
	return nil
}
