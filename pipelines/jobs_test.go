// Package pipelines_test runs the shipped job files: every real-model job
// on the nano checkpoint of its architecture (shared test assets), the
// demo on the bundled model, and (MARLIN_SLOW=1) the scale test on a
// synthetic GLM-4.7-Flash under a memory budget smaller than the model.
package pipelines_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/internal/assets"
	"github.com/marlin-llm/marlin/pipeline"
	"github.com/marlin-llm/marlin/stages"
)

// runJob loads file with env for ${VAR} and overrides, plans and runs it,
// and returns the output directory.
func runJob(t *testing.T, file string, env map[string]string, until []string, set ...string) string {
	t.Helper()
	reg, err := stages.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	opts := pipeline.LoadOptions{
		Set:     set,
		Workdir: filepath.Join(t.TempDir(), "work"),
		Getenv: func(k string) (string, bool) {
			v, ok := env[k]
			return v, ok
		},
	}
	job, err := pipeline.Load(file, reg, opts)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := pipeline.PlanJob(context.Background(), job, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(until) > 0 {
		if plan, err = plan.Until(until...); err != nil {
			t.Fatal(err)
		}
	}
	st, err := pipeline.OpenStore(job.Workdir, pipeline.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := (&pipeline.Runner{Store: st}).Run(context.Background(), plan); err != nil {
		t.Fatal(err)
	}
	return st.OutDir()
}

// quantReport reads the quantize stage's report: tensor name → format.
func quantReport(t *testing.T, out string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(out, "quant-report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Tensors []struct{ Name, Format string }
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, r := range rep.Tensors {
		m[r.Name] = r.Format
	}
	return m
}

// TestRealJobsOnNanoModels runs each real-model job, unchanged but for the
// model path and shorter calibration/validation/benchmark, on the nano model
// of the same architecture, and checks the per-tensor format choices and
// outputs; the job's own validate gate (max_ppl_increase) must pass.
func TestRealJobsOnNanoModels(t *testing.T) {
	short := []string{"stages.calib.with.samples=4", "stages.calib.with.seq_len=128",
		"stages.validate.with.window=64", "stages.validate.with.windows=4",
		"stages.bench.with.repeats=1", "stages.bench.with.prompt_tokens=8", "stages.bench.with.decode_tokens=4"}
	cases := []struct {
		job, model string
		formats    map[string]string // tensor → format in the quantize report
		outputs    []string
		until      []string // stages to run (empty: all)
	}{
		{"glm47-fp4.yaml", "glm47-nano", map[string]string{
			"model.layers.1.mlp.gate.weight":                     "bf16",
			"model.layers.1.self_attn.q_a_proj.weight":           "bf16",
			"model.layers.1.self_attn.kv_a_proj_with_mqa.weight": "bf16",
			"model.embed_tokens.weight":                          "bf16",
			"lm_head.weight":                                     "bf16",
			"model.layers.1.mlp.experts.7.down_proj.weight":      "mxfp4",
			"model.layers.2.mlp.shared_experts.up_proj.weight":   "mxfp4",
			"model.layers.0.mlp.gate_proj.weight":                "mxfp4",
			"model.layers.3.self_attn.kv_b_proj.weight":          "mxfp4",
		}, []string{"GLM-4.7-Flash-MXFP4.gguf", "GLM-4.7-Flash-MXFP4/model.safetensors.index.json"}, nil},
		{"qwen3-4b.yaml", "qwen3-nano", map[string]string{
			"model.layers.0.self_attn.q_proj.weight": "nvfp4",
			"lm_head.weight":                         "bf16",
		}, []string{"Qwen3-4B-NVFP4/config.json", "Qwen3-4B-NVFP4-marlin/config.json"}, nil},
		{"qwen3-32b.yaml", "qwen3-nano", map[string]string{
			"model.layers.0.mlp.down_proj.weight": "int4",
			"model.embed_tokens.weight":           "bf16",
		}, []string{"Qwen3-32B-GPTQ-Int4/config.json", "Qwen3-32B-Int4-marlin/config.json"}, nil},
		{"qwen3-30b-a3b.yaml", "qwen3moe-nano", map[string]string{
			"model.layers.0.mlp.gate.weight":              "bf16",
			"model.layers.0.mlp.experts.3.up_proj.weight": "mxfp4",
		}, []string{"Qwen3-30B-A3B-MXFP4.gguf", "Qwen3-30B-A3B-MXFP4-marlin/config.json"}, nil},
		{"nemotron3-nano-fp4.yaml", "nemotronh-nano", map[string]string{
			"backbone.layers.1.mixer.gate.weight":                   "bf16",
			"backbone.embeddings.weight":                            "bf16",
			"lm_head.weight":                                        "bf16",
			"backbone.layers.0.mixer.in_proj.weight":                "mxfp4",
			"backbone.layers.0.mixer.out_proj.weight":               "mxfp4",
			"backbone.layers.2.mixer.q_proj.weight":                 "mxfp4",
			"backbone.layers.1.mixer.experts.7.down_proj.weight":    "mxfp4",
			"backbone.layers.1.mixer.shared_experts.up_proj.weight": "mxfp4",
		}, []string{"Nemotron-3-Nano-30B-A3B-MXFP4.gguf", "Nemotron-3-Nano-30B-A3B-MXFP4/config.json"}, nil},
	}
	for _, c := range cases {
		t.Run(strings.TrimSuffix(c.job, ".yaml"), func(t *testing.T) {
			model := assets.Model(t, c.model)
			out := runJob(t, c.job, map[string]string{"MODEL": model, "MEM": "1GiB"}, c.until, short...)
			got := quantReport(t, out)
			for name, want := range c.formats {
				if got[name] != want {
					t.Errorf("%s: format %q, want %q", name, got[name], want)
				}
			}
			outputs := append(c.outputs, "validate.json")
			if len(c.until) == 0 {
				outputs = append(outputs, "benchmark.json", "report.html")
			}
			for _, f := range outputs {
				if _, err := os.Stat(filepath.Join(out, f)); err != nil {
					t.Errorf("output: %v", err)
				}
			}
		})
	}
}
