package arch

import (
	"fmt"
	"math"

	"github.com/marlin-llm/marlin/model/hfconfig"
)

// buildNemotronH builds layer l of NemotronHForCausalLM (Nemotron-3-Nano):
// every layer is one pre-norm residual block, h += mixer(norm(h)), whose
// mixer hybrid_override_pattern picks:
//   - M: a Mamba-2 mixer (MambaMixer);
//   - *: GQA attention without any positional encoding (the Mamba layers
//     carry order), scale head_dim^-0.5;
//   - E: routed experts with non-gated relu2 MLPs (down(relu(up(x))²)),
//     sigmoid routing with e_score_correction_bias (sigmoidRouter), plus
//     one shared relu2 expert of moe_shared_expert_intermediate_size;
//   - -: a dense relu2 MLP of intermediate_size.
//
// Tensors are named as on the hub: backbone.layers.<l>.norm.weight and
// backbone.layers.<l>.mixer.*, one 2-D tensor per expert projection.
func buildNemotronH(cfg *hfconfig.Config, w *weights, l int) (*DecoderLayer, error) {
	hy := cfg.Hybrid
	if hy == nil || l >= len(hy.Pattern) {
		return nil, fmt.Errorf("config has no hybrid layer pattern for layer %d", l)
	}
	if hy.MambaAct != "silu" {
		return nil, fmt.Errorf("mamba_hidden_act %q not supported (want silu)", hy.MambaAct)
	}
	if hy.MLPAct != "relu2" {
		return nil, fmt.Errorf("mlp_hidden_act %q not supported (want relu2)", hy.MLPAct)
	}
	Hd := cfg.HiddenSize
	pre := cfg.LayerPrefix(l)
	norm := w.norm(pre+"norm.weight", Hd, cfg.RMSNormEps)
	mp := pre + "mixer."
	d := &DecoderLayer{index: l}
	switch hy.Pattern[l] {
	case hfconfig.LayerMamba:
		if hy.ProjBias {
			return nil, fmt.Errorf("mamba_proj_bias is not supported")
		}
		inner, convDim, K := hy.MambaInner(), hy.ConvDim(), hy.ConvKernel
		m := &MambaMixer{
			inProj:  w.proj(mp+"in_proj", l, -1, hy.InProjOut(), Hd),
			outProj: w.proj(mp+"out_proj", l, -1, Hd, inner),
			convW:   w.get(mp+"conv1d.weight", convDim, 1, K),
			dParam:  w.get(mp+"D", hy.MambaHeads),
			dtBias:  w.get(mp+"dt_bias", hy.MambaHeads),
			normW:   w.get(mp+"norm.weight", inner),
			eps:     float32(cfg.RMSNormEps),
			heads:   hy.MambaHeads, headDim: hy.MambaHeadDim, groups: hy.NGroups, state: hy.StateSize, kernel: K,
			dtMin: float32(hy.TimeStepMin),
		}
		if hy.ConvBias {
			m.convB = w.get(mp+"conv1d.bias", convDim)
		}
		if aLog := w.get(mp+"A_log", hy.MambaHeads); aLog != nil {
			m.a = make([]float32, len(aLog))
			for i, v := range aLog {
				m.a[i] = -float32(math.Exp(float64(v)))
			}
		}
		d.inputNorm, d.attn = norm, m
	case hfconfig.LayerAttention:
		if cfg.AttentionBias {
			return nil, fmt.Errorf("attention_bias is not supported for %s", cfg.ModelType)
		}
		H, KV, D := cfg.NumHeads, cfg.NumKVHeads, cfg.HeadDim
		a := &GQAttention{
			q:     w.proj(mp+"q_proj", l, -1, H*D, Hd),
			k:     w.proj(mp+"k_proj", l, -1, KV*D, Hd),
			v:     w.proj(mp+"v_proj", l, -1, KV*D, Hd),
			o:     w.proj(mp+"o_proj", l, -1, Hd, H*D),
			heads: H, kvHeads: KV, hd: D, noRope: true,
		}
		shareInput(mp+"input", a.q, a.k, a.v)
		d.inputNorm, d.attn = norm, a
	case hfconfig.LayerMoE:
		mo := cfg.MoE
		if mo.NGroup > 1 && (mo.NumExperts%mo.NGroup != 0 || mo.TopKGroup < 1 || mo.TopKGroup > mo.NGroup || mo.NumExperts/mo.NGroup < 2) {
			return nil, fmt.Errorf("n_group %d / topk_group %d do not fit %d experts", mo.NGroup, mo.TopKGroup, mo.NumExperts)
		}
		moe := sigmoidMoE(w, mp, l, Hd, mo)
		for e := 0; e < mo.NumExperts; e++ {
			moe.experts = append(moe.experts, relu2MLP(w, fmt.Sprintf("%sexperts.%d.", mp, e), l, e, Hd, mo.IntermediateSize))
		}
		if hy.SharedIntermediate > 0 {
			moe.shared = relu2MLP(w, mp+"shared_experts.", l, -1, Hd, hy.SharedIntermediate)
			shareInput(mp+"input", moe.gate, moe.shared.up)
		} else {
			shareInput(mp+"input", moe.gate)
		}
		d.postNorm, d.mlp = norm, moe
	case hfconfig.LayerMLP:
		d.postNorm, d.mlp = norm, relu2MLP(w, mp, l, -1, Hd, cfg.IntermediateSize)
	default:
		return nil, fmt.Errorf("layer kind %q not supported", hy.Pattern[l])
	}
	return d, nil
}

// relu2MLP builds a non-gated relu2 block from prefix+"{up,down}_proj".
func relu2MLP(w *weights, prefix string, l, expert, hidden, inter int) *MLP {
	return &MLP{
		up:   w.proj(prefix+"up_proj", l, expert, inter, hidden),
		down: w.proj(prefix+"down_proj", l, expert, hidden, inter),
	}
}

// relu2 replaces every v of x by max(v, 0)².
func relu2(x []float32) {
	for i, v := range x {
		if v < 0 {
			v = 0
		}
		x[i] = v * v
	}
}

// MambaMixer is NemotronH's Mamba-2 mixer. in_proj maps each token to a
// gate z (inner), x/B/C (inner + 2·groups·state) and one dt per head. x/B/C
// go through a causal depthwise conv1d of conv_kernel taps (plus bias) and
// SiLU; then, per head h (group g = h / (heads/groups)) and token t, with
// dt = max(softplus(dt_raw + dt_bias), time_step_min) and A = -exp(A_log):
//
//	S_t = exp(dt·A)·S_{t-1} + dt·x_t ⊗ B_t   (head_dim × state)
//	y_t = S_t·C_t + D·x_t
//
// which is exactly what transformers' chunked SSD computes (the chunking
// only reorders the sums). y is gated and normalised by groups (RMSNorm of
// each inner/groups slice of y·silu(z), times norm.weight) and out_proj
// maps it back to the hidden size. Prefill runs the recurrence token by
// token from a zero state; decode continues it from the cached conv and
// SSM state.
type MambaMixer struct {
	inProj, outProj *Proj
	convW           []float32 // convDim × kernel
	convB           []float32 // convDim; nil without conv bias
	a               []float32 // -exp(A_log), per head
	dParam          []float32 // D, per head
	dtBias          []float32 // per head
	normW           []float32 // inner
	eps             float32
	heads, headDim  int
	groups, state   int
	kernel          int
	dtMin           float32
}

func (m *MambaMixer) projs() []*Proj { return []*Proj{m.inProj, m.outProj} }

func (m *MambaMixer) inner() int   { return m.heads * m.headDim }
func (m *MambaMixer) convDim() int { return m.inner() + 2*m.groups*m.state }
func (m *MambaMixer) projOut() int { return m.inner() + m.convDim() + m.heads }

// stateSizes is the conv state ((kernel-1) × convDim) and the SSM state
// (heads × head_dim × state) of one sequence.
func (m *MambaMixer) stateSizes() (int, int) {
	return (m.kernel - 1) * m.convDim(), m.heads * m.headDim * m.state
}

// kvWidths: a Mamba mixer caches no per-token keys or values.
func (m *MambaMixer) kvWidths() (int, int) { return 0, 0 }

func (m *MambaMixer) forward(rc *run, x, out []float32) error {
	T, L := rc.batch.Tokens(), rc.batch.Len
	zx, err := rc.linear(m.inProj, x, T)
	if err != nil {
		return err
	}
	P, inner := m.projOut(), m.inner()
	y := rc.alloc(T * inner)
	cs, ss := m.stateSizes()
	err = parallelFor(rc, rc.batch.Seqs, func(_, s int) error {
		conv, ssm := make([]float32, cs), make([]float32, ss)
		m.scan(zx[s*L*P:(s+1)*L*P], L, conv, ssm, y[s*L*inner:(s+1)*L*inner])
		return nil
	})
	if err != nil {
		return err
	}
	m.gateNorm(zx, y, T)
	return rc.linearInto(m.outProj, y, T, out)
}

func (m *MambaMixer) decode(rc *run, kv *kvLayer, pos int, x, out []float32) error {
	n := rc.batch.Len
	if pos == 0 {
		clear(kv.conv)
		clear(kv.ssm)
	}
	zx, err := rc.linear(m.inProj, x, n)
	if err != nil {
		return err
	}
	y := rc.alloc(n * m.inner())
	m.scan(zx, n, kv.conv, kv.ssm, y)
	m.gateNorm(zx, y, n)
	return rc.linearInto(m.outProj, y, n, out)
}

// scan runs the conv and the SSM recurrence over L tokens of one sequence
// (zx: L × projOut in_proj outputs), continuing from and updating the
// states conv ((kernel-1) × convDim, oldest input first) and ssm, and
// writes y (L × inner) before the gated norm.
func (m *MambaMixer) scan(zx []float32, L int, conv, ssm, y []float32) {
	P, inner, cd, K := m.projOut(), m.inner(), m.convDim(), m.kernel
	N, hd := m.state, m.headDim
	per := m.heads / m.groups
	xbc := make([]float32, cd)
	for t := 0; t < L; t++ {
		row := zx[t*P : (t+1)*P]
		raw := row[inner : inner+cd]
		dtRaw := row[inner+cd : inner+cd+m.heads]
		for c := 0; c < cd; c++ {
			w := m.convW[c*K : (c+1)*K]
			var acc float32
			if m.convB != nil {
				acc = m.convB[c]
			}
			for j := 0; j < K-1; j++ {
				acc += w[j] * conv[j*cd+c]
			}
			acc += w[K-1] * raw[c]
			xbc[c] = acc / (1 + float32(math.Exp(float64(-acc)))) // SiLU
		}
		if K > 1 {
			copy(conv, conv[cd:])
			copy(conv[(K-2)*cd:], raw)
		}
		xs, B, C := xbc[:inner], xbc[inner:inner+m.groups*N], xbc[inner+m.groups*N:]
		yt := y[t*inner : (t+1)*inner]
		for h := 0; h < m.heads; h++ {
			dt := softplus(dtRaw[h] + m.dtBias[h])
			if dt < m.dtMin {
				dt = m.dtMin
			}
			dA := float32(math.Exp(float64(dt * m.a[h])))
			g := h / per
			Bg, Cg := B[g*N:(g+1)*N], C[g*N:(g+1)*N]
			for p := 0; p < hd; p++ {
				xv := xs[h*hd+p]
				dx := dt * xv
				S := ssm[(h*hd+p)*N : (h*hd+p+1)*N]
				var acc float32
				for n, b := range Bg {
					s := S[n]*dA + dx*b
					S[n] = s
					acc += s * Cg[n]
				}
				yt[h*hd+p] = acc + m.dParam[h]*xv
			}
		}
	}
}

// softplus is log(1+e^x), with PyTorch's threshold: x itself above 20.
func softplus(x float32) float32 {
	if x > 20 {
		return x
	}
	return float32(math.Log1p(math.Exp(float64(x))))
}

// gateNorm applies the gated grouped RMSNorm to rows rows of y in place:
// y·silu(z), normalised over each inner/groups slice, times norm.weight.
func (m *MambaMixer) gateNorm(zx, y []float32, rows int) {
	P, inner := m.projOut(), m.inner()
	gs := inner / m.groups
	for t := 0; t < rows; t++ {
		z := zx[t*P : t*P+inner]
		yt := y[t*inner : (t+1)*inner]
		for i, zv := range z {
			yt[i] *= zv / (1 + float32(math.Exp(float64(-zv))))
		}
		for g := 0; g < m.groups; g++ {
			seg := yt[g*gs : (g+1)*gs]
			var ss float64
			for _, v := range seg {
				ss += float64(v) * float64(v)
			}
			r := float32(1 / math.Sqrt(ss/float64(gs)+float64(m.eps)))
			w := m.normW[g*gs : (g+1)*gs]
			for i, v := range seg {
				seg[i] = w[i] * (v * r)
			}
		}
	}
}
