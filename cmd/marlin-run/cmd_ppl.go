package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/marlin-llm/marlin/kernels"
	"github.com/marlin-llm/marlin/model/arch"
	"github.com/marlin-llm/marlin/model/eval"
	"github.com/marlin-llm/marlin/model/tokenizer"
)

// maxTextBytes bounds the text file ppl reads.
const maxTextBytes = 1 << 30

func pplCommand() *command {
	var (
		llama   bool
		window  int
		windows int
		batch   int
		backend string
		threads int
		ref     string
		experts bool
		asJSON  bool
	)
	return &command{
		Name:  "ppl",
		Usage: "MODEL_DIR TEXT_FILE",
		Summary: "perplexity of a Hugging Face model (config.json, safetensors, tokenizer.json) on a text file: " +
			"consecutive windows, every token but the first scored (or llama-perplexity's second half)",
		Flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&llama, "llamacpp-protocol", false, "score only tokens window/2+1..window-1 of each window, as llama-perplexity -c WINDOW")
			fs.IntVar(&window, "window", 256, "tokens per window")
			fs.IntVar(&windows, "windows", 64, "number of windows (0: all whole windows of the text)")
			fs.IntVar(&batch, "batch", 4, "windows per forward pass")
			fs.StringVar(&backend, "backend", "auto", "kernels backend: auto, cpu, metal")
			fs.IntVar(&threads, "threads", 0, "threads per kernel call (0: all cores)")
			fs.StringVar(&ref, "ref", "", "reference model dir: also report KL(ref ‖ model) and the reference's perplexity")
			fs.BoolVar(&experts, "experts", false, "report tokens routed to each expert of every MoE layer")
			fs.BoolVar(&asJSON, "json", false, "print the result as JSON")
		},
		Run: func(ctx context.Context, a *app, args []string) error {
			if len(args) != 2 {
				return usagef("want a model directory and a text file")
			}
			b, err := kernels.Open(backend, kernels.Options{Threads: threads})
			if err != nil {
				return err
			}
			ids, err := tokenizeFile(filepath.Join(args[0], "tokenizer.json"), args[1])
			if err != nil {
				return err
			}
			m, err := arch.Load(args[0], arch.Options{Backend: b})
			if err != nil {
				return err
			}
			var counts arch.ExpertCounts
			opts := eval.Options{Window: window, Windows: windows, LlamaCpp: llama, Batch: batch}
			if experts {
				opts.Hooks = &arch.Hooks{Route: counts.Add}
			}
			total := windows
			if total == 0 && window > 0 {
				total = len(ids) / window
			}
			done := progressFunc(a.Stderr, a.barsOK(), int64(total))
			opts.Progress = done.update
			start := time.Now()
			out := pplOutput{Model: args[0], Text: args[1], Backend: b.Name(), Window: window, LlamaCpp: llama}
			if ref != "" {
				rm, err := arch.Load(ref, arch.Options{Backend: b})
				if err != nil {
					done.abort()
					return fmt.Errorf("reference model: %w", err)
				}
				k, err := eval.KL(ctx, rm, m, ids, opts)
				done.wait()
				if err != nil {
					return err
				}
				out.Result = k.Q
				out.Ref = &refOutput{Model: ref, PPL: k.P.PPL, KL: k.KL, MaxKL: k.MaxKL, Top1: k.Top1}
			} else {
				r, err := eval.Perplexity(ctx, m, ids, opts)
				done.wait()
				if err != nil {
					return err
				}
				out.Result = *r
			}
			out.Seconds = time.Since(start).Seconds()
			out.TokensPerSec = float64(out.Result.Windows*window) / out.Seconds
			if ref != "" {
				out.TokensPerSec *= 2
			}
			if experts {
				out.Experts = counts.Counts()
			}
			return writePPL(a.Stdout, &out, asJSON)
		},
	}
}

type refOutput struct {
	Model string  `json:"model"`
	PPL   float64 `json:"ppl"`
	KL    float64 `json:"kl"`
	MaxKL float64 `json:"max_kl"`
	Top1  float64 `json:"top1_agreement"`
}

type pplOutput struct {
	Model        string `json:"model"`
	Text         string `json:"text"`
	Backend      string `json:"backend"`
	Window       int    `json:"window"`
	LlamaCpp     bool   `json:"llamacpp_protocol"`
	eval.Result  `json:"result"`
	Ref          *refOutput       `json:"reference,omitempty"`
	Experts      map[string][]int `json:"expert_token_counts,omitempty"`
	Seconds      float64          `json:"seconds"`
	TokensPerSec float64          `json:"prefill_tokens_per_second"`
}

func writePPL(w io.Writer, o *pplOutput, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(o)
	}
	proto := "all tokens but the first"
	if o.LlamaCpp {
		proto = "second half (llama-perplexity)"
	}
	fmt.Fprintf(w, "ppl %.4f  (nll %.6f, %d tokens scored in %d windows of %d, %s)\n",
		o.PPL, o.NLL, o.Tokens, o.Windows, o.Window, proto)
	if o.Ref != nil {
		fmt.Fprintf(w, "reference ppl %.4f  KL(ref‖model) %.6f nats/token (max %.4f), top-1 agreement %.2f%%\n",
			o.Ref.PPL, o.Ref.KL, o.Ref.MaxKL, 100*o.Ref.Top1)
	}
	if len(o.Experts) > 0 {
		gates := make([]string, 0, len(o.Experts))
		for g := range o.Experts {
			gates = append(gates, g)
		}
		sort.Strings(gates)
		for _, g := range gates {
			fmt.Fprintf(w, "%s tokens per expert: %v\n", g, o.Experts[g])
		}
	}
	_, err := fmt.Fprintf(w, "%.1f s, %.0f prefill tokens/s on %s\n", o.Seconds, o.TokensPerSec, o.Backend)
	return err
}

// tokenizeFile encodes a text file with a tokenizer.json.
func tokenizeFile(tokPath, textPath string) ([]int32, error) {
	tok, err := tokenizer.Load(tokPath)
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(textPath)
	if err != nil {
		return nil, err
	}
	if st.Size() > maxTextBytes {
		return nil, fmt.Errorf("%s is %d bytes, over the %d limit", textPath, st.Size(), maxTextBytes)
	}
	text, err := os.ReadFile(textPath)
	if err != nil {
		return nil, err
	}
	return tok.Encode(string(text))
}

// progress shows windows done: a bar on a terminal, otherwise a line per
// quarter.
type progress struct {
	w     io.Writer
	p     *mpb.Progress
	bar   *mpb.Bar
	total int64
	last  int64
}

func progressFunc(w io.Writer, bars bool, total int64) *progress {
	pr := &progress{w: w, total: total}
	if bars && total > 0 {
		pr.p = mpb.New(mpb.WithOutput(w), mpb.WithWidth(40), mpb.WithRefreshRate(150*time.Millisecond))
		pr.bar = pr.p.AddBar(total,
			mpb.PrependDecorators(decor.Name("windows "), decor.CountersNoUnit("%d/%d")),
			mpb.AppendDecorators(decor.Percentage(decor.WC{W: 5}), decor.OnComplete(decor.AverageETA(decor.ET_STYLE_GO, decor.WC{W: 8}), " done")),
		)
	}
	return pr
}

func (pr *progress) update(done, total int) {
	if pr.bar != nil {
		pr.bar.SetCurrent(int64(done))
		return
	}
	if total > 0 && (int64(done)*4/int64(total) > pr.last*4/int64(total) || done == total) {
		fmt.Fprintf(pr.w, "windows %d/%d\n", done, total)
	}
	pr.last = int64(done)
}

func (pr *progress) wait() {
	if pr.p != nil {
		if !pr.bar.Completed() {
			pr.bar.Abort(false)
		}
		pr.p.Wait()
	}
}

func (pr *progress) abort() { pr.wait() }
