package stages

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/export/llamacpp"
	"github.com/marlin-llm/marlin/internal/assets"
	"github.com/marlin-llm/marlin/model/gguf"
	"github.com/marlin-llm/marlin/model/hfconfig"
	"github.com/marlin-llm/marlin/model/safetensors"
	"github.com/marlin-llm/marlin/pipeline"
	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/report"
	"github.com/marlin-llm/marlin/tensor"
)

// TestGGUFGPTQPipeline: qwen3moe-nano calibrated, every Linear quantized
// with GPTQ onto GGML block types (Q4_K, and Q5_0 where expert rows of 128
// do not fill a Q4_K block), packed as GGUF and natively. The GGUF holds
// the quantize stage's blocks byte for byte, the importance matrix is
// written in llama-imatrix's layout (experts stacked), and validate scores
// the GGUF (read back through the GGML dequantization) exactly as the
// native checkpoint of the same blocks.
func TestGGUFGPTQPipeline(t *testing.T) {
	dir := assets.Model(t, "qwen3moe-nano")
	text := assets.Shared(t, "corpus", "valid.txt")
	doc := fmt.Sprintf(`version: 1
stages:
  - {id: load, kind: load, with: {path: %[1]q}}
  - {id: calib, kind: calibrate, needs: [load], with: {model: %[1]q, text: %[2]q, samples: 4, seq_len: 64}}
  - id: quant
    kind: quantize
    needs: [calib]
    with:
      default: {format: q4_k, method: gptq, actorder: true}
      imatrix: imatrix.gguf
      rules:
        - {match: "*.mlp.gate.weight", format: skip}
        - {match: "*.mlp.experts.*.down_proj.weight", format: q5_0}
        - {match: "model.embed_tokens.weight", format: q6_k}
        - {match: "lm_head.weight", format: q6_k}
  - {id: gguf, kind: pack, needs: [quant], with: {format: gguf, out: m.gguf, model: %[1]q}}
  - {id: native, kind: pack, needs: [quant], with: {format: native, out: m, model: %[1]q}}
  - {id: vn, kind: validate, needs: [native], with: {model: %[1]q, packed: m, text: %[3]q, window: 64, windows: 2, out: vn.json}}
  - {id: vg, kind: validate, needs: [gguf], with: {model: %[1]q, gguf: m.gguf, text: %[3]q, window: 64, windows: 2, out: vg.json}}
`, dir, assets.Shared(t, "corpus", "calib.txt"), text)
	_, plan := mustPlanDoc(t, t.TempDir(), doc)
	st := mustRunPlan(t, plan, filepath.Join(t.TempDir(), "run"), 2)
	out := st.OutDir()

	f, err := gguf.Open(filepath.Join(out, "m.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, ts := quantOutputs(t, st)
	blocks := map[string][]byte{}
	for _, tt := range ts {
		blocks[tt.Name] = tt.Data
	}
	for _, c := range []struct{ gguf, hf string }{
		{"blk.1.attn_q.weight", "model.layers.1.self_attn.q_proj.weight"},
		{"blk.2.ffn_up_exps.weight", "model.layers.2.mlp.experts.0.up_proj.weight"},
		{"blk.0.ffn_down_exps.weight", "model.layers.0.mlp.experts.0.down_proj.weight"},
	} {
		ti, ok := f.Info(c.gguf)
		if !ok {
			t.Fatalf("%s missing", c.gguf)
		}
		data, err := f.TensorData(c.gguf)
		if err != nil {
			t.Fatal(err)
		}
		b := blocks[c.hf]
		if len(b) == 0 || len(data) < len(b) || string(data[:len(b)]) != string(b) {
			t.Errorf("%s (%s): GGUF bytes are not the quantize stage's blocks of %s", c.gguf, ti.Type, c.hf)
		}
	}
	if ti, _ := f.Info("blk.0.ffn_down_exps.weight"); ti.Type != gguf.TypeQ5_0 {
		t.Errorf("ffn_down_exps type %s, want Q5_0", ti.Type)
	}

	im, err := gguf.Open(filepath.Join(out, "imatrix.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	if v, _ := im.KV("general.type"); v.V != "imatrix" {
		t.Errorf("imatrix general.type %v", v.V)
	}
	ti, ok := im.Info("blk.1.ffn_gate_exps.weight.in_sum2")
	if !ok || len(ti.Dims) != 2 || ti.Dims[0] != 256 || ti.Dims[1] != 8 {
		t.Errorf("stacked expert entry %+v", ti)
	}
	if ti, ok := im.Info("blk.1.attn_q.weight.counts"); !ok || ti.NumElements() != 1 {
		t.Errorf("attn_q counts %+v", ti)
	}

	read := func(name string) *report.Validation {
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		var v report.Validation
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		return &v
	}
	vn, vg := read("vn.json"), read("vg.json")
	t.Logf("native KL %.5f top1 %.4f ppl %.3f; gguf KL %.5f top1 %.4f ppl %.3f", vn.KL, vn.Top1, vn.QuantPPL, vg.KL, vg.Top1, vg.QuantPPL)
	if d := vn.KL - vg.KL; d > 1e-6 || d < -1e-6 || vn.Top1 != vg.Top1 || vg.KL <= 0 {
		t.Errorf("GGUF scored KL %v top-1 %v, the native checkpoint of the same blocks KL %v top-1 %v", vg.KL, vg.Top1, vn.KL, vn.Top1)
	}
}

// TestGGUFRecipePipeline: quantize's gguf_recipe gives every tensor the
// type llama-quantize's Q3_K_M mixture chooses (llamacpp.AssignTypes,
// which TestMixturesMatchLlamaQuantize pins to llama-quantize itself), GPTQ
// runs onto that grid, and the pack stage takes the recipe as its
// gguf_type: the GGUF of glm47-nano (MLA, a dense layer, shared and routed
// experts) has exactly the mixture's types and file type, and every
// directly copied tensor holds the quantize stage's blocks.
func TestGGUFRecipePipeline(t *testing.T) {
	dir := assets.Model(t, "glm47-nano")
	st := runCalibGGUFJob(t, dir, `      default: {method: gptq}
      gguf_recipe: q3_k_m
      rules:
        - {match: "model.embed_tokens.weight", method: rtn}
`)
	f, err := gguf.Open(filepath.Join(st.OutDir(), "m.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	cfg, err := hfconfig.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	ck, err := safetensors.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	want, err := llamacpp.NewPlan(cfg, dir, ck.Names(), func(n string) []int { i, _ := ck.Info(n); return i.Shape },
		llamacpp.Options{Recipe: "q3_k_m", HasImatrix: true})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := f.KV("general.file_type"); fmt.Sprint(v.V) != "12" {
		t.Errorf("general.file_type %v, want 12 (LLAMA_FTYPE_MOSTLY_Q3_K_M)", v.V)
	}
	_, ts := quantOutputs(t, st)
	packed := map[string]*tensor.Tensor{}
	for _, tt := range ts {
		if tt.Meta[quant.MetaFormat] != "" {
			packed[tt.Name] = tt
		}
	}
	for i, wt := range want.Tensors {
		ti, ok := f.Info(wt.Name)
		if !ok {
			t.Errorf("%s missing", wt.Name)
			continue
		}
		if ti.Type != want.Types[i] {
			t.Errorf("%s is %s, the q3_k_m mixture gives %s", wt.Name, ti.Type, want.Types[i])
		}
		if len(wt.Dims) < 2 || !wt.Direct() || want.Types[i] == gguf.TypeF32 {
			continue
		}
		src := packed[wt.Sources[0]]
		if src == nil {
			t.Errorf("%s (%s): %s was not quantized", wt.Name, want.Types[i], wt.Sources[0])
			continue
		}
		if got := src.Meta[quant.MetaFormat]; !strings.EqualFold(got, want.Types[i].String()) {
			t.Errorf("%s quantized as %s, want %s", wt.Sources[0], got, want.Types[i])
		}
		if m := src.Meta[quant.MetaMethod]; wt.Name != "token_embd.weight" && m != MethodGPTQ {
			t.Errorf("%s quantized by %q, want gptq", wt.Sources[0], m)
		}
		data, err := f.TensorData(wt.Name)
		if err != nil {
			t.Fatal(err)
		}
		if len(data) < len(src.Data) || string(data[:len(src.Data)]) != string(src.Data) {
			t.Errorf("%s: GGUF bytes are not the quantize stage's blocks of %s", wt.Name, wt.Sources[0])
		}
	}
}

// TestTargetBPWPipeline: quantize's target_bpw chooses qwen3moe-nano's
// formats from a float calibration pass, GPTQ runs on them, and
// quant-report.json lists the choice: the average the quantized 2-D
// tensors reach (from their own reports) is at most the target and equals
// the allocation's, every tensor has the format chosen for it, the
// experts of one layer and projection share one, and the GGUF holds those
// types.
func TestTargetBPWPipeline(t *testing.T) {
	dir := assets.Model(t, "qwen3moe-nano")
	const target = 4.6
	st := runCalibGGUFJob(t, dir, fmt.Sprintf(`      default: {method: gptq}
      target_bpw: %v
      report: report.json
      rules:
        - {match: "*.mlp.gate.weight", format: skip}
`, target))
	b, err := os.ReadFile(filepath.Join(st.OutDir(), "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep QuantizeReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	res := rep.TargetBPW
	if res == nil {
		t.Fatal("report has no target_bpw")
	}
	if res.Target != target || res.BPW > target {
		t.Errorf("allocation: target %v, average %v", res.Target, res.BPW)
	}
	var bits, weights float64
	for _, r := range rep.Tensors {
		if r.Rows <= 1 {
			continue
		}
		want, ok := res.Formats[r.Name]
		if !ok {
			t.Errorf("%s (%s) is not in the allocation", r.Name, r.Format)
			continue
		}
		if !strings.EqualFold(r.Format, want) {
			t.Errorf("%s quantized as %s, the allocation chose %s", r.Name, r.Format, want)
		}
		n := float64(r.Rows) * float64(r.Cols)
		bits += r.BitsPerWeight * n
		weights += n
	}
	if got := bits / weights; got > target || math.Abs(got-res.BPW) > 1e-9 {
		t.Errorf("quantized tensors average %.6f bits per weight; allocation %.6f, target %v", got, res.BPW, target)
	}
	for n, f := range res.Formats {
		if i := strings.Index(n, ".experts."); i >= 0 {
			e0 := n[:i] + ".experts.0." + n[strings.Index(n[i+len(".experts."):], ".")+i+len(".experts.")+1:]
			if g := res.Formats[e0]; g != f {
				t.Errorf("%s is %s but %s is %s", n, f, e0, g)
			}
		}
	}
	formats := map[string]int{}
	for _, f := range res.Formats {
		formats[f]++
	}
	if len(formats) < 2 {
		t.Errorf("one format for every tensor: %v", formats)
	}
	f, err := gguf.Open(filepath.Join(st.OutDir(), "m.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, g := range res.Groups {
		ti, ok := f.Info(g.Name)
		if !ok {
			t.Errorf("GGUF has no %s", g.Name)
			continue
		}
		if !strings.EqualFold(ti.Type.String(), g.Format) {
			t.Errorf("GGUF %s is %s, the allocation chose %s", g.Name, ti.Type, g.Format)
		}
	}
	t.Logf("target %v: %.4f bpw, predicted error %.4g, formats %v", target, res.BPW, res.Err, formats)
}

// runCalibGGUFJob runs load → calibrate (2 windows of 32 tokens) →
// quantize (with the given body of its with: block) → GGUF pack (m.gguf)
// on the model in dir and returns the finished run.
func runCalibGGUFJob(t *testing.T, dir, quantWith string) *pipeline.Store {
	t.Helper()
	doc := fmt.Sprintf(`version: 1
stages:
  - {id: load, kind: load, with: {path: %[1]q}}
  - {id: calib, kind: calibrate, needs: [load], with: {model: %[1]q, text: %[2]q, samples: 2, seq_len: 32}}
  - id: quant
    kind: quantize
    needs: [calib]
    with:
%[3]s  - {id: gguf, kind: pack, needs: [quant], with: {format: gguf, out: m.gguf, model: %[1]q}}
`, dir, assets.Shared(t, "corpus", "calib.txt"), quantWith)
	_, plan := mustPlanDoc(t, t.TempDir(), doc)
	return mustRunPlan(t, plan, filepath.Join(t.TempDir(), "run"), 2)
}
