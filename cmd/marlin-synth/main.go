// Command marlin-synth writes a synthetic checkpoint with the real tensor
// names and layout of GLM-4.7-Flash (Glm4MoeLite, -arch glm47) or
// Nemotron-3-Nano-30B-A3B (nemotron_h, -arch nemotron3-nano), scaled down
// in width and depth, for memory-budget and throughput tests on realistic shapes. It
// writes a byte-level BPE tokenizer next to the weights (the bundled
// qwen3-nano one, ids < 2048, or -tokenizer DIR's) so that jobs that
// tokenize text (calibrate) or store a vocabulary (GGUF) run on it too.
//
//	marlin-synth -out runs/glm47-synth -width-div 4 -layers 4
//	marlin-synth -arch nemotron3-nano -out runs/nemo-synth -width-div 1 -layers 6
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/marlin-llm/marlin/model/synth"
)

func main() {
	out := flag.String("out", "", "output directory (required)")
	var presets []string
	for _, p := range synth.Presets() {
		presets = append(presets, p.Name+" ("+p.Doc+")")
	}
	arch := flag.String("arch", "glm47", "architecture: "+strings.Join(presets, " or "))
	div := flag.Int("width-div", 4, "divide hidden, FFN, expert and LoRA widths by this (1 = the real shapes)")
	layers := flag.Int("layers", 4, "decoder layers (0 = all: 47 for glm47, 52 for nemotron3-nano)")
	seed := flag.Uint64("seed", 1, "generator seed")
	shard := flag.Int64("shard-mb", 512, "maximum shard size in MiB")
	tok := flag.String("tokenizer", "", "copy tokenizer.json (and tokenizer_config.json) from this directory instead of the bundled byte-level BPE tokenizer (ids < 2048); every id must be below the synthetic vocab_size")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "marlin-synth: -out is required")
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var cfg map[string]any
	var ts []synth.Tensor
	p, err := synth.PresetOf(*arch)
	if err == nil {
		cfg = p.Config(*div, *layers)
		ts, err = p.Tensors(cfg)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "marlin-synth:", err)
		os.Exit(1)
	}
	vocab, _ := cfg["vocab_size"].(int)
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "marlin-synth:", err)
		os.Exit(1)
	}
	// The tokenizer first: a vocabulary too large for the synthetic
	// embedding fails before gigabytes of weights are written.
	maxID, err := synth.WriteTokenizer(*out, *tok, vocab)
	if err != nil {
		fmt.Fprintln(os.Stderr, "marlin-synth:", err)
		os.Exit(1)
	}
	total, err := synth.Write(ctx, *out, cfg, ts, *seed, *shard<<20)
	if err != nil {
		fmt.Fprintln(os.Stderr, "marlin-synth:", err)
		os.Exit(1)
	}
	fmt.Printf("wrote %s: %d tensors, %.1f M parameters, %.1f MiB BF16; tokenizer ids < %d (vocab_size %d)\n", *out, len(ts), float64(synth.ParamCount(ts))/1e6, float64(total)/(1<<20), maxID+1, vocab)
}
