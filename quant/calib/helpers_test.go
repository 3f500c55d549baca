package calib

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/marlin-llm/marlin/internal/assets"
	"github.com/marlin-llm/marlin/kernels"
	"github.com/marlin-llm/marlin/model/arch"
	"github.com/marlin-llm/marlin/model/tensorname"
	"github.com/marlin-llm/marlin/model/tokenizer"
)

// quantizable selects what the tests quantize: every Linear of the decoder
// layers except the MoE routers.
func quantizable(p *arch.Proj) bool {
	return p.Layer() >= 0 && !tensorname.ParseModule(p.Name()).Router()
}

// tokenize encodes a shared corpus file with a nano model's tokenizer.
func tokenize(t testing.TB, model, file string) []int32 {
	t.Helper()
	tok, err := tokenizer.Load(filepath.Join(assets.Model(t, model), "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(assets.Shared(t, "corpus", file))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := tok.Encode(string(b))
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// loadModel loads a shared nano model on the CPU backend.
func loadModel(t testing.TB, name string) *arch.Model {
	t.Helper()
	m, err := arch.Load(assets.Model(t, name), arch.Options{Backend: kernels.NewCPU(kernels.Options{})})
	if err != nil {
		t.Fatal(err)
	}
	return m
}
