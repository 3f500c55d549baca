package qmodel

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/marlin-llm/marlin/internal/assets"
	"github.com/marlin-llm/marlin/kernels"
	"github.com/marlin-llm/marlin/model/arch"
	"github.com/marlin-llm/marlin/model/eval"
	"github.com/marlin-llm/marlin/model/tokenizer"
)

func evalIDs(t *testing.T, model string) []int32 {
	t.Helper()
	tok, err := tokenizer.Load(filepath.Join(model, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile("../../demo/eval.txt")
	if err != nil {
		t.Fatal(err)
	}
	ids, err := tok.Encode(string(text))
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// TestPackedPerplexityMatchesDequantized is issue 11's acceptance check:
// qwen3-nano with MXFP4 projections, run from the packed weights through
// the backend's fused dequant kernels, has the perplexity of the F32 model
// of the dequantized weights within 0.1%, and the two paths agree on the
// next token almost everywhere (KL ≈ 0). It also checks the quantized
// model is really quantized: its perplexity differs from the BF16 model's.
func TestPackedPerplexityMatchesDequantized(t *testing.T) {
	src := assets.Model(t, "qwen3-nano")
	dir := filepath.Join(t.TempDir(), "packed")
	ctx := context.Background()
	if err := WriteRTN(ctx, src, dir, "mxfp4"); err != nil {
		t.Fatal(err)
	}
	b, err := kernels.Open("cpu", kernels.Options{})
	if err != nil {
		t.Fatal(err)
	}
	q, err := Load(dir, Options{Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if q.Packed != 4*7 {
		t.Fatalf("%d packed projections, want 28 (formats %v)", q.Packed, q.Formats)
	}
	d, err := Load(dir, Options{Backend: b, Dequantize: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ref, err := arch.Load(src, arch.Options{Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	ids := evalIDs(t, src)
	opts := eval.Options{Window: 128, Windows: 8}
	kl, err := eval.KL(ctx, d.Model, q.Model, ids, opts)
	if err != nil {
		t.Fatal(err)
	}
	base, err := eval.Perplexity(ctx, ref, ids, opts)
	if err != nil {
		t.Fatal(err)
	}
	rel := math.Abs(kl.Q.PPL-kl.P.PPL) / kl.P.PPL
	t.Logf("ppl: bf16 %.4f, dequantized F32 %.4f, packed mxfp4 via DequantGEMM %.4f (rel diff %.2e, KL %.2e, top-1 %.4f)",
		base.PPL, kl.P.PPL, kl.Q.PPL, rel, kl.KL, kl.Top1)
	if !(rel <= 1e-3) {
		t.Errorf("packed perplexity %.5f differs from the dequantized model's %.5f by %.3f%% (limit 0.1%%)", kl.Q.PPL, kl.P.PPL, 100*rel)
	}
	if kl.Top1 < 0.99 {
		t.Errorf("top-1 agreement %.4f between packed and dequantized", kl.Top1)
	}
	if math.Abs(base.PPL-kl.Q.PPL)/base.PPL < 1e-4 {
		t.Errorf("quantized perplexity %.5f equals the BF16 model's %.5f: weights were not quantized", kl.Q.PPL, base.PPL)
	}
}

func TestLoadErrors(t *testing.T) {
	if _, err := Load(t.TempDir(), Options{}); err == nil {
		t.Error("empty directory loaded")
	}
	// A plain Hugging Face model is not a packed checkpoint.
	if _, err := Load(assets.Model(t, "qwen3-nano"), Options{}); err == nil {
		t.Error("unpacked model loaded as packed")
	}
	if err := WriteRTN(context.Background(), assets.Model(t, "qwen3-nano"), t.TempDir(), "fp5"); err == nil {
		t.Error("unknown format accepted")
	}
}
