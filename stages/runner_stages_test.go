package stages

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/pipeline"
	"github.com/marlin-llm/marlin/tensor"
)

func f32Tensor(vals ...float32) *tensor.Tensor {
	b := make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return &tensor.Tensor{Name: "t", DType: tensor.F32, Shape: []int{len(vals)}, Data: b}
}

func TestTensorStatsKnownAnswers(t *testing.T) {
	inf := float32(math.Inf(1))
	nan := float32(math.NaN())
	st, err := TensorStats(context.Background(), f32Tensor(1, 2, 3, 4, nan, inf))
	if err != nil {
		t.Fatal(err)
	}
	// hand-computed over the finite values 1,2,3,4
	want := Stats{Count: 6, Min: 1, Max: 4, AbsMax: 4, Mean: 2.5, Std: math.Sqrt(1.25), RMS: math.Sqrt(7.5), NaN: 1, Inf: 1, Finites: 4}
	if st != want {
		t.Errorf("got %+v\nwant %+v", st, want)
	}
	// BF16 0x3f80 = 1.0, 0xc000 = -2.0, 0x4040 = 3.0
	bf := &tensor.Tensor{Name: "b", DType: tensor.BF16, Shape: []int{3}, Data: []byte{0x80, 0x3f, 0x00, 0xc0, 0x40, 0x40}}
	st, err = TensorStats(context.Background(), bf)
	if err != nil || st.Min != -2 || st.Max != 3 || st.AbsMax != 3 || math.Abs(st.Mean-2.0/3) > 1e-15 {
		t.Errorf("bf16 stats %+v %v", st, err)
	}
	// a large offset does not destroy the standard deviation (Welford)
	vals := make([]float32, 1000)
	for i := range vals {
		vals[i] = 1e6 + float32(i%2) // mean 1e6+0.5, std 0.5
	}
	st, _ = TensorStats(context.Background(), f32Tensor(vals...))
	if math.Abs(st.Std-0.5) > 1e-9 {
		t.Errorf("std with offset = %v, want 0.5", st.Std)
	}
	// all non-finite
	st, _ = TensorStats(context.Background(), f32Tensor(nan, inf))
	if !math.IsNaN(st.Mean) || st.NaN != 1 || st.Inf != 1 {
		t.Errorf("non-finite stats %+v", st)
	}
}

func TestSyntheticDeterministic(t *testing.T) {
	ctx := context.Background()
	a, err := SyntheticTensorData(ctx, "w", []int{256, 256}, tensor.F32, 1, 0.02)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := SyntheticTensorData(ctx, "w", []int{256, 256}, tensor.F32, 1, 0.02)
	c, _ := SyntheticTensorData(ctx, "w", []int{256, 256}, tensor.F32, 2, 0.02)
	d, _ := SyntheticTensorData(ctx, "v", []int{256, 256}, tensor.F32, 1, 0.02)
	if !bytes.Equal(a.Data, b.Data) {
		t.Error("same seed and name gave different data")
	}
	if bytes.Equal(a.Data, c.Data) || bytes.Equal(a.Data, d.Data) {
		t.Error("different seed or name gave the same data")
	}
	st, _ := TensorStats(ctx, a)
	// 65536 N(0, 0.02²) samples: the sample std is within 2% and the mean
	// within 5 standard errors (0.02/256·5) of the truth.
	if math.Abs(st.Std-0.02) > 0.0004 || math.Abs(st.Mean) > 0.0004 {
		t.Errorf("std %v mean %v", st.Std, st.Mean)
	}
	h, _ := SyntheticTensorData(ctx, "w", []int{256, 256}, tensor.BF16, 1, 0.02)
	if len(h.Data) != 2*256*256 || h.DType != tensor.BF16 {
		t.Error("bf16 tensor malformed")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := SyntheticTensorData(cctx, "w", []int{256, 256}, tensor.F32, 1, 0.02); err == nil {
		t.Error("cancelled context ignored")
	}
}

func TestStageConfigsValidate(t *testing.T) {
	reg, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ doc, want string }{
		{"  - {id: g, kind: synthetic, with: {tensors: [{name: w, shape: [0, 2]}]}}\n", "stages[0].with.tensors[0].shape: dimensions must be > 0"},
		// 2^32·2^32 wraps int64 to 0: must still be over the limit.
		{"  - {id: g, kind: synthetic, with: {tensors: [{name: w, shape: [4294967296, 4294967296]}]}}\n", "stages[0].with.tensors[0].shape: [4294967296 4294967296] has more than 2^34 elements"},
		{"  - {id: g, kind: synthetic, with: {layers: 2, tensors: [{name: 'w{layer}', shape: [2]}, {name: w1, shape: [3]}]}}\n", "duplicate tensor name"},
		{"  - {id: g, kind: synthetic, with: {std: -1, tensors: [{name: w, shape: [2]}]}}\n", "stages[0].with.std: must be a finite number"},
		{"  - {id: g, kind: synthetic, with: {tensors: [{name: w, shape: [2], dtype: I8}]}}\n", `stages[0].with.tensors[0].dtype: unknown dtype "I8"`},
		{"  - {id: g, kind: synthetic}\n", "at least one tensor"},
		{"  - {id: g, kind: synthetic, with: {tensors: [{name: w, shape: [2]}]}}\n  - {id: s, kind: stats, needs: [g], with: {out: ../x.json}}\n", "stages[1].with.out: must be a relative path"},
		{"  - {id: g, kind: synthetic, with: {tensors: [{name: w, shape: [2]}]}}\n  - {id: c, kind: calibrate, needs: [g], with: {model: m, text: t, samples: 8, min_samples: 9}}\n", "stages[1].with.min_samples: 9 is more than the 8 samples requested"},
		{"  - {id: g, kind: synthetic, with: {tensors: [{name: w, shape: [2]}]}}\n  - {id: v, kind: validate, needs: [g], with: {model: m, text: t, packed: p, min_windows: 9}}\n", "stages[1].with.min_windows: 9 is more than the 8 windows requested"},
	}
	for _, c := range cases {
		_, err := pipeline.LoadBytes("j.yaml", []byte("version: 1\nstages:\n"+c.doc), reg, pipeline.LoadOptions{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.doc, err, c.want)
		}
	}
}

func TestSyntheticStatsEndToEnd(t *testing.T) {
	doc := `version: 1
stages:
  - {id: g, kind: synthetic, with: {seed: 3, layers: 3, tensors: [{name: "b.{layer}.w", shape: [64, 32]}, {name: emb, shape: [10, 8], dtype: F16}]}}
  - {id: s, kind: stats, needs: [g], with: {match: "b.*", out: r/stats.json}}
`
	job, plan := mustPlanDoc(t, t.TempDir(), doc)
	if plan.NumTasks() != 4+4+1 {
		t.Fatalf("%d tasks", plan.NumTasks())
	}
	st := mustRunPlan(t, plan, job.Workdir, 0)
	// the stats of b.1.w equal TensorStats of the regenerated tensor
	ref, _ := SyntheticTensorData(context.Background(), "b.1.w", []int{64, 32}, tensor.F32, 3, 0.02)
	want, _ := TensorStats(context.Background(), ref)
	var got map[string]string
	for _, e := range st.Entries() {
		if e.Stage == "s" && e.Key == "g/b.1.w" {
			o, err := st.Get(e)
			if err != nil {
				t.Fatal(err)
			}
			got = o.Meta
		}
		if e.Stage == "s" && e.Key == "g/emb" {
			if o, _ := st.Get(e); len(o.Meta) != 0 {
				t.Errorf("emb not filtered by match: %v", o.Meta)
			}
		}
		if e.Stage == "s" && e.Key == "report" && e.Artifacts["r/stats.json"] == "" {
			t.Errorf("report artifact not recorded: %+v", e)
		}
	}
	for k, v := range want.Map() {
		if got["b.1.w."+k] != v {
			t.Errorf("%s = %q, want %q", k, got["b.1.w."+k], v)
		}
	}
}
