package llamacpp

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/internal/assets"
	"github.com/marlin-llm/marlin/kernels"
	"github.com/marlin-llm/marlin/model/arch"
	"github.com/marlin-llm/marlin/model/eval"
	"github.com/marlin-llm/marlin/model/synth"
	"github.com/marlin-llm/marlin/model/tokenizer"
)

// TestNemotronHSyntheticMatchesLlamaCpp checks the nemotron_h_moe export
// and marlin's NemotronH forward pass against llama.cpp's independent
// implementation, on a synthetic Nemotron-3-Nano (real Mamba-2 / attention
// geometry, narrow widths, layers M E M E M *) exported as F32:
// llama-perplexity (-c 128, 8 chunks) equals model/eval's second-half
// perplexity of the same weights within 1e-5, and llama-completion's greedy
// text equals marlin's greedy decode through the Mamba state cache.
func TestNemotronHSyntheticMatchesLlamaCpp(t *testing.T) {
	bin := llamaTools(t)
	dir := filepath.Join(t.TempDir(), "nemotron-synth")
	cfgMap := synth.Nemotron3Nano(32, 6)
	ts, err := synth.NemotronHTensors(cfgMap)
	if err != nil {
		t.Fatal(err)
	}
	vocab, _ := cfgMap["vocab_size"].(int)
	if _, err := synth.WriteTokenizer(dir, "", vocab); err != nil {
		t.Fatal(err)
	}
	if _, err := synth.Write(context.Background(), dir, cfgMap, ts, 1, 0); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "nemo-f32.gguf")
	plan, err := ExportDir(context.Background(), dir, out, Options{Recipe: "f32"})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Arch != "nemotron_h_moe" {
		t.Errorf("arch %q, want nemotron_h_moe", plan.Arch)
	}
	valid := assets.Shared(t, "corpus", "valid.txt")
	lp, err := Perplexity(context.Background(), bin, out, valid, 128, 8, 2)
	if err != nil {
		t.Fatal(err)
	}
	m, err := arch.Load(dir, arch.Options{Backend: kernels.NewCPU(kernels.Options{})})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(valid)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := tok.Encode(string(text[:200000]))
	if err != nil {
		t.Fatal(err)
	}
	r, err := eval.Perplexity(context.Background(), m, ids, eval.Options{Window: 128, Windows: 8, LlamaCpp: true})
	if err != nil {
		t.Fatal(err)
	}
	rel := math.Abs(r.PPL/lp - 1)
	t.Logf("llama-perplexity %.6f, marlin %.6f, rel %.2e", lp, r.PPL, rel)
	if rel > 1e-5 {
		t.Errorf("llama-perplexity %.6f differs from marlin's %.6f by %.2e", lp, r.PPL, rel)
	}

	// Greedy decode: llama.cpp's text (its vocabulary holds the padding
	// rows as empty tokens) against marlin's Decode through the cache.
	got := strings.TrimPrefix(complete(t, out), "The city of")
	prompt, err := tok.Encode("The city of")
	if err != nil {
		t.Fatal(err)
	}
	c, err := m.NewCache(len(prompt) + 16)
	if err != nil {
		t.Fatal(err)
	}
	lg, err := m.Decode(context.Background(), c, prompt)
	if err != nil {
		t.Fatal(err)
	}
	V := m.Vocab()
	last := lg[len(lg)-V:]
	var gen []int32
	for range 16 {
		b := 0
		for j, v := range last {
			if v > last[b] {
				b = j
			}
		}
		if _, err := tok.Decode([]int32{int32(b)}); err == nil { // padding rows are empty tokens to llama.cpp
			gen = append(gen, int32(b))
		}
		if last, err = m.Decode(context.Background(), c, []int32{int32(b)}); err != nil {
			t.Fatal(err)
		}
	}
	want, err := tok.Decode(gen)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("llama-completion %q, marlin %q", got, want)
	// A token ending inside a UTF-8 sequence prints as raw bytes there and
	// as U+FFFD here: compare the valid text.
	got = strings.TrimRight(strings.ToValidUTF8(got, ""), "\n")
	want = strings.TrimRight(want, "\uFFFD")
	if got == "" || !strings.HasPrefix(want, got) {
		t.Errorf("llama-completion generated %q, marlin's greedy decode %q", got, want)
	}
}
