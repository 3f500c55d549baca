package stages

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/marlin-llm/marlin/internal/assets"
	"github.com/marlin-llm/marlin/kernels"
	"github.com/marlin-llm/marlin/model/arch"
	"github.com/marlin-llm/marlin/model/eval"
	"github.com/marlin-llm/marlin/model/hfconfig"
	"github.com/marlin-llm/marlin/model/tokenizer"
	"github.com/marlin-llm/marlin/pipeline"
	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/quant/hadamard"
	"github.com/marlin-llm/marlin/tensor"
)

func gptqJob(t *testing.T, dir, extra string) *pipeline.Plan {
	t.Helper()
	doc := fmt.Sprintf(`version: 1
stages:
  - {id: load, kind: load, with: {path: %q}}
  - {id: rotate, kind: rotate, needs: [load], with: {block: 16}}
  - {id: calib, kind: calibrate, needs: [rotate], with: {model: %q, text: %q, samples: 6, seq_len: 64%s}}
  - id: quant
    kind: quantize
    needs: [calib]
    with:
      default: {format: nvfp4, method: mr-gptq}
      rules:
        - {match: "model.embed_tokens.weight", format: bf16}
        - {match: "lm_head.weight", format: bf16}
        - {match: "*.mlp.down_proj.weight", format: int4, group_size: 128, method: gptq, actorder: true}
`, dir, dir, assets.Shared(t, "corpus", "calib.txt"), extra)
	_, plan := mustPlanDoc(t, t.TempDir(), doc)
	return plan
}

// quantOutputs returns the quantize stage's blobs by key (digest) and the
// stage's tensors.
func quantOutputs(t *testing.T, st *pipeline.Store) (map[string]string, []*tensor.Tensor) {
	t.Helper()
	digests := map[string]string{}
	var ts []*tensor.Tensor
	for _, e := range st.Entries() {
		if e.Stage != "quant" || strings.HasPrefix(e.Key, actKeyPrefix) {
			continue // activations: transient, their blobs dropped
		}
		digests[e.Key] = e.Digest
		o, err := st.Get(e)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, o.Tensors...)
	}
	return digests, ts
}

type tensorMap map[string]*tensor.Tensor

func (m tensorMap) Tensor(name string) (*tensor.Tensor, error) {
	if t, ok := m[name]; ok {
		return t, nil
	}
	return nil, fmt.Errorf("no tensor %q", name)
}

// effectiveModel rebuilds a dense model from the quantize stage's outputs:
// packed weights are dequantized and online input rotations undone (Q·R);
// lm_head is untied when the outputs hold one.
func effectiveModel(t *testing.T, dir string, ts []*tensor.Tensor) *arch.Model {
	t.Helper()
	src := tensorMap{}
	byName := map[string][]*tensor.Tensor{}
	for _, tt := range ts {
		base := tt.Name
		if quant.IsPacked(tt) || strings.Contains(tt.Name, ".") && tt.Meta[quant.MetaFormat] != "" {
			byName[tt.Meta["quant.name"]] = append(byName[tt.Meta["quant.name"]], tt)
		}
		src[base] = tt
	}
	for _, tt := range ts {
		if !quant.IsPacked(tt) {
			continue
		}
		p, err := quant.FromTensors(tt.Name, ts)
		if err != nil {
			t.Fatalf("%s: %v", tt.Name, err)
		}
		w := make([]float32, p.Rows*p.Cols)
		p.Dequantize(w)
		if tt.Meta[hadamard.MetaInputPlacement] == hadamard.PlacementOnline {
			rot, err := hadamard.Parse(tt.Meta[hadamard.MetaInput], p.Cols)
			if err != nil {
				t.Fatal(err)
			}
			if err := rot.ApplyT(w, p.Rows); err != nil {
				t.Fatal(err)
			}
		}
		d, err := tensor.FromFloat32(tt.Name, tensor.F32, []int{p.Rows, p.Cols}, w)
		if err != nil {
			t.Fatal(err)
		}
		src[tt.Name] = d
	}
	cfg, err := hfconfig.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := src[lmHeadName]; ok {
		cfg.TieWordEmbeddings = false // the rotate stage unties lm_head
	}
	m, err := arch.Build(cfg, src, arch.Options{Backend: kernels.NewCPU(kernels.Options{})})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestRotateCalibrateQuantizePipeline runs load → rotate → calibrate →
// quantize (MR-GPTQ NVFP4, GPTQ INT4 down_proj) on qwen3-nano through the
// runner, checks every Linear was quantized with its method and rotation
// bookkeeping, that the result (packed weights dequantized, online
// rotations undone) is a working model, and that a run killed in the middle
// of GPTQ resumes to the same bytes.
func TestRotateCalibrateQuantizePipeline(t *testing.T) {
	dir := assets.Model(t, "qwen3-nano")
	ctx := context.Background()
	plan := gptqJob(t, dir, "")
	st, err := pipeline.OpenStore(filepath.Join(t.TempDir(), "run"), pipeline.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := (&pipeline.Runner{Store: st, Workers: 2}).Run(ctx, plan); err != nil {
		t.Fatal(err)
	}
	digests, ts := quantOutputs(t, st)
	methods := map[string]int{}
	placements := map[string]int{}
	for _, tt := range ts {
		if !quant.IsPacked(tt) || !strings.HasPrefix(tt.Name, "model.layers.") {
			continue
		}
		methods[tt.Meta[quant.MetaMethod]+"/"+tt.Meta[quant.MetaFormat]]++
		placements[tt.Meta[hadamard.MetaInputPlacement]]++
		if tt.Meta["gptq.err"] == "" || tt.Meta["gptq.samples"] != "384" {
			t.Errorf("%s: gptq meta %q samples %q", tt.Name, tt.Meta["gptq.err"], tt.Meta["gptq.samples"])
		}
	}
	// 4 layers: q,k,v,gate,up (rotated by the stage: folded), o (MR-GPTQ
	// online rotation), down (GPTQ INT4 on the unrotated input).
	if methods["mr-gptq/nvfp4"] != 24 || methods["gptq/int4"] != 4 {
		t.Errorf("methods %v", methods)
	}
	if placements[hadamard.PlacementFolded] != 20 || placements[hadamard.PlacementOnline] != 4 || placements[""] != 4 {
		t.Errorf("rotation placements %v", placements)
	}
	// The calibration report covers the run.
	for _, e := range st.Entries() {
		if e.Stage == "calib" && e.Key == CalibrationKey {
			o, err := st.Get(e)
			if err != nil {
				t.Fatal(err)
			}
			var rep map[string]any
			if err := json.Unmarshal([]byte(o.Meta["calib.report"]), &rep); err != nil {
				t.Fatal(err)
			}
			if rep["tokens"].(float64) != 384 || rep["windows"].(float64) != 6 {
				t.Errorf("calibration report %v", rep)
			}
		}
	}
	// The quantized model works: perplexity close to the original's.
	tok, err := tokenizer.Load(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(assets.Shared(t, "corpus", "valid.txt"))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := tok.Encode(string(text[:40000]))
	if err != nil {
		t.Fatal(err)
	}
	orig, err := arch.Load(dir, arch.Options{Backend: kernels.NewCPU(kernels.Options{})})
	if err != nil {
		t.Fatal(err)
	}
	q := effectiveModel(t, dir, ts)
	eo := eval.Options{Window: 128, Windows: 4}
	p0, err := eval.Perplexity(ctx, orig, ids, eo)
	if err != nil {
		t.Fatal(err)
	}
	p1, err := eval.Perplexity(ctx, q, ids, eo)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("perplexity on 4×128 tokens: original %.3f, rotated+MR-GPTQ NVFP4/GPTQ INT4 %.3f", p0.PPL, p1.PPL)
	if p1.PPL > 1.05*p0.PPL {
		t.Errorf("quantized model perplexity %.3f vs original %.3f", p1.PPL, p0.PPL)
	}

	// Kill after a few quantize tasks, resume: same bytes.
	st2, err := pipeline.OpenStore(filepath.Join(t.TempDir(), "run"), pipeline.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	cctx, cancel := context.WithCancel(ctx)
	var done atomic.Int32
	_, err = (&pipeline.Runner{Store: st2, Workers: 2, Events: func(e pipeline.Event) {
		if e.Stage == "quant" && e.Type == pipeline.EventDone && done.Add(1) == 6 {
			cancel()
		}
	}}).Run(cctx, gptqJob(t, dir, ""))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %v", err)
	}
	stats, err := (&pipeline.Runner{Store: st2, Workers: 2}).Run(ctx, gptqJob(t, dir, ""))
	if err != nil {
		t.Fatal(err)
	}
	if stats.Skipped == 0 {
		t.Error("resume skipped nothing")
	}
	d2, _ := quantOutputs(t, st2)
	if len(d2) != len(digests) {
		t.Fatalf("resumed run has %d quantize outputs, uninterrupted %d", len(d2), len(digests))
	}
	for k, v := range digests {
		if d2[k] != v {
			t.Errorf("%s: resumed output differs from the uninterrupted run", k)
		}
	}
}

// TestGLMEveryExpertCalibrated (MARLIN_SLOW=1): glm47-nano through load →
// calibrate → quantize: every routed expert projection is quantized with a
// coverage record (own, shrunk or pooled) in the report, none is skipped.
func TestGLMEveryExpertCalibrated(t *testing.T) {
	if os.Getenv("MARLIN_SLOW") == "" {
		t.Skip("set MARLIN_SLOW=1 to calibrate glm47-nano through the pipeline")
	}
	dir := assets.Model(t, "glm47-nano")
	st := mustRunPlan(t, layerJob(t, dir, 4, ""), filepath.Join(t.TempDir(), "run"), 2)
	rep := readQuantReport(t, st)
	got := layerOutputs(t, st)
	policies := rep.policies()
	for _, e := range rep.Experts {
		if w := got[e.Name+".weight"]; w == nil || w.Meta[quant.MetaMethod] != MethodGPTQ {
			t.Errorf("%s: not quantized by GPTQ", e.Name)
		}
	}
	// 3 MoE layers × 8 experts × 3 projections.
	if len(rep.Experts) != 72 || policies["rtn"] != 0 {
		t.Errorf("%d expert coverage records (want 72), policies %v", len(rep.Experts), policies)
	}
	t.Logf("glm47-nano: expert policies %v", policies)
}
