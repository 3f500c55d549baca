package calib

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/marlin-llm/marlin/model/arch"
	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/quant/gptq"
)

func f64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// TestGPTQBeatsRTNOnEveryLinear: sequential GPTQ (INT3-g128, act-order,
// calibrated on calib.txt) has a lower layer error ‖WX−QX‖ than RTN, under
// the same calibration Hessian, on every Linear of qwen3-nano.
func TestGPTQBeatsRTNOnEveryLinear(t *testing.T) {
	m := loadModel(t, "qwen3-nano")
	ids := tokenize(t, "qwen3-nano", "calib.txt")[:16*128]
	f, err := quant.Lookup("int3")
	if err != nil {
		t.Fatal(err)
	}
	mt := &Method{Name: "gptq", Format: f, GPTQ: gptq.Options{ActOrder: true, StaticGroups: true}}
	var mu sync.Mutex
	seen := 0
	rep, err := Sequential(context.Background(), m, ids, Options{Window: 128, TrueSequential: true}, quantizable,
		func(ctx context.Context, ps []*arch.Proj, hess map[string]*gptq.Hessian) error {
			for _, p := range ps {
				w := append([]float32(nil), p.Linear().(arch.Weighted).Weight()...)
				rows, cols := p.Linear().Dims()
				pk, err := quant.Quantize(w, rows, cols, f, nil)
				if err != nil {
					return err
				}
				q := make([]float32, len(w))
				pk.Dequantize(q)
				H := hess[p.Name()].Matrix()
				rtnErr, err := gptq.LayerError(f64(w), f64(q), rows, cols, H)
				if err != nil {
					return err
				}
				r, err := mt.Apply(ctx, p, hess[p.Name()])
				if err != nil {
					return err
				}
				mu.Lock()
				seen++
				mu.Unlock()
				t.Logf("%-36s rtn %10.4f gptq %10.4f (%.2fx)", p.Name(), rtnErr, r.Err, r.Err/rtnErr)
				if !(r.Err < rtnErr) {
					t.Errorf("%s: GPTQ error %.4f not below RTN %.4f", p.Name(), r.Err, rtnErr)
				}
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if seen != 28 {
		t.Errorf("quantized %d Linears, want 28 (4 layers × 7)", seen)
	}
	// 4 layers × (4 true-sequential groups: calibration passes) + 4 advances.
	if rep.Passes != 4*4+4 {
		t.Errorf("%d layer passes, want 20", rep.Passes)
	}
}

// TestExpertCoverage: every routed expert of qwen3moe-nano is calibrated;
// with a small calibration set some experts fall below the threshold and
// get the stated policy, never a silent skip.
func TestExpertCoverage(t *testing.T) {
	m := loadModel(t, "qwen3moe-nano")
	ids := tokenize(t, "qwen3moe-nano", "calib.txt")[:4*64]
	hess, rep, err := Collect(context.Background(), m, ids, Options{Window: 64}, func(n string) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, p := range m.Projs() {
		if expertProj(p.Name()) {
			want++
			if hess[p.Name()] == nil || hess[p.Name()].Samples() == 0 {
				t.Errorf("%s: no Hessian after the policy", p.Name())
			}
		}
	}
	if len(rep.Experts) != want {
		t.Fatalf("coverage lists %d expert projections, model has %d", len(rep.Experts), want)
	}
	policies := map[string]int{}
	for _, e := range rep.Experts {
		policies[e.Policy]++
	}
	t.Logf("%d expert projections: policies %v; router counts %v", want, policies, rep.RouterCounts)
	if policies["shrunk"]+policies["pooled"] == 0 {
		t.Error("256 tokens over 8 experts × top-2 should leave some expert below its input width")
	}
	// Token counts in the report agree with the router's.
	for _, e := range rep.Experts {
		var layer int
		fmt.Sscanf(e.Name, "model.layers.%d.", &layer)
		cnt := rep.RouterCounts[fmt.Sprintf("model.layers.%d.mlp.gate", layer)]
		if cnt == nil || cnt[e.Expert] != e.Tokens {
			t.Fatalf("%s: %d tokens, router counted %v", e.Name, e.Tokens, cnt)
		}
	}
}

func TestStages(t *testing.T) {
	order := []string{
		"model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.k_proj", "model.layers.1.self_attn.v_proj",
		"model.layers.1.self_attn.o_proj", "model.layers.1.mlp.gate",
		"model.layers.1.mlp.experts.0.gate_proj", "model.layers.1.mlp.experts.0.up_proj", "model.layers.1.mlp.experts.0.down_proj",
		"model.layers.1.mlp.experts.3.gate_proj", "model.layers.1.mlp.experts.3.up_proj", "model.layers.1.mlp.experts.3.down_proj",
		"model.layers.1.mlp.shared_experts.gate_proj", "model.layers.1.mlp.shared_experts.up_proj", "model.layers.1.mlp.shared_experts.down_proj",
	}
	alias := map[string]string{
		"model.layers.1.self_attn.k_proj":      "model.layers.1.self_attn.q_proj",
		"model.layers.1.self_attn.v_proj":      "model.layers.1.self_attn.q_proj",
		"model.layers.1.mlp.experts.0.up_proj": "model.layers.1.mlp.experts.0.gate_proj",
		"model.layers.1.mlp.experts.3.up_proj": "model.layers.1.mlp.experts.3.gate_proj",
	}
	got := stages(order, alias)
	// An MoE block in two groups: what reads its input (router, routed
	// and shared experts' gate/up), then every down projection.
	want := [][]string{
		order[0:3], order[3:4],
		{order[4], order[5], order[6], order[8], order[9], order[11], order[12]},
		{order[7], order[10], order[13]},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("stages:\n got %v\nwant %v", got, want)
	}
}

func TestErrors(t *testing.T) {
	m := loadModel(t, "qwen3-nano")
	ctx := context.Background()
	if _, _, err := Collect(ctx, m, make([]int32, 100), Options{Window: 64}, nil); err == nil {
		t.Error("ragged windows accepted")
	}
	if _, _, err := Collect(ctx, m, []int32{1, 99999}, Options{Window: 2}, nil); err == nil {
		t.Error("out-of-vocabulary token accepted")
	}
	p, _ := m.Proj("model.layers.0.mlp.up_proj")
	if _, err := (&Method{Name: "awq"}).Quantize(ctx, p, nil); err == nil {
		t.Error("unknown method accepted")
	}
	if _, err := (&Method{Name: "gptq"}).Quantize(ctx, p, nil); err == nil {
		t.Error("gptq without a Hessian accepted")
	}
}
