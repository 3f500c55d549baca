// Package eval measures language-model quality with the forward pass of
// package arch: perplexity over fixed windows of a token stream (the
// protocol of ../shared/testdata/README.md and llama-perplexity) and the KL
// divergence between two models' next-token distributions on the same
// windows. Log-softmax sums are accumulated in float64.
package eval

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/marlin-llm/marlin/model/arch"
)

// Options selects the windows and the scored tokens.
type Options struct {
	// Window is the number of tokens per window (default 256).
	Window int
	// Windows is how many consecutive windows to score (0: all whole windows).
	Windows int
	// LlamaCpp scores only the second half of each window, tokens
	// Window/2+1 .. Window-1, as llama-perplexity -c Window does; otherwise
	// every token but the first is scored.
	LlamaCpp bool
	// Batch is how many windows one forward pass runs (default 4).
	Batch int
	// Progress, when set, is called after each forward pass with the
	// windows done so far and the total.
	Progress func(done, total int)
	// Hooks are passed to every forward pass (of both models for KL).
	Hooks *arch.Hooks
	// AfterLayer, when set, makes the models run layer by layer over all
	// windows (each layer on every batch, then the next layer) instead of
	// window batch by window batch, and is called after each layer, so
	// that a caller can release that layer's weights (mapped pages) before
	// the next one is read: a model larger than memory is evaluated with
	// one layer resident. The scores are the same (each batch runs the
	// same operations); the hidden states of all windows are held instead.
	AfterLayer func(layer int)
}

func (o *Options) defaults(n int) (windows int, err error) {
	if o.Window == 0 {
		o.Window = 256
	}
	if o.Batch <= 0 {
		o.Batch = 4
	}
	if o.Window < 2 {
		return 0, fmt.Errorf("eval: window of %d tokens (need at least 2)", o.Window)
	}
	avail := n / o.Window
	windows = o.Windows
	if windows == 0 {
		windows = avail
	}
	if windows < 0 || windows > avail {
		return 0, fmt.Errorf("eval: %d windows of %d tokens requested, the text has %d tokens (%d windows)", o.Windows, o.Window, n, avail)
	}
	if windows == 0 {
		return 0, fmt.Errorf("eval: text of %d tokens is shorter than one window of %d", n, o.Window)
	}
	return windows, nil
}

// firstScored is the index (within a window) of the first predicted token.
func (o *Options) firstScored() int {
	if o.LlamaCpp {
		return o.Window/2 + 1
	}
	return 1
}

// Result is a perplexity measurement.
type Result struct {
	PPL     float64 // exp(NLL)
	NLL     float64 // mean negative log-likelihood (nats)
	Tokens  int     // predictions scored
	Windows int
}

// Perplexity scores ids with m under opts.
func Perplexity(ctx context.Context, m *arch.Model, ids []int32, opts Options) (*Result, error) {
	sc, err := Score(ctx, m, ids, opts)
	if err != nil {
		return nil, err
	}
	r := sc.Perplexity(opts.LlamaCpp)
	return &r, nil
}

// Scores holds the negative log-likelihood of every predicted token of
// every window, so both protocols come from one pass.
type Scores struct {
	Window  int
	Windows int
	// NLL[w*(Window-1)+p-1] is -log P(token p of window w | tokens < p).
	NLL []float64
}

// Score runs m over the windows of ids selected by opts (opts.LlamaCpp is
// ignored: every position is scored) and returns per-token NLLs.
func Score(ctx context.Context, m *arch.Model, ids []int32, opts Options) (*Scores, error) {
	sc := &Scores{}
	V := m.Vocab()
	err := eachWindowBatch(ctx, []*arch.Model{m}, ids, &opts, func(logits [][]float32, win []int32, seqs int) error {
		per := opts.Window - 1 // opts has its defaults by now
		base := len(sc.NLL)
		sc.NLL = append(sc.NLL, make([]float64, seqs*per)...)
		nll := sc.NLL[base:]
		// Rows are independent: split them over the cores.
		parallelRows(seqs*per, func(i int) {
			s, p := i/per, i%per+1
			row := logits[0][((s*opts.Window)+p-1)*V:][:V]
			nll[i] = -logProb(row, win[s*opts.Window+p])
		})
		sc.Windows += seqs
		return nil
	})
	if err != nil {
		return nil, err
	}
	sc.Window = opts.Window
	return sc, nil
}

// Perplexity aggregates the scores under the full protocol (every token but
// the first of each window) or, with llamaCpp, llama-perplexity's (tokens
// Window/2+1 .. Window-1).
func (s *Scores) Perplexity(llamaCpp bool) Result {
	first := 1
	if llamaCpp {
		first = s.Window/2 + 1
	}
	per := s.Window - 1
	var sum float64
	n := 0
	for w := 0; w < s.Windows; w++ {
		for _, v := range s.NLL[w*per+first-1 : (w+1)*per] {
			sum += v
			n++
		}
	}
	nll := sum / float64(n)
	return Result{PPL: math.Exp(nll), NLL: nll, Tokens: n, Windows: s.Windows}
}

// KLResult compares a model Q with a reference P on the same windows.
type KLResult struct {
	// KL is the mean over scored tokens of KL(P‖Q) in nats.
	KL float64
	// MaxKL is the largest per-token KL(P‖Q).
	MaxKL float64
	// Top1 is the fraction of tokens where both models' argmax agree.
	Top1 float64
	// P and Q are the two models' perplexities.
	P, Q Result
}

// KL computes the divergence of q's next-token distributions from the
// reference p's, with both perplexities, in one pass over the windows.
func KL(ctx context.Context, p, q *arch.Model, ids []int32, opts Options) (*KLResult, error) {
	if p.Vocab() != q.Vocab() {
		return nil, fmt.Errorf("eval: kl: vocabularies differ (%d vs %d)", p.Vocab(), q.Vocab())
	}
	V := p.Vocab()
	var kl, nllP, nllQ float64
	var n, agree int
	res := &KLResult{}
	lp := make([]float64, V)
	lq := make([]float64, V)
	err := eachWindowBatch(ctx, []*arch.Model{p, q}, ids, &opts, func(logits [][]float32, win []int32, seqs int) error {
		for s := 0; s < seqs; s++ {
			for t := opts.firstScored(); t < opts.Window; t++ {
				off := ((s * opts.Window) + t - 1) * V
				logSoftmax(lp, logits[0][off:off+V])
				logSoftmax(lq, logits[1][off:off+V])
				var d float64
				ap, aq := 0, 0
				for i := range lp {
					d += math.Exp(lp[i]) * (lp[i] - lq[i])
					if lp[i] > lp[ap] {
						ap = i
					}
					if lq[i] > lq[aq] {
						aq = i
					}
				}
				tok := win[s*opts.Window+t]
				nllP -= lp[tok]
				nllQ -= lq[tok]
				kl += d
				res.MaxKL = math.Max(res.MaxKL, d)
				if ap == aq {
					agree++
				}
				n++
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	w := n / (opts.Window - opts.firstScored())
	res.KL = kl / float64(n)
	res.Top1 = float64(agree) / float64(n)
	res.P = Result{PPL: math.Exp(nllP / float64(n)), NLL: nllP / float64(n), Tokens: n, Windows: w}
	res.Q = Result{PPL: math.Exp(nllQ / float64(n)), NLL: nllQ / float64(n), Tokens: n, Windows: w}
	return res, nil
}

// eachWindowBatch runs every model on batches of windows and hands the
// logits (one slice per model) to fn with the batch's tokens.
func eachWindowBatch(ctx context.Context, models []*arch.Model, ids []int32, opts *Options,
	fn func(logits [][]float32, win []int32, seqs int) error) error {
	windows, err := opts.defaults(len(ids))
	if err != nil {
		return err
	}
	for _, m := range models {
		for i, id := range ids[:windows*opts.Window] {
			if id < 0 || int(id) >= m.Vocab() {
				return fmt.Errorf("eval: token %d at %d outside the vocabulary of %d", id, i, m.Vocab())
			}
		}
	}
	if opts.AfterLayer != nil {
		return eachWindowBatchLayered(ctx, models, ids, windows, opts, fn)
	}
	logits := make([][]float32, len(models))
	for w := 0; w < windows; w += opts.Batch {
		seqs := min(opts.Batch, windows-w)
		win := ids[w*opts.Window : (w+seqs)*opts.Window]
		batch := arch.Batch{Seqs: seqs, Len: opts.Window}
		for i, m := range models {
			if logits[i], err = m.Forward(ctx, win, batch, opts.Hooks); err != nil {
				return fmt.Errorf("eval: windows %d..%d: %w", w, w+seqs-1, err)
			}
		}
		if err := fn(logits, win, seqs); err != nil {
			return err
		}
		if opts.Progress != nil {
			opts.Progress(w+seqs, windows)
		}
	}
	return nil
}

// eachWindowBatchLayered is eachWindowBatch run layer-outer (see
// Options.AfterLayer).
func eachWindowBatchLayered(ctx context.Context, models []*arch.Model, ids []int32, windows int, opts *Options,
	fn func(logits [][]float32, win []int32, seqs int) error) error {
	n := windows * opts.Window
	hs := make([][]float32, len(models))
	layers := 0
	for i, m := range models {
		var err error
		if hs[i], err = m.Embed(ids[:n]); err != nil {
			return fmt.Errorf("eval: %w", err)
		}
		layers = max(layers, m.NumLayers())
	}
	for l := 0; l < layers; l++ {
		for i, m := range models {
			if l >= m.NumLayers() {
				continue
			}
			hd := m.Hidden()
			for w := 0; w < windows; w += opts.Batch {
				seqs := min(opts.Batch, windows-w)
				h := hs[i][w*opts.Window*hd : (w+seqs)*opts.Window*hd]
				if err := m.Layer(ctx, l, h, arch.Batch{Seqs: seqs, Len: opts.Window}, opts.Hooks); err != nil {
					return fmt.Errorf("eval: windows %d..%d: %w", w, w+seqs-1, err)
				}
			}
		}
		opts.AfterLayer(l)
		if opts.Progress != nil {
			opts.Progress((l+1)*windows/(layers+1), windows)
		}
	}
	logits := make([][]float32, len(models))
	for w := 0; w < windows; w += opts.Batch {
		seqs := min(opts.Batch, windows-w)
		win := ids[w*opts.Window : (w+seqs)*opts.Window]
		batch := arch.Batch{Seqs: seqs, Len: opts.Window}
		for i, m := range models {
			hd := m.Hidden()
			h := hs[i][w*opts.Window*hd : (w+seqs)*opts.Window*hd]
			var err error
			if logits[i], err = m.Head(ctx, h, batch, opts.Hooks); err != nil {
				return fmt.Errorf("eval: windows %d..%d: %w", w, w+seqs-1, err)
			}
		}
		if err := fn(logits, win, seqs); err != nil {
			return err
		}
	}
	if opts.Progress != nil {
		opts.Progress(windows, windows)
	}
	return nil
}

// parallelRows calls fn(0..n-1) from GOMAXPROCS goroutines.
func parallelRows(n int, fn func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += workers {
				fn(i)
			}
		}(w)
	}
	wg.Wait()
}

// logProb returns log softmax(row)[tok].
func logProb(row []float32, tok int32) float64 {
	mx := math.Inf(-1)
	for _, v := range row {
		mx = math.Max(mx, float64(v))
	}
	var s float64
	for _, v := range row {
		s += math.Exp(float64(v) - mx)
	}
	return float64(row[tok]) - mx - math.Log(s)
}

// logSoftmax writes log softmax(row) to dst.
func logSoftmax(dst []float64, row []float32) {
	mx := math.Inf(-1)
	for _, v := range row {
		mx = math.Max(mx, float64(v))
	}
	var s float64
	for _, v := range row {
		s += math.Exp(float64(v) - mx)
	}
	ls := mx + math.Log(s)
	for i, v := range row {
		dst[i] = float64(v) - ls
	}
}
