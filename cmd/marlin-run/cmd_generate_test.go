package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/internal/assets"
	"github.com/marlin-llm/marlin/kernels"
	"github.com/marlin-llm/marlin/model/arch"
	"github.com/marlin-llm/marlin/model/qmodel"
	"github.com/marlin-llm/marlin/model/tokenizer"
)

// TestGenerate runs `marlin-run generate` greedily on packed MXFP4
// qwen3-nano and compares its continuation with greedy decoding by full
// forward passes (no KV cache) over the same packed model.
func TestGenerate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "packed")
	ctx := context.Background()
	if err := qmodel.WriteRTN(ctx, assets.Model(t, "qwen3-nano"), dir, "mxfp4"); err != nil {
		t.Fatal(err)
	}
	const prompt, n = "The history of the city", 12
	code, out, errs := cli(t, "generate", "--backend", "cpu", "-n", "12", "--prompt", prompt, dir)
	if code != 0 {
		t.Fatalf("generate: exit %d: %s", code, errs)
	}
	if !strings.Contains(errs, "decode") || !strings.Contains(errs, "tok/s") || !strings.Contains(errs, "packed (28 projections") {
		t.Errorf("stderr lacks the throughput line: %q", errs)
	}
	b, _ := kernels.Open("cpu", kernels.Options{})
	m, err := qmodel.Load(dir, qmodel.Options{Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	tok, err := tokenizer.Load(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	ids, _ := tok.Encode(prompt)
	var gen []int32
	for len(gen) < n {
		lg, err := m.Forward(ctx, ids, arch.Batch{Seqs: 1, Len: len(ids)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		row := lg[(len(ids)-1)*m.Vocab():]
		best := 0
		for i, v := range row {
			if v > row[best] {
				best = i
			}
		}
		gen = append(gen, int32(best))
		ids = append(ids, int32(best))
		if eosIDs(m.Model)[int32(best)] {
			break
		}
	}
	want, _ := tok.Decode(gen)
	if got := strings.TrimSuffix(out, "\n"); got != prompt+want {
		t.Errorf("generate printed %q\nfull forward passes give %q", got, prompt+want)
	}
	t.Logf("%s", out)
	for _, args := range [][]string{{"generate", dir}, {"generate", "--prompt", "x"}, {"generate", "--prompt", "x", "--top-p", "0", dir}, {"generate", "--prompt", "x", t.TempDir()}} {
		if code, _, _ := cli(t, args...); code == 0 {
			t.Errorf("%v succeeded", args)
		}
	}
	// Sampling is seeded: the same seed gives the same text.
	_, a, _ := cli(t, "generate", "--backend", "cpu", "-n", "8", "--temperature", "0.8", "--seed", "7", "--prompt", prompt, dir)
	_, b2, _ := cli(t, "generate", "--backend", "cpu", "-n", "8", "--temperature", "0.8", "--seed", "7", "--prompt", prompt, dir)
	if a != b2 || a == "" {
		t.Errorf("seeded sampling differs: %q vs %q", a, b2)
	}
}
