package stages

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/internal/assets"
	"github.com/marlin-llm/marlin/model/gguf"
	"github.com/marlin-llm/marlin/model/native"
	"github.com/marlin-llm/marlin/model/safetensors"
	"github.com/marlin-llm/marlin/pipeline"
	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/quant/hadamard"
)

// runPackJob runs a job (the YAML stage list) with its workdir in dir and
// returns the output directory and run statistics.
func runPackJob(t *testing.T, dir, stagesYAML string) (string, pipeline.RunStats) {
	t.Helper()
	out, stats, err := runJobIn(t, dir, "job.yaml", "work", stagesYAML)
	if err != nil {
		t.Fatal(err)
	}
	return out, stats
}

// runJobIn runs the job of stagesYAML (file name in dir, workdir work) and
// returns its output directory, statistics and the runner's error.
func runJobIn(t *testing.T, dir, name, work, stagesYAML string) (string, pipeline.RunStats, error) {
	t.Helper()
	reg, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	doc := "version: 1\nworkdir: " + work + "\nstages:\n" + stagesYAML
	job, err := pipeline.LoadBytes(filepath.Join(dir, name), []byte(doc), reg, pipeline.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	plan, err := pipeline.PlanJob(context.Background(), job, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := pipeline.OpenStore(job.Workdir, pipeline.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	stats, err := (&pipeline.Runner{Store: st}).Run(context.Background(), plan)
	return st.OutDir(), stats, err
}

// TestPackGGUFMatchesConverter: load → pack (gguf, f16) reproduces
// llama.cpp's own conversion of qwen3-nano byte for byte, and a second run
// skips the finished export.
func TestPackGGUFMatchesConverter(t *testing.T) {
	model := assets.Model(t, "qwen3-nano")
	ref := assets.Shared(t, "gguf", "qwen3-nano-f16.gguf")
	dir := t.TempDir()
	job := `  - {id: load, kind: load, with: {path: ` + model + `}}
  - {id: pack, kind: pack, needs: [load], with: {format: gguf, out: qwen3-nano-f16.gguf, model: ` + model + `, gguf_type: f16}}
`
	out, _ := runPackJob(t, dir, job)
	got, err := os.ReadFile(filepath.Join(out, "qwen3-nano-f16.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(ref)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("pack gguf f16 differs from llama.cpp's converter output (%d vs %d bytes)", len(got), len(want))
	}
	_, stats := runPackJob(t, dir, job)
	if stats.Executed != 0 {
		t.Errorf("resumed run executed %d tasks, want 0", stats.Executed)
	}
}

// TestPackQuantizedGGUF: load → quantize (mxfp4 experts, int4 g32 attention,
// bf16 router) → pack gguf. Packed MXFP4 and INT4 weights are copied into
// MXFP4 / Q4_0 blocks whose dequantization equals quant's bit for bit.
func TestPackQuantizedGGUF(t *testing.T) {
	model := assets.Model(t, "qwen3moe-nano")
	dir := t.TempDir()
	job := `  - {id: load, kind: load, with: {path: ` + model + `}}
  - id: quant
    kind: quantize
    needs: [load]
    with:
      default: {format: mxfp4, method: rtn}
      rules:
        - {match: "*.self_attn.*", format: int4, group_size: 32}
        - {match: "*.mlp.gate.weight", format: skip}
        - {match: "*embed_tokens*", format: skip}
        - {match: "lm_head.weight", format: skip}
  - {id: pack, kind: pack, needs: [quant], with: {format: gguf, out: m.gguf, model: ` + model + `, gguf_type: q8_0}}
`
	out, _ := runPackJob(t, dir, job)
	f, err := gguf.Open(filepath.Join(out, "m.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	types := map[string]gguf.GGMLType{}
	for _, ti := range f.Tensors {
		types[ti.Name] = ti.Type
	}
	for name, want := range map[string]gguf.GGMLType{
		"blk.0.ffn_down_exps.weight": gguf.TypeMXFP4,
		"blk.2.ffn_up_exps.weight":   gguf.TypeMXFP4,
		"blk.1.attn_q.weight":        gguf.TypeQ4_0,
		"blk.1.ffn_gate_inp.weight":  gguf.TypeF32,
		"token_embd.weight":          gguf.TypeQ8_0,
		"output.weight":              gguf.TypeQ8_0,
	} {
		if types[name] != want {
			t.Errorf("%s: %v, want %v", name, types[name], want)
		}
	}
	// blk.1.attn_q equals quant's own RTN int4 g32 of the weight.
	ck, err := safetensors.Open(model)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	for _, c := range []struct{ hf, gg, format string }{
		{"model.layers.1.self_attn.q_proj.weight", "blk.1.attn_q.weight", "int4"},
		{"model.layers.3.mlp.experts.5.down_proj.weight", "blk.3.ffn_down_exps.weight", "mxfp4"},
	} {
		src, _ := ck.Tensor(c.hf)
		fm, _ := quant.Lookup(c.format)
		if c.format == "int4" {
			fm, _ = fm.WithGroupSize(32)
		}
		p, err := quant.QuantizeTensor(context.Background(), src, fm, &quant.Options{Name: c.hf})
		if err != nil {
			t.Fatal(err)
		}
		want := make([]float32, p.Rows*p.Cols)
		p.Dequantize(want)
		all, err := f.Float32(c.gg)
		if err != nil {
			t.Fatal(err)
		}
		off := 0
		if strings.Contains(c.gg, "_exps") {
			off = 5 * p.Rows * p.Cols
		}
		got := all[off : off+len(want)]
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) && !(got[i] == 0 && want[i] == 0) {
				t.Fatalf("%s: value %d = %v, quant has %v", c.gg, i, got[i], want[i])
			}
		}
	}
}

// TestPackNativeAndCompressedTensors: the safetensors formats write one
// shard per task and an index; native loads back bit-exactly and a resumed
// run rewrites nothing.
func TestPackNativeAndCompressedTensors(t *testing.T) {
	model := assets.Model(t, "glm47-nano")
	dir := t.TempDir()
	job := `  - {id: load, kind: load, with: {path: ` + model + `}}
  - id: quant
    kind: quantize
    needs: [load]
    with:
      default: {format: nvfp4, method: rtn}
      rules:
        - {match: "*.mlp.gate.weight", format: skip}
        - {match: "*embed_tokens*", format: skip}
        - {match: "*.self_attn.*", format: int4_asym, group_size: 64}
  - {id: nat, kind: pack, needs: [quant], with: {format: native, out: native, model: ` + model + `, shard_size: 4MiB}}
  - {id: ct, kind: pack, needs: [quant], with: {format: compressed-tensors, out: ct, model: ` + model + `, shard_size: 4MiB}}
`
	out, stats := runPackJob(t, dir, job)
	if stats.Executed == 0 {
		t.Fatal("nothing ran")
	}
	m, err := native.Open(filepath.Join(out, "native"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if len(m.Manifest().Shards) < 2 {
		t.Errorf("native: %d shards, want several", len(m.Manifest().Shards))
	}
	ck, err := safetensors.Open(model)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	name := "model.layers.2.mlp.experts.3.up_proj.weight"
	src, _ := ck.Tensor(name)
	fm, _ := quant.Lookup("nvfp4")
	p, err := quant.QuantizeTensor(context.Background(), src, fm, &quant.Options{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	want := make([]float32, p.Rows*p.Cols)
	p.Dequantize(want)
	got, err := m.Float32(name)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("native %s: value %d = %v, want %v", name, i, got[i], want[i])
		}
	}
	var cfg map[string]any
	b, err := os.ReadFile(filepath.Join(out, "ct", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	qc, _ := cfg["quantization_config"].(map[string]any)
	if qc["quant_method"] != "compressed-tensors" || qc["format"] != "mixed-precision" {
		t.Errorf("quantization_config = %v", qc)
	}
	cck, err := safetensors.Open(filepath.Join(out, "ct"))
	if err != nil {
		t.Fatal(err)
	}
	defer cck.Close()
	for _, n := range []string{"model.layers.2.mlp.experts.3.up_proj.weight_packed", "model.layers.2.mlp.experts.3.up_proj.weight_global_scale", "model.layers.0.self_attn.q_a_proj.weight_zero_point", "model.embed_tokens.weight"} {
		if _, ok := cck.Info(n); !ok {
			t.Errorf("compressed-tensors checkpoint lacks %s", n)
		}
	}
	// Resume: everything is found; delete one shard and only it (and the
	// index) is redone.
	_, stats = runPackJob(t, dir, job)
	if stats.Executed != 0 {
		t.Errorf("resumed run executed %d tasks, want 0", stats.Executed)
	}
	shard := filepath.Join(out, "native", m.Manifest().Shards[1])
	before, _ := os.Stat(filepath.Join(out, "native", m.Manifest().Shards[0]))
	if err := os.Remove(shard); err != nil {
		t.Fatal(err)
	}
	_, stats = runPackJob(t, dir, job)
	if stats.Executed != 1 {
		t.Errorf("after deleting one shard, %d tasks ran, want 1 (the shard)", stats.Executed)
	}
	after, _ := os.Stat(filepath.Join(out, "native", m.Manifest().Shards[0]))
	if !after.ModTime().Equal(before.ModTime()) {
		t.Error("a finished shard was rewritten")
	}
}

func TestPackConfigErrors(t *testing.T) {
	reg, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ with, want string }{
		{"{format: onnx, out: x}", `unknown format "onnx"`},
		{"{format: gguf, out: x.gguf}", "model: required"},
		{"{format: gguf, out: ../x.gguf, model: m}", "out: must be a relative path"},
		{"{format: gguf, out: x.gguf, model: m, gguf_type: q3_x}", `unknown recipe "q3_x"`},
		{"{format: gguf, out: x.gguf, model: m, rules: [{match: '[', type: q8_0}]}", "bad glob"},
		{"{format: native, out: d, gguf_type: q8_0}", "gguf_type and rules apply to format gguf only"},
	} {
		doc := "version: 1\nstages:\n  - {id: g, kind: synthetic, with: {tensors: [{name: w, shape: [2]}]}}\n  - {id: p, kind: pack, needs: [g], with: " + c.with + "}\n"
		_, err := pipeline.LoadBytes("j.yaml", []byte(doc), reg, pipeline.LoadOptions{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.with, err, c.want)
		}
	}
}

// TestPackSkipsQuantizeReport: a quantize stage with a report adds an
// internal task (no tensors); pack after it must ignore that task instead
// of failing on a missing tensor.
func TestPackSkipsQuantizeReport(t *testing.T) {
	model, err := filepath.Abs(filepath.Join("..", "demo", "qwen3-nano"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	job := `  - {id: load, kind: load, with: {path: ` + model + `}}
  - {id: quant, kind: quantize, needs: [load], with: {default: {format: mxfp4, method: rtn}, report: q.json}}
  - {id: pack, kind: pack, needs: [quant], with: {format: gguf, out: m.gguf, model: ` + model + `}}
`
	out, _ := runPackJob(t, dir, job)
	f, err := gguf.Open(filepath.Join(out, "m.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if len(f.Tensors) == 0 {
		t.Fatal("no tensors in the GGUF")
	}
	for _, ti := range f.Tensors {
		if strings.Contains(ti.Name, "report") {
			t.Errorf("report task exported as tensor %q", ti.Name)
		}
	}
}

// TestPackMRGPTQOnlineRotation: MR-GPTQ codes of o_proj/down_proj live in a
// rotated input basis that needs an online activation rotation. GGUF has
// none, so pack must write them un-rotated (close to the native weight
// times R, far from the raw codes); compressed-tensors must refuse them;
// the lm_head that the rotate stage unties must be exported and
// config.json must no longer say tied.
func TestPackMRGPTQOnlineRotation(t *testing.T) {
	model, err := filepath.Abs(filepath.Join("..", "demo", "qwen3-nano"))
	if err != nil {
		t.Fatal(err)
	}
	text, _ := filepath.Abs(filepath.Join("..", "demo", "calib.txt"))
	dir := t.TempDir()
	head := `  - {id: load, kind: load, with: {path: ` + model + `}}
  - {id: rotate, kind: rotate, needs: [load], with: {method: hadamard, block: 32}}
  - {id: calib, kind: calibrate, needs: [rotate], with: {model: ` + model + `, text: ` + text + `, samples: 2, seq_len: 64}}
  - id: quant
    kind: quantize
    needs: [calib]
    with: {default: {format: mxfp4, method: mr-gptq}, rules: [{match: "*embed_tokens*", format: bf16}, {match: lm_head.weight, format: bf16}]}
`
	out, _ := runPackJob(t, dir, head+`  - {id: gguf, kind: pack, needs: [quant], with: {format: gguf, out: m.gguf, model: `+model+`}}
  - {id: native, kind: pack, needs: [quant], with: {format: native, out: nat, model: `+model+`}}
`)
	f, err := gguf.Open(filepath.Join(out, "m.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, ok := f.Info("output.weight"); !ok {
		t.Error("untied lm_head missing from the GGUF (output.weight)")
	}
	nat, err := native.Open(filepath.Join(out, "nat"))
	if err != nil {
		t.Fatal(err)
	}
	defer nat.Close()
	cfg, err := os.ReadFile(filepath.Join(out, "nat", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg), `"tie_word_embeddings": false`) {
		t.Error("native config.json still says tie_word_embeddings true")
	}
	const name = "model.layers.1.self_attn.o_proj.weight"
	nt, err := nat.Tensor(name)
	if err != nil {
		t.Fatal(err)
	}
	if nt.Meta[hadamard.MetaInputPlacement] != hadamard.PlacementOnline {
		t.Fatalf("%s: no online rotation in Meta %v (test premise)", name, nt.Meta)
	}
	raw, err := nat.Float32(name)
	if err != nil {
		t.Fatal(err)
	}
	p, err := nat.Packed(name)
	if err != nil {
		t.Fatal(err)
	}
	r, err := hadamard.Parse(nt.Meta[hadamard.MetaInput], p.Cols)
	if err != nil {
		t.Fatal(err)
	}
	eff := append([]float32(nil), raw...)
	if err := r.ApplyT(eff, p.Rows); err != nil {
		t.Fatal(err)
	}
	g, err := f.Float32("blk.1.attn_output.weight")
	if err != nil {
		t.Fatal(err)
	}
	cos := func(a, b []float32) float64 {
		var ab, aa, bb float64
		for i := range a {
			ab += float64(a[i]) * float64(b[i])
			aa += float64(a[i]) * float64(a[i])
			bb += float64(b[i]) * float64(b[i])
		}
		return ab / math.Sqrt(aa*bb)
	}
	if c := cos(g, eff); c < 0.97 {
		t.Errorf("GGUF %s vs un-rotated native weight: cosine %.4f, want ≥ 0.97", name, c)
	}
	if c := cos(g, raw); c > 0.5 {
		t.Errorf("GGUF %s matches the rotated-basis codes (cosine %.4f): not un-rotated", name, c)
	}

	_, _, err = runJobIn(t, dir, "job2.yaml", "work2", head+`  - {id: ct, kind: pack, needs: [quant], with: {format: compressed-tensors, out: ct, model: `+model+`}}
`)
	if err == nil || !strings.Contains(err.Error(), "online input rotation") {
		t.Errorf("compressed-tensors of MR-GPTQ online weights: err %v, want a refusal", err)
	}
}
