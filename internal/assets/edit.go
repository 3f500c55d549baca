package assets

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// ModelWithConfig returns a temporary copy of a shared nano model whose
// config.json edit has changed (the other files are symbolic links to the
// shared ones, which stay untouched).
func ModelWithConfig(tb testing.TB, name string, edit func(cfg map[string]any)) string {
	tb.Helper()
	src := Model(tb, name)
	dst := filepath.Join(tb.TempDir(), name)
	if err := os.Mkdir(dst, 0o755); err != nil {
		tb.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		tb.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == "config.json" {
			continue
		}
		if err := os.Symlink(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			tb.Fatal(err)
		}
	}
	var cfg map[string]any
	ReadJSON(tb, filepath.Join(src, "config.json"), &cfg)
	edit(cfg)
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dst, "config.json"), data, 0o644); err != nil {
		tb.Fatal(err)
	}
	return dst
}

// FewerLayers returns a config edit declaring n decoder layers (and
// trimming the per-layer lists to match) without touching the weights:
// the mistake of issue 18.
func FewerLayers(n int) func(cfg map[string]any) {
	return func(cfg map[string]any) {
		cfg["num_hidden_layers"] = n
		for _, k := range []string{"layer_types", "mlp_layer_types"} {
			if l, ok := cfg[k].([]any); ok && len(l) > n {
				cfg[k] = l[:n]
			}
		}
	}
}
