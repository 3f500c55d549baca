package llamacpp

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/internal/assets"
	"github.com/marlin-llm/marlin/model/arch"
	"github.com/marlin-llm/marlin/model/eval"
	"github.com/marlin-llm/marlin/model/gguf"
	"github.com/marlin-llm/marlin/model/hfconfig"
	"github.com/marlin-llm/marlin/model/tokenizer"
)

// TestGoForwardMatchesLlamaCpp runs marlin's forward pass on exactly the
// weights of each exported file (dequantized back from the GGUF) and
// compares its perplexity under the llama-perplexity protocol (64 windows
// of 256, second half scored) with llama-perplexity's on the file: they
// must agree within 0.5% for every type. MARLIN_SLOW=1 only (a few
// minutes on 2 cores).
func TestGoForwardMatchesLlamaCpp(t *testing.T) {
	if os.Getenv("MARLIN_SLOW") != "1" {
		t.Skip("set MARLIN_SLOW=1 to compare llama.cpp's and marlin's perplexity on every exported type (minutes)")
	}
	text, err := os.ReadFile(assets.Shared(t, "corpus", "valid.txt"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var table []string
	for _, model := range []string{"qwen3-nano", "qwen3moe-nano", "glm47-nano", "nemotronh-nano"} {
		t.Run(model, func(t *testing.T) { table = append(table, goForwardRow(t, dir, model, text)) })
	}
	t.Logf("perplexity, 64 windows of 256 (llama-perplexity protocol):\n%s", strings.Join(table, "\n"))
}

// goForwardRow is TestGoForwardMatchesLlamaCpp for one model: F16 within
// 0.1%, the quantized types within 0.5%.
func goForwardRow(t *testing.T, dir, model string, text []byte) string {
	t.Helper()
	mdir := assets.Model(t, model)
	tok, err := tokenizer.Load(filepath.Join(mdir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := tok.Encode(string(text))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := hfconfig.Load(mdir)
	if err != nil {
		t.Fatal(err)
	}
	row := []string{model}
	for _, recipe := range []string{"f16", "q8_0", "q4_0", "mxfp4"} {
		out := filepath.Join(dir, model+"-"+recipe+".gguf")
		plan, err := ExportDir(context.Background(), mdir, out, Options{Recipe: recipe})
		if err != nil {
			t.Fatal(err)
		}
		pLlama := perplexity(t, out, 64)
		f, err := gguf.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		m, err := arch.Build(cfg, NewReadBack(f, plan), arch.Options{})
		if err != nil {
			t.Fatal(err)
		}
		res, err := eval.Perplexity(context.Background(), m, ids, eval.Options{Window: 256, Windows: 64, LlamaCpp: true})
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		rel := pLlama/res.PPL - 1
		row = append(row, fmt.Sprintf("%s llama.cpp %.4f / marlin %.4f (%+.2f%%)", recipe, pLlama, res.PPL, 100*rel))
		if tol := map[bool]float64{true: 0.001, false: 0.005}[recipe == "f16"]; math.Abs(rel) > tol {
			t.Errorf("%s %s: llama.cpp %.4f vs marlin forward on the same weights %.4f: %.2f%% apart", model, recipe, pLlama, res.PPL, 100*rel)
		}
		os.Remove(out)
	}
	return strings.Join(row, " | ")
}
