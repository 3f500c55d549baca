package stages

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/internal/assets"
	"github.com/marlin-llm/marlin/internal/heappeak"
	"github.com/marlin-llm/marlin/model/synth"
	"github.com/marlin-llm/marlin/quant/gptq"
	"github.com/marlin-llm/marlin/tensor"
)

// TestProjectionBytesBoundsHeap: what quantizing one projection of a layer
// holds at its peak (its F32 copies, GPTQ's working set, MR-GPTQ's rotated
// Hessian) stays within projectionBytes' work, and what it keeps (packed
// tensors, the effective weight) within its result: the per-projection
// figures of the layer task's memory estimate.
func TestProjectionBytesBoundsHeap(t *testing.T) {
	if testing.Short() {
		t.Skip("samples the heap")
	}
	const rows, cols = 256, 1536
	rng := rand.New(rand.NewPCG(1, 2))
	vals := make([]float32, rows*cols)
	for i := range vals {
		vals[i] = float32(rng.NormFloat64()) * 0.02
	}
	w := f32Tensor(vals...)
	w.Name, w.Shape = "model.layers.0.mlp.experts.0.down_proj.weight", []int{rows, cols}
	x := make([]float32, 4*cols*cols/cols*cols)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	for _, tc := range []struct {
		spec QuantSpec
	}{
		{QuantSpec{Format: "mxfp4", Method: MethodMRGPTQ}},
		{QuantSpec{Format: "int4", Method: MethodGPTQ}},
		{QuantSpec{Format: "q4_k", Method: MethodGPTQ}},
	} {
		for _, eff := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/%s/eff=%v", tc.spec.Method, tc.spec.Format, eff), func(t *testing.T) {
				h, err := gptq.NewHessian(cols, gptq.F32)
				if err != nil {
					t.Fatal(err)
				}
				if err := h.Add(x, len(x)/cols); err != nil {
					t.Fatal(err)
				}
				lp := &layerPlan{s: &quantizeStage{cfg: QuantizeConfig{Default: tc.spec}}}
				rq, err := lp.s.cfg.Resolve(w.Name)
				if err != nil {
					t.Fatal(err)
				}
				var ts []*tensor.Tensor
				var e []float32
				used := heappeak.Of(func() {
					var err error
					ts, _, e, err = lp.quantizeProj(context.Background(), w, h, eff)
					if err != nil {
						t.Error(err)
					}
				})
				var kept int64
				for _, q := range ts {
					kept += int64(len(q.Data))
				}
				kept += 4 * int64(len(e))
				work, result := projectionBytes(rq, rows, cols, eff)
				t.Logf("peak %.1f MiB (estimate %.1f), kept %.2f MiB (estimate %.2f)", float64(used)/(1<<20), float64(work)/(1<<20), float64(kept)/(1<<20), float64(result)/(1<<20))
				if used > work {
					t.Errorf("peak heap %d bytes over projectionBytes' %d", used, work)
				}
				if kept > result {
					t.Errorf("kept %d bytes over projectionBytes' result %d", kept, result)
				}
			})
		}
	}
}

// TestLayerEstimateBoundsHeap runs the flagship job's shape (Hadamard
// rotate, true-sequential calibration, layer-streamed MR-GPTQ MXFP4) on a
// synthetic GLM-4.7-Flash at an eighth of its width (a dense layer and a
// MoE layer of 64 experts; its o_proj keeps 5120 input columns, whose
// GPTQ dominates), one task at a time, and checks that the heap never
// held more than the largest task estimate: the layer tasks' estimate
// (layerMemory) must not undercount what they hold.
func TestLayerEstimateBoundsHeap(t *testing.T) {
	if testing.Short() {
		t.Skip("quantizes two synthetic layers while sampling the heap")
	}
	dir := t.TempDir()
	model := filepath.Join(dir, "model")
	cfg := synth.GLM47Flash(8, 2)
	ts, err := synth.GLMTensors(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := synth.Write(context.Background(), model, cfg, ts, 1, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := synth.WriteTokenizer(model, "", cfg["vocab_size"].(int)); err != nil {
		t.Fatal(err)
	}
	doc := fmt.Sprintf(`version: 1
stages:
  - {id: load, kind: load, with: {path: %q}}
  - {id: rotate, kind: rotate, needs: [load], with: {method: hadamard, block: 32}}
  - {id: calib, kind: calibrate, needs: [rotate], with: {model: %q, text: %q, samples: 4, seq_len: 128}}
  - id: quant
    kind: quantize
    needs: [calib]
    with:
      default: {format: mxfp4, method: mr-gptq}
      rules:
        - {match: "*.mlp.gate.weight", format: bf16}
        - {match: "model.embed_tokens.weight", format: bf16}
        - {match: "lm_head.weight", format: bf16}
`, model, model, assets.Shared(t, "corpus", "calib.txt"))
	_, plan := mustPlanDoc(t, dir, doc)
	var largest, layerEst int64
	for _, ref := range plan.Order {
		e := plan.Task(ref).EstBytes
		largest = max(largest, e)
		if ref.Stage == "quant" && strings.HasPrefix(ref.Key, layerKeyPrefix) {
			layerEst = max(layerEst, e)
		}
	}
	used := heappeak.Of(func() { mustRunPlan(t, plan, filepath.Join(dir, "store"), 1) })
	t.Logf("peak heap %.1f MiB; largest layer task estimate %.1f MiB, largest task estimate %.1f MiB",
		float64(used)/(1<<20), float64(layerEst)/(1<<20), float64(largest)/(1<<20))
	if used > largest {
		t.Errorf("peak heap %d bytes over the largest task estimate %d", used, largest)
	}
}
