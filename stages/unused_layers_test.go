package stages

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/internal/assets"
	"github.com/marlin-llm/marlin/model/gguf"
	"github.com/marlin-llm/marlin/model/hfconfig"
	"github.com/marlin-llm/marlin/pipeline"
)

// TestUndeclaredLayersRefusedAtPlanTime: a config.json declaring fewer
// layers than the checkpoint holds made the RTN → GGUF job exit 0 with a
// 2-layer GGUF of a 4-layer model (issue 18). Every stage that reads the
// config (load, calibrate, pack) now refuses the job while planning, with
// the config file and the unused tensors in the message; leaving the
// layers out explicitly (load's exclude globs) is allowed and logged.
func TestUndeclaredLayersRefusedAtPlanTime(t *testing.T) {
	full := assets.Model(t, "qwen3-nano")
	short := assets.ModelWithConfig(t, "qwen3-nano", assets.FewerLayers(2))
	calib := assets.Shared(t, "corpus", "calib.txt")
	quant := "  - {id: quant, kind: quantize, needs: [load], with: {default: {format: int4, method: rtn}, rules: [{match: \"*norm*\", format: skip}, {match: model.embed_tokens.weight, format: bf16}]}}\n"
	cases := []struct {
		name   string
		stages string
		want   []string // substrings of the plan error; nil: the job runs
		blocks int      // GGUF block_count when it runs
	}{
		{"load reads a short config", "  - {id: load, kind: load, with: {path: " + short + "}}\n" + quant +
			"  - {id: pack, kind: pack, needs: [quant], with: {format: gguf, out: m.gguf, model: " + short + "}}\n",
			[]string{`stage "load"`, short + "/config.json: 22 checkpoint tensors are not used", "all in layers 2-3, but num_hidden_layers is 2", "model.layers.2.input_layernorm.weight", "exclude"}, 0},
		{"gguf pack with a short config", "  - {id: load, kind: load, with: {path: " + full + "}}\n" + quant +
			"  - {id: pack, kind: pack, needs: [quant], with: {format: gguf, out: m.gguf, model: " + short + "}}\n",
			[]string{`stage "pack"`, short + "/config.json: 22 checkpoint tensors", "and 14 more"}, 0},
		{"native pack with a short config", "  - {id: load, kind: load, with: {path: " + full + "}}\n" + quant +
			"  - {id: pack, kind: pack, needs: [quant], with: {format: native, out: m, model: " + short + "}}\n",
			[]string{`stage "pack"`, "all in layers 2-3"}, 0},
		{"calibrate with a short config", "  - {id: load, kind: load, with: {path: " + full + "}}\n" +
			"  - {id: calib, kind: calibrate, needs: [load], with: {model: " + short + ", text: " + calib + ", samples: 1, seq_len: 16}}\n",
			[]string{`stage "calib"`, "all in layers 2-3"}, 0},
		{"layers left out explicitly", "  - {id: load, kind: load, with: {path: " + short + ", exclude: [\"model.layers.2.*\", \"model.layers.3.*\"]}}\n" + quant +
			"  - {id: pack, kind: pack, needs: [quant], with: {format: gguf, out: m.gguf, model: " + short + "}}\n",
			nil, 2},
		{"as declared", "  - {id: load, kind: load, with: {path: " + full + "}}\n" + quant +
			"  - {id: pack, kind: pack, needs: [quant], with: {format: gguf, out: m.gguf, model: " + full + "}}\n",
			nil, 4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			reg, err := NewRegistry()
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			job, err := pipeline.LoadBytes(filepath.Join(dir, "job.yaml"), []byte("version: 1\nworkdir: work\nstages:\n"+c.stages), reg, pipeline.LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			plan, err := pipeline.PlanJob(context.Background(), job, slog.New(slog.NewTextHandler(&logs, nil)))
			if c.want != nil {
				var ue *hfconfig.UnusedTensorsError
				if !errors.As(err, &ue) {
					t.Fatalf("plan: got %v, want an UnusedTensorsError", err)
				}
				for _, w := range c.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("%q lacks %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if excluded := strings.Contains(c.stages, "exclude"); excluded != strings.Contains(logs.String(), "load: tensors left out by include/exclude") ||
				excluded && !strings.Contains(logs.String(), "count=22") {
				t.Errorf("exclude %v; log:\n%s", excluded, logs.String())
			}
			st := mustRunPlan(t, plan, job.Workdir, 2)
			f, err := gguf.Open(filepath.Join(st.OutDir(), "m.gguf"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			kv, ok := f.KV("qwen3.block_count")
			if !ok {
				t.Fatal("no qwen3.block_count")
			}
			if n, _ := kv.Int(); int(n) != c.blocks {
				t.Errorf("block_count %d, want %d", n, c.blocks)
			}
		})
	}
}
