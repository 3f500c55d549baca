// Package bpw chooses per-tensor quantization formats under an average
// bits-per-weight budget, minimising the predicted output error: for each
// tensor and candidate format the error tr(ΔW H ΔWᵀ) of quantizing it
// (here with the Hessian's diagonal, llama.cpp's importance matrix, so
// Σ_c H_cc·Σ_r (W−Q)²_rc), then a greedy walk along every tensor's lower
// convex hull of (bits, error), always taking the upgrade with the largest
// error decrease per added bit while the budget allows. This is the
// classical solution of the separable allocation problem (exact on the
// hulls' vertices up to the last, partial step).
package bpw

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/marlin-llm/marlin/quant"
)

// Option is one candidate format for a tensor.
type Option struct {
	Format string  `json:"format"`
	BPW    float64 `json:"bpw"`
	Err    float64 `json:"err"`
}

// Tensor is a tensor's size and candidates.
type Tensor struct {
	Name    string   `json:"name"`
	Weights int64    `json:"weights"`
	Options []Option `json:"options"`
}

// Choice is the format chosen for one tensor.
type Choice struct {
	Name   string  `json:"name"`
	Format string  `json:"format"`
	BPW    float64 `json:"bpw"`
	Err    float64 `json:"err"`
}

// hull returns the indices of ts.Options on the lower convex hull of
// (BPW, Err), by increasing BPW (dominated options dropped).
func hull(opts []Option) []int {
	idx := make([]int, len(opts))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		if opts[idx[a]].BPW != opts[idx[b]].BPW {
			return opts[idx[a]].BPW < opts[idx[b]].BPW
		}
		return opts[idx[a]].Err < opts[idx[b]].Err
	})
	var h []int
	for _, i := range idx {
		if len(h) > 0 && opts[i].Err >= opts[h[len(h)-1]].Err {
			continue // more bits, no less error
		}
		for len(h) >= 2 {
			a, b := opts[h[len(h)-2]], opts[h[len(h)-1]]
			c := opts[i]
			// b above the segment a–c: drop it
			if (b.Err-a.Err)*(c.BPW-a.BPW) >= (c.Err-a.Err)*(b.BPW-a.BPW) {
				h = h[:len(h)-1]
				continue
			}
			break
		}
		h = append(h, i)
	}
	return h
}

type step struct {
	t    int
	gain float64 // error decrease per added bit
}

type stepHeap []step

func (s stepHeap) Len() int           { return len(s) }
func (s stepHeap) Less(i, j int) bool { return s[i].gain > s[j].gain }
func (s stepHeap) Swap(i, j int)      { s[i], s[j] = s[j], s[i] }
func (s *stepHeap) Push(x any)        { *s = append(*s, x.(step)) }
func (s *stepHeap) Pop() any          { o := *s; x := o[len(o)-1]; *s = o[:len(o)-1]; return x }

// Allocate picks one option per tensor so that the weight-averaged bits
// per weight stay at most target, minimising the summed error. It fails
// when even the cheapest options exceed the target.
func Allocate(ts []Tensor, target float64) ([]Choice, error) {
	if len(ts) == 0 {
		return nil, errors.New("bpw: no tensors")
	}
	hulls := make([][]int, len(ts))
	pos := make([]int, len(ts))
	var weights int64
	var bits float64
	for i, t := range ts {
		if len(t.Options) == 0 || t.Weights <= 0 {
			return nil, fmt.Errorf("bpw: tensor %q has no options or no weights", t.Name)
		}
		hulls[i] = hull(t.Options)
		weights += t.Weights
		bits += float64(t.Weights) * t.Options[hulls[i][0]].BPW
	}
	budget := target * float64(weights)
	if bits > budget*(1+1e-12) {
		return nil, fmt.Errorf("bpw: the smallest formats need %.4f bits per weight, more than the target %.4f", bits/float64(weights), target)
	}
	h := &stepHeap{}
	push := func(i int) {
		if pos[i]+1 < len(hulls[i]) {
			a, b := ts[i].Options[hulls[i][pos[i]]], ts[i].Options[hulls[i][pos[i]+1]]
			db := float64(ts[i].Weights) * (b.BPW - a.BPW)
			heap.Push(h, step{t: i, gain: (a.Err - b.Err) / db})
		}
	}
	for i := range ts {
		push(i)
	}
	for h.Len() > 0 {
		s := heap.Pop(h).(step)
		i := s.t
		a, b := ts[i].Options[hulls[i][pos[i]]], ts[i].Options[hulls[i][pos[i]+1]]
		db := float64(ts[i].Weights) * (b.BPW - a.BPW)
		if bits+db > budget*(1+1e-12) {
			continue // too big; smaller upgrades of other tensors may still fit
		}
		bits += db
		pos[i]++
		push(i)
	}
	out := make([]Choice, len(ts))
	for i, t := range ts {
		o := t.Options[hulls[i][pos[i]]]
		out[i] = Choice{Name: t.Name, Format: o.Format, BPW: o.BPW, Err: o.Err}
	}
	return out, nil
}

// PredictError quantizes w (rows×cols) to f with importance weights diag
// (the Hessian diagonal, len cols; GGML formats use llama.cpp's
// importance-weighted quantizer with it) and returns Σ_c diag_c·Σ_r
// (W−Q)²_rc, the diagonal part of tr(ΔW H ΔWᵀ), and the format's bits per
// weight.
func PredictError(ctx context.Context, w []float32, rows, cols int, f quant.Format, diag []float64) (float64, float64, error) {
	if len(diag) != cols || len(w) != rows*cols {
		return 0, 0, fmt.Errorf("bpw: %d weights, %d diagonal entries for %dx%d", len(w), len(diag), rows, cols)
	}
	var p *quant.Packed
	var err error
	if f.Elem == quant.ElemGGML {
		qw := make([]float32, cols)
		for c, v := range diag {
			qw[c] = float32(max(v, 0))
		}
		p, err = quant.QuantizeGGML(ctx, w, rows, cols, f, qw, "")
	} else {
		p, err = quant.QuantizeContext(ctx, w, rows, cols, f, nil)
	}
	if err != nil {
		return 0, 0, err
	}
	q := make([]float32, cols)
	var e float64
	for r := 0; r < rows; r++ {
		p.DequantizeRow(r, q)
		for c, v := range q {
			d := float64(w[r*cols+c]) - float64(v)
			e += diag[c] * d * d
		}
	}
	return e, f.BitsPerWeight(rows, cols), nil
}
