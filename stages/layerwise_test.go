package stages

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/internal/assets"
	"github.com/marlin-llm/marlin/kernels"
	"github.com/marlin-llm/marlin/model/arch"
	"github.com/marlin-llm/marlin/model/safetensors"
	"github.com/marlin-llm/marlin/model/tokenizer"
	"github.com/marlin-llm/marlin/pipeline"
	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/quant/calib"
	"github.com/marlin-llm/marlin/quant/gptq"
	"github.com/marlin-llm/marlin/tensor"
)

// layerJob is load → calibrate → quantize on a nano model with GPTQ INT4
// (groups of 32) everywhere but the embeddings; lm_head (when the model
// has one) by GPTQ too.
func layerJob(t *testing.T, dir string, samples int, calibExtra string) *pipeline.Plan {
	t.Helper()
	doc := fmt.Sprintf(`version: 1
stages:
  - {id: load, kind: load, with: {path: %q}}
  - {id: calib, kind: calibrate, needs: [load], with: {model: %q, text: %q, samples: %d, seq_len: 64%s}}
  - id: quant
    kind: quantize
    needs: [calib]
    with:
      default: {format: int4, group_size: 32, method: gptq, actorder: true}
      rules:
        - {match: "model.embed_tokens.weight", format: bf16}
        - {match: "*.mlp.gate.weight", format: bf16}
      report: quant-report.json
`, dir, dir, assets.Shared(t, "corpus", "calib.txt"), samples, calibExtra)
	_, plan := mustPlanDoc(t, t.TempDir(), doc)
	return plan
}

// layerOutputs returns the quantize stage's tensors by name (activations,
// whose blobs are dropped, excluded).
func layerOutputs(t *testing.T, st *pipeline.Store) map[string]*tensor.Tensor {
	t.Helper()
	out := map[string]*tensor.Tensor{}
	for _, e := range st.Entries() {
		if e.Stage != "quant" || strings.HasPrefix(e.Key, actKeyPrefix) {
			continue
		}
		o, err := st.Get(e)
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range o.Tensors {
			out[tt.Name] = tt
		}
	}
	return out
}

// calibrationIDs tokenizes the calibration text as the calibrate stage does.
func calibrationIDs(t *testing.T, dir string, samples, seqLen int) []int32 {
	t.Helper()
	tok, err := tokenizer.Load(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(assets.Shared(t, "corpus", "calib.txt"))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := tok.Encode(string(text))
	if err != nil {
		t.Fatal(err)
	}
	return ids[:min(samples, len(ids)/seqLen)*seqLen]
}

// wholeModelReference quantizes dir the way the whole-model path did: one
// model in memory, calib.Collect (non-sequential) or calib.Sequential, and
// the quantize stage's GPTQ per weight with its Hessian. It returns the
// packed tensors by name.
func wholeModelReference(t *testing.T, dir string, plan *pipeline.Plan, ids []int32, sequential, trueSequential bool) map[string]*tensor.Tensor {
	t.Helper()
	ctx := context.Background()
	qs := &quantizeStage{cfg: *plan.JobStage("quant").Config.(*QuantizeConfig)}
	ck, err := safetensors.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	m, err := arch.Load(dir, arch.Options{Backend: kernels.NewCPU(kernels.Options{})})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*tensor.Tensor{}
	quantize := func(p *arch.Proj, h *gptq.Hessian) []float32 {
		name := p.Name() + ".weight"
		src, err := ck.Tensor(name)
		if err != nil && name == lmHeadName && m.Config().TieWordEmbeddings {
			return nil // tied: the embedding, not quantized here
		}
		if err != nil {
			t.Fatal(err)
		}
		c := *src
		c.Meta = map[string]string{MetaHasHessian: "true"}
		ts, _, err := qs.quantizeTensor(ctx, &c, h)
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range ts {
			c := *tt
			c.Data = append([]byte(nil), tt.Data...) // the checkpoint is unmapped on return
			out[tt.Name] = &c
		}
		if !quant.IsPacked(ts[0]) {
			return nil
		}
		eff, _, _, err := effectiveWeight(name, ts)
		if err != nil {
			t.Fatal(err)
		}
		return eff
	}
	opts := calib.Options{Window: 64, Precision: gptq.F32}
	if !sequential {
		hess, _, err := calib.Collect(ctx, m, ids, opts, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range m.Projs() {
			if h := hess[p.Name()]; h != nil {
				quantize(p, h)
			}
		}
		return out
	}
	opts.TrueSequential = trueSequential
	_, err = calib.Sequential(ctx, m, ids, opts, nil, func(ctx context.Context, ps []*arch.Proj, hs map[string]*gptq.Hessian) error {
		for _, p := range ps {
			if eff := quantize(p, hs[p.Name()]); eff != nil {
				rows, cols := p.Linear().Dims()
				d, err := arch.NewDense(rows, cols, eff, nil)
				if err != nil {
					return err
				}
				if err := p.Set(d); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestLayerStreamedMatchesWholeModel: on all three nano models (tied and
// untied lm_head, routed and shared experts, MLA), the layer-streamed
// quantize stage writes the same packed bytes as whole-model calibration,
// non-sequential, sequential and sequential with one calibration pass per
// layer (true_sequential: false); the sequential MoE cases need MARLIN_SLOW.
func TestLayerStreamedMatchesWholeModel(t *testing.T) {
	for _, tc := range []struct {
		model          string
		sequential     bool
		trueSequential bool
		slow           bool
	}{
		{"qwen3-nano", false, false, false},
		{"qwen3-nano", true, true, false},
		{"qwen3-nano", true, false, false},
		{"qwen3moe-nano", false, false, false},
		{"glm47-nano", false, false, true},
		{"qwen3moe-nano", true, true, true},
		{"glm47-nano", true, true, true},
		{"glm47-nano", true, false, true},
	} {
		t.Run(fmt.Sprintf("%s/sequential=%v/true_sequential=%v", tc.model, tc.sequential, tc.trueSequential), func(t *testing.T) {
			if tc.slow && os.Getenv("MARLIN_SLOW") == "" {
				t.Skip("set MARLIN_SLOW=1")
			}
			dir := assets.Model(t, tc.model)
			const samples = 4
			extra := fmt.Sprintf(", sequential: %v", tc.sequential)
			if tc.sequential {
				extra += fmt.Sprintf(", true_sequential: %v", tc.trueSequential)
			}
			plan := layerJob(t, dir, samples, extra)
			st := mustRunPlan(t, plan, filepath.Join(t.TempDir(), "run"), 2)
			got := layerOutputs(t, st)
			want := wholeModelReference(t, dir, plan, calibrationIDs(t, dir, samples, 64), tc.sequential, tc.trueSequential)
			if len(want) == 0 {
				t.Fatal("reference quantized nothing")
			}
			for name, w := range want {
				g := got[name]
				if g == nil {
					t.Errorf("%s: missing from the layer-streamed output", name)
					continue
				}
				if string(g.Data) != string(w.Data) {
					t.Errorf("%s: layer-streamed bytes differ from the whole-model path", name)
				}
			}
			if _, ok := want["lm_head.weight"]; !ok && tc.model != "qwen3-nano" && !tc.sequential { // calib.Sequential covers the layers only
				t.Error("reference did not quantize the untied lm_head")
			}
		})
	}
}

// TestLayerStreamedReport: the quantize report lists every routed expert
// with its token count and policy, and a time split per layer; experts
// under min_expert_tokens fall back to RTN.
func TestLayerStreamedReport(t *testing.T) {
	dir := assets.Model(t, "qwen3moe-nano")
	plan := layerJob(t, dir, 2, ", sequential: false, min_expert_tokens: 40")
	wd := filepath.Join(t.TempDir(), "run")
	st := mustRunPlan(t, plan, wd, 2)
	rep := readQuantReport(t, st)
	policies := rep.policies()
	if len(rep.Layers) != 4 || len(rep.Experts) == 0 || policies["rtn"] == 0 || policies["rtn"] == len(rep.Experts) {
		t.Fatalf("layers %d, experts %d, policies %v", len(rep.Layers), len(rep.Experts), policies)
	}
	got := layerOutputs(t, st)
	for _, e := range rep.Experts {
		w := got[e.Name+".weight"]
		if w == nil {
			t.Fatalf("%s: not in the output", e.Name)
		}
		rtn := w.Meta[quant.MetaMethod] == MethodRTN && w.Meta["calib.fallback"] == "rtn"
		if rtn != (e.Policy == "rtn") || (e.Policy == "rtn") != (e.Tokens < 40) {
			t.Errorf("%s: %d tokens, policy %s, method %s", e.Name, e.Tokens, e.Policy, w.Meta[quant.MetaMethod])
		}
	}
	t.Logf("expert policies %v", policies)
}

// readQuantReport reads the quantize stage's quant-report.json.
func readQuantReport(t *testing.T, st *pipeline.Store) *QuantizeReport {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(st.OutDir(), "quant-report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep QuantizeReport
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	return &rep
}
