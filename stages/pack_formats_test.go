package stages

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/export"
)

// TestPackFormats is the export-format registry's conformance suite: every
// row has a unique name and a doc, is exactly one of a file and a shard
// exporter, and packs qwen3-nano (plain weights and int4 ones with groups
// of 128, which every format stores) into a file or a directory with
// config.json, in one job.
func TestPackFormats(t *testing.T) {
	model, err := filepath.Abs(filepath.Join("..", "demo", "qwen3-nano"))
	if err != nil {
		t.Fatal(err)
	}
	job := `  - {id: load, kind: load, with: {path: ` + model + `}}
  - id: quant
    kind: quantize
    needs: [load]
    with:
      default: {format: int4, method: rtn}
      rules: [{match: "*embed_tokens*", format: skip}]
`
	seen := map[string]bool{}
	outs := map[string]string{}
	for _, f := range packFormats() {
		if f.Name == "" || seen[f.Name] || f.Doc() == "" {
			t.Fatalf("format %q: empty, listed twice or without a doc", f.Name)
		}
		seen[f.Name] = true
		_, file := f.Exporter.(export.FileExporter)
		_, shard := f.Exporter.(export.ShardExporter)
		if file == shard {
			t.Fatalf("format %s: file exporter %v, shard exporter %v; want exactly one", f.Name, file, shard)
		}
		out := "out-" + strings.ReplaceAll(f.Name, "-", "_")
		if file {
			out += ".bin"
		}
		outs[f.Name] = out
		job += "  - {id: p_" + strings.ReplaceAll(f.Name, "-", "_") + ", kind: pack, needs: [quant], with: {format: " + f.Name + ", out: " + out + ", model: " + model + "}}\n"
	}
	dir, _ := runPackJob(t, t.TempDir(), job)
	for _, f := range packFormats() {
		p := filepath.Join(dir, outs[f.Name])
		if _, ok := f.Exporter.(export.ShardExporter); ok {
			p = filepath.Join(p, "config.json")
		}
		if st, err := os.Stat(p); err != nil || st.Size() == 0 {
			t.Errorf("format %s: %s missing or empty (%v)", f.Name, p, err)
		}
	}
}
