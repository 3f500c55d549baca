package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"time"

	"github.com/marlin-llm/marlin/kernels"
	"github.com/marlin-llm/marlin/model/arch"
	"github.com/marlin-llm/marlin/model/qmodel"
	"github.com/marlin-llm/marlin/model/tokenizer"
)

func generateCommand() *command {
	var (
		prompt      string
		maxTokens   int
		temperature float64
		topP        float64
		seed        uint64
		backend     string
		threads     int
		dequantize  bool
		f32Act      bool
	)
	return &command{
		Name:  "generate",
		Usage: "PACKED_MODEL --prompt TEXT",
		Summary: "generate text from a native packed checkpoint (weights run through the dequant kernels, KV cache); " +
			"greedy by default, top-p sampling with --temperature; prints tokens/s",
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&prompt, "prompt", "", "prompt text")
			fs.IntVar(&maxTokens, "n", 64, "tokens to generate")
			fs.Float64Var(&temperature, "temperature", 0, "sampling temperature (0: greedy)")
			fs.Float64Var(&topP, "top-p", 0.9, "nucleus sampling mass (with --temperature > 0)")
			fs.Uint64Var(&seed, "seed", 1, "sampling seed")
			fs.StringVar(&backend, "backend", "auto", "kernels backend: auto, cpu, metal")
			fs.IntVar(&threads, "threads", 0, "threads per kernel call (0: all cores)")
			fs.BoolVar(&dequantize, "dequantize", false, "run the F32 model of the dequantized weights instead (for comparison)")
			fs.BoolVar(&f32Act, "f32-activations", false, "keep decode activations in float32 (default: int8 blocks of 32 for mxfp4/nvfp4/fp4/int4 weights on the CPU, as llama.cpp)")
		},
		Run: func(ctx context.Context, a *app, args []string) error {
			if len(args) != 1 {
				return usagef("want a packed model directory")
			}
			if prompt == "" {
				return usagef("--prompt is required")
			}
			if maxTokens <= 0 || temperature < 0 || math.IsNaN(temperature) || !(topP > 0 && topP <= 1) {
				return usagef("want -n > 0, --temperature >= 0 and 0 < --top-p <= 1")
			}
			b, err := kernels.Open(backend, kernels.Options{Threads: threads, F32Activations: f32Act})
			if err != nil {
				return err
			}
			tok, err := tokenizer.Load(filepath.Join(args[0], "tokenizer.json"))
			if err != nil {
				return err
			}
			ids, err := tok.Encode(prompt)
			if err != nil {
				return err
			}
			if len(ids) == 0 {
				return fmt.Errorf("generate: the prompt encodes to no tokens")
			}
			m, err := qmodel.Load(args[0], qmodel.Options{Backend: b, Dequantize: dequantize})
			if err != nil {
				return err
			}
			defer m.Close()
			c, err := m.NewCache(len(ids) + maxTokens)
			if err != nil {
				return err
			}
			s := sampler{temperature: temperature, topP: topP, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
			t0 := time.Now()
			logits, err := m.Decode(ctx, c, ids)
			if err != nil {
				return err
			}
			prefill := time.Since(t0)
			V := m.Vocab()
			next := s.pick(logits[(len(ids)-1)*V:])
			var out []int32
			t1 := time.Now()
			eos := eosIDs(m.Model)
			for len(out) < maxTokens {
				out = append(out, next)
				if eos[next] || len(out) == maxTokens {
					break
				}
				lg, err := m.Decode(ctx, c, []int32{next})
				if err != nil {
					return err
				}
				next = s.pick(lg)
			}
			decode := time.Since(t1)
			text, err := tok.Decode(out)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.Stdout, "%s%s\n", prompt, text)
			steps := max(len(out)-1, 1) // the first token came from the prefill
			kind := fmt.Sprintf("packed (%d projections: %v)", m.Packed, m.Formats)
			if dequantize {
				kind = "dequantized F32"
			}
			fmt.Fprintf(a.Stderr, "%s on %s: prompt %d tokens in %.3fs (%.1f tok/s), generated %d tokens, decode %.1f tok/s\n",
				kind, b.Name(), len(ids), prefill.Seconds(), float64(len(ids))/prefill.Seconds(), len(out), float64(steps)/decode.Seconds())
			return nil
		},
	}
}

// eosIDs returns the end-of-sequence token ids of the model's config.
func eosIDs(m *arch.Model) map[int32]bool {
	out := map[int32]bool{}
	for _, id := range m.Config().EOSTokenIDs {
		out[int32(id)] = true
	}
	return out
}

// sampler picks the next token: argmax at temperature 0, otherwise top-p
// (nucleus) sampling of softmax(logits / temperature).
type sampler struct {
	temperature, topP float64
	rng               *rand.Rand
}

func (s *sampler) pick(logits []float32) int32 {
	best := 0
	for i, v := range logits {
		if v > logits[best] {
			best = i
		}
	}
	if s.temperature == 0 {
		return int32(best)
	}
	type cand struct {
		id int
		p  float64
	}
	cs := make([]cand, len(logits))
	var sum float64
	for i, v := range logits {
		p := math.Exp((float64(v) - float64(logits[best])) / s.temperature)
		cs[i] = cand{i, p}
		sum += p
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].p > cs[j].p })
	var acc float64
	n := 0
	for n < len(cs) {
		acc += cs[n].p / sum
		n++
		if acc >= s.topP {
			break
		}
	}
	r := s.rng.Float64() * acc
	for _, c := range cs[:n] {
		r -= c.p / sum
		if r <= 0 {
			return int32(c.id)
		}
	}
	return int32(cs[n-1].id)
}
