// Package assets locates the shared test assets (../shared/testdata beside
// the repository root) for tests.
package assets

import (
	"os"
	"path/filepath"
	"testing"
)

// Root returns the repository root (the directory holding go.mod).
func Root(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Shared returns ../shared/testdata joined with elem. It skips the test with
// a clear message when the shared assets are not beside the checkout; set
// MARLIN_TESTDATA to point elsewhere.
func Shared(tb testing.TB, elem ...string) string {
	tb.Helper()
	base := os.Getenv("MARLIN_TESTDATA")
	if base == "" {
		base = filepath.Join(Root(tb), "..", "shared", "testdata")
	}
	if _, err := os.Stat(base); err != nil {
		tb.Skipf("shared test assets not found at %s (set MARLIN_TESTDATA): %v", base, err)
	}
	return filepath.Join(append([]string{base}, elem...)...)
}

// Model returns the directory of a nano model: a shared one ("qwen3-nano",
// "qwen3moe-nano", "glm47-nano") or one the repository holds under
// model/testdata ("nemotronh-nano").
func Model(tb testing.TB, name string) string {
	tb.Helper()
	if repoModels[name] {
		dir := filepath.Join(Root(tb), "model", "testdata", name)
		if _, err := os.Stat(filepath.Join(dir, "model.safetensors")); err != nil {
			tb.Skipf("%s is not generated yet: run %s/generate.py on a GPU machine with transformers 5.17 (see its doc comment): %v", name, dir, err)
		}
		return dir
	}
	return Shared(tb, "models", name)
}

// repoModels are the nano models the repository holds (under
// model/testdata) rather than the shared assets.
var repoModels = map[string]bool{"nemotronh-nano": true}
