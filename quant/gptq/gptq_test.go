package gptq

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"testing"

	"github.com/marlin-llm/marlin/quant"
)

func lookup(t testing.TB, name string, group int) quant.Format {
	t.Helper()
	f, err := quant.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	if group != 0 && group != f.GroupSize {
		if f, err = f.WithGroupSize(group); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func f32s(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

func f64s(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// rtnErr is the layer error of quant's own RTN (the baseline GPTQ must beat).
func rtnErr(t *testing.T, L *layer, f quant.Format) float64 {
	t.Helper()
	p, err := quant.Quantize(f32s(L.w), L.rows, L.cols, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	q := make([]float32, L.rows*L.cols)
	p.Dequantize(q)
	e, err := LayerError(L.w, f64s(q), L.rows, L.cols, L.h)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestGPTQBeatsRTN: on random correlated X, GPTQ's ‖WX−QX‖ is well below
// RTN's for every grid. The bound (GPTQ ≤ 0.85·RTN) is loose on purpose:
// on such layers GPTQ typically halves the error.
func TestGPTQBeatsRTN(t *testing.T) {
	L := genLayer(t, 7, 96, 256, 1024, -1)
	cases := []struct {
		name  string
		group int
	}{
		{"int4", 128}, {"int3", 128}, {"int2", 64}, {"int4_asym", 128},
		{"mxfp4", 0}, {"nvfp4", 0}, {"fp4", 128}, {"nf4", 64},
	}
	for _, c := range cases {
		f := lookup(t, c.name, c.group)
		base := rtnErr(t, L, f)
		for _, opt := range []Options{{}, {ActOrder: true}, {ActOrder: true, StaticGroups: true}} {
			_, res, err := QuantizeFormat(context.Background(), f32s(L.w), L.rows, L.cols, L.h, f, opt)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%-9s actorder=%-5v static=%-5v rtn %9.4f gptq %9.4f (%.2fx)", c.name, opt.ActOrder, opt.StaticGroups, base, res.Err, res.Err/base)
			if !(res.Err < 0.85*base) {
				t.Errorf("%s %+v: GPTQ error %.4f not below 0.85 × RTN %.4f", c.name, opt, res.Err, base)
			}
		}
	}
}

// TestGIdxRoundTrip: the packed tensor (with g_idx under act-order)
// dequantizes to exactly the Q GPTQ returned.
func TestGIdxRoundTrip(t *testing.T) {
	L := genLayer(t, 11, 40, 192, 512, 3)
	for _, c := range []struct {
		name  string
		group int
		opt   Options
		gidx  bool
	}{
		{"int4", 32, Options{ActOrder: true}, true},
		{"int3_asym", 64, Options{ActOrder: true}, true},
		{"int4", 32, Options{ActOrder: true, StaticGroups: true}, false},
		{"mxfp4", 0, Options{ActOrder: true}, true},
		{"nvfp4", 0, Options{ActOrder: true, ClipRatios: DefaultClipRatios()}, true},
		{"nvfp4", 0, Options{}, false},
		{"fp8_e4m3_tensor", 0, Options{ClipRatios: DefaultClipRatios()}, false},
	} {
		f := lookup(t, c.name, c.group)
		p, res, err := QuantizeFormat(context.Background(), f32s(L.w), L.rows, L.cols, L.h, f, c.opt)
		if err != nil {
			t.Fatal(err)
		}
		if (p.GIdx != nil) != c.gidx {
			t.Errorf("%s %+v: GIdx present %v, want %v", c.name, c.opt, p.GIdx != nil, c.gidx)
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("%s: packed invalid: %v", c.name, err)
		}
		got := make([]float32, L.rows*L.cols)
		p.Dequantize(got)
		for i := range got {
			if got[i] != res.Q[i] {
				t.Fatalf("%s %+v: dequantized[%d,%d] = %v, GPTQ Q = %v", c.name, c.opt, i/L.cols, i%L.cols, got[i], res.Q[i])
			}
		}
		// Round trip through tensors as checkpoints store it.
		p2, err := quant.FromTensors("w", p.ToTensors("w", nil))
		if err != nil {
			t.Fatal(err)
		}
		p2.Dequantize(got)
		for i := range got {
			if got[i] != res.Q[i] {
				t.Fatalf("%s: after ToTensors/FromTensors [%d] = %v, want %v", c.name, i, got[i], res.Q[i])
			}
		}
		// The dead column quantizes to zero.
		for r := 0; r < L.rows; r++ {
			if res.Q[r*L.cols+3] != 0 {
				t.Fatalf("%s: dead column not zero at row %d: %v", c.name, r, res.Q[r*L.cols+3])
			}
		}
		if res.Dead != 1 {
			t.Errorf("dead columns %d, want 1", res.Dead)
		}
	}
}

// TestMarlinGridMatchesReference checks the quant-package INT4 grid (F32
// scale absmax/7, the testdata RTN convention) against the reference run
// with the same grid.
func TestMarlinGridMatchesReference(t *testing.T) {
	ref := loadRef(t)
	L := genLayer(t, refSeed, refRows, refCols, refN, refDead)
	f, err := lookup(t, "int4", 128).WithScale(quant.ScaleF32)
	if err != nil {
		t.Fatal(err)
	}
	for name, opt := range map[string]Options{
		"marlin_int4_g128":                 {},
		"marlin_int4_g128_actorder":        {ActOrder: true},
		"marlin_int4_g128_actorder_static": {ActOrder: true, StaticGroups: true},
	} {
		_, res, err := QuantizeFormat(context.Background(), f32s(L.w), refRows, refCols, L.h, f, opt)
		if err != nil {
			t.Fatal(err)
		}
		want := ref.Cases[name]
		t.Logf("%s: err %.6g (ref %.6g, %+.3f%%)", name, res.Err, want.Err, 100*(res.Err/want.Err-1))
		if math.Abs(res.Err/want.Err-1) > 0.01 {
			t.Errorf("%s: layer error %.6g vs reference %.6g: more than 1%% apart", name, res.Err, want.Err)
		}
	}
	base := rtnErr(t, L, f)
	want := ref.Cases["marlin_rtn_int4_g128"].Err
	if math.Abs(base/want-1) > 1e-4 {
		t.Errorf("RTN layer error %.8g vs reference RTN %.8g", base, want)
	}
}

func TestQuantizeErrors(t *testing.T) {
	L := genLayer(t, 3, 8, 32, 64, -1)
	g := refIntGrid{4, 16}
	ctx := context.Background()
	nanW := append([]float64(nil), L.w...)
	nanW[5] = math.NaN()
	nanH := append([]float64(nil), L.h...)
	nanH[9] = math.Inf(1)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	for _, c := range []struct {
		name string
		run  func() error
	}{
		{"short weight", func() error { _, err := Quantize(ctx, L.w[:10], 8, 32, L.h, g, Options{}); return err }},
		{"short hessian", func() error { _, err := Quantize(ctx, L.w, 8, 32, L.h[:5], g, Options{}); return err }},
		{"nan weight", func() error { _, err := Quantize(ctx, nanW, 8, 32, L.h, g, Options{}); return err }},
		{"inf hessian", func() error { _, err := Quantize(ctx, L.w, 8, 32, nanH, g, Options{}); return err }},
		{"nil grid", func() error { _, err := Quantize(ctx, L.w, 8, 32, L.h, nil, Options{}); return err }},
		{"negative damp", func() error { _, err := Quantize(ctx, L.w, 8, 32, L.h, g, Options{PercDamp: -1}); return err }},
		{"bad clip", func() error {
			_, err := Quantize(ctx, L.w, 8, 32, L.h, g, Options{ClipRatios: []float64{1.5}})
			return err
		}},
		{"cancelled", func() error { _, err := Quantize(cancelled, L.w, 8, 32, L.h, g, Options{}); return err }},
		{"not PD", func() error {
			h := make([]float64, 32*32)
			for i := range h {
				h[i] = -1
			}
			_, err := Quantize(ctx, L.w, 8, 32, h, g, Options{})
			return err
		}},
	} {
		if err := c.run(); err == nil {
			t.Errorf("%s: no error", c.name)
		} else if c.name == "cancelled" && !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled: %v does not wrap context.Canceled", err)
		}
	}
}

// TestScaleSearch: with clip-ratio search the H-weighted rounding error per
// group can only go down at RTN level; on GPTQ it is logged (the search is
// greedy per group, so it is not a guarantee there).
func TestScaleSearch(t *testing.T) {
	L := genLayer(t, 5, 64, 256, 1024, -1)
	for _, name := range []string{"int3", "mxfp4", "nvfp4"} {
		f := lookup(t, name, 0)
		_, plain, err := QuantizeFormat(context.Background(), f32s(L.w), L.rows, L.cols, L.h, f, Options{})
		if err != nil {
			t.Fatal(err)
		}
		_, search, err := QuantizeFormat(context.Background(), f32s(L.w), L.rows, L.cols, L.h, f, Options{ClipRatios: DefaultClipRatios()})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: gptq %.4f, gptq+search %.4f", name, plain.Err, search.Err)
		if search.Err > 1.05*plain.Err {
			t.Errorf("%s: scale search made GPTQ worse: %.4f vs %.4f", name, search.Err, plain.Err)
		}
	}
}

// TestMRGPTQ: on a layer with outlier input channels and heavy-tailed
// weights, MR-GPTQ (rotation + GPTQ + scale search) beats plain GPTQ and
// RTN on the FP4 grids, and the un-rotated weight's error (measured with
// the original H) equals the rotated-basis error.
func TestMRGPTQ(t *testing.T) {
	L := genLayer(t, 21, 64, 256, 1024, -1)
	for _, name := range []string{"mxfp4", "nvfp4"} {
		f := lookup(t, name, 0)
		base := rtnErr(t, L, f)
		_, plain, err := QuantizeFormat(context.Background(), f32s(L.w), L.rows, L.cols, L.h, f, Options{})
		if err != nil {
			t.Fatal(err)
		}
		mr, err := QuantizeMR(context.Background(), f32s(L.w), L.rows, L.cols, L.h, f, 0, MROptions())
		if err != nil {
			t.Fatal(err)
		}
		q, err := mr.Unrotate()
		if err != nil {
			t.Fatal(err)
		}
		orig, err := LayerError(L.w, f64s(q), L.rows, L.cols, L.h)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: rtn %.4f gptq %.4f mr-gptq %.4f (original basis %.4f)", name, base, plain.Err, mr.Result.Err, orig)
		if d := orig/mr.Result.Err - 1; d > 1e-3 || d < -1e-3 {
			t.Errorf("%s: error in the original basis %.6g vs rotated %.6g", name, orig, mr.Result.Err)
		}
		if !(mr.Result.Err < plain.Err && plain.Err < base) {
			t.Errorf("%s: want mr-gptq < gptq < rtn, got %.4f, %.4f, %.4f", name, mr.Result.Err, plain.Err, base)
		}
		if mr.Packed.GIdx != nil {
			t.Errorf("%s: MR-GPTQ result needs g_idx", name)
		}
	}
}

// TestHessianWeightedSearch: weighing the static-group scale search by
// diag(H) lowers the layer error on layers with outlier input channels.
func TestHessianWeightedSearch(t *testing.T) {
	L := genLayer(t, 22, 64, 512, 2048, -1)
	for _, name := range []string{"int4", "nvfp4"} {
		f := lookup(t, name, 0)
		var errs [2]float64
		for i, hw := range []bool{false, true} {
			o := Options{ActOrder: true, StaticGroups: true, ClipRatios: DefaultClipRatios(), HessianWeightedSearch: hw}
			_, r, err := QuantizeFormat(context.Background(), f32s(L.w), L.rows, L.cols, L.h, f, o)
			if err != nil {
				t.Fatal(err)
			}
			errs[i] = r.Err
		}
		t.Logf("%s: plain search %.4f, diag(H)-weighted %.4f", name, errs[0], errs[1])
		if !(errs[1] < errs[0]) {
			t.Errorf("%s: weighted search %.4f not below plain %.4f", name, errs[1], errs[0])
		}
	}
}

// plainGrid hides a grid's optional interfaces (ClipInvariant).
type plainGrid struct{ Grid }

// TestClipInvariantSameResult: on E8M0 (MXFP4) and shared-scale grids,
// trying one clip ratio below 1 instead of the whole list changes nothing;
// on grids whose scale follows the clip (NVFP4, INT4) the list is kept.
func TestClipInvariantSameResult(t *testing.T) {
	L := genLayer(t, 5, 16, 128, 512, -1)
	w := f32s(L.w)
	clips := DefaultClipRatios()
	for _, tc := range []struct {
		format    string
		invariant bool
	}{
		{"mxfp4", true},
		{"nvfp4", false},
		{"int4", false},
	} {
		t.Run(tc.format, func(t *testing.T) {
			g, err := NewFormatGrid(lookup(t, tc.format, 0), w, L.cols)
			if err != nil {
				t.Fatal(err)
			}
			if g.ClipInvariant() != tc.invariant {
				t.Fatalf("ClipInvariant() = %v, want %v", g.ClipInvariant(), tc.invariant)
			}
			opt := Options{ActOrder: true, ClipRatios: clips}
			got, err := Quantize(context.Background(), L.w, L.rows, L.cols, L.h, g, opt)
			if err != nil {
				t.Fatal(err)
			}
			want, err := Quantize(context.Background(), L.w, L.rows, L.cols, L.h, plainGrid{g}, opt)
			if err != nil {
				t.Fatal(err)
			}
			for i := range want.Codes {
				if got.Codes[i] != want.Codes[i] {
					t.Fatalf("code %d: %d with the reduced clip list, %d with all %d ratios", i, got.Codes[i], want.Codes[i], len(clips))
				}
			}
			for i := range want.Scales {
				if got.Scales[i] != want.Scales[i] {
					t.Fatalf("scale %d differs", i)
				}
			}
		})
	}
	if got := distinctClips([]float64{1, 0.95, 0.9, 1, 0.8}); len(got) != 3 || got[0] != 1 || got[1] != 0.95 || got[2] != 1 {
		t.Errorf("distinctClips = %v", got)
	}
}

// TestQuantizeSameOnAnyCoreCount: row chunks run concurrently; the codes,
// scales and loss do not depend on how many run at once.
func TestQuantizeSameOnAnyCoreCount(t *testing.T) {
	L := genLayer(t, 9, 3*gptqRowChunk+5, 256, 1024, 3)
	g := refIntGrid{4, 64}
	opt := Options{ActOrder: true, ClipRatios: []float64{1, 0.9}}
	var results []*Result
	for _, procs := range []int{1, 3} {
		prev := runtime.GOMAXPROCS(procs)
		res, err := Quantize(context.Background(), L.w, L.rows, L.cols, L.h, g, opt)
		runtime.GOMAXPROCS(prev)
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, res)
	}
	a, b := results[0], results[1]
	if a.Loss != b.Loss || a.Err != b.Err {
		t.Errorf("loss %v / %v, error %v / %v on 1 and 3 cores", a.Loss, b.Loss, a.Err, b.Err)
	}
	for i := range a.Codes {
		if a.Codes[i] != b.Codes[i] || a.Q[i] != b.Q[i] {
			t.Fatalf("entry %d differs between 1 and 3 cores", i)
		}
	}
}

// TestQuantizeSameForAnySlab: quantize works on slabs of rows; on every
// kind of grid (dynamic and static groups, scale search, tensor scale,
// GGML whole-row and block-by-block fits, refit) the codes, scales, values,
// loss and error do not depend on the slab height, and Err is LayerError's.
func TestQuantizeSameForAnySlab(t *testing.T) {
	L := genLayer(t, 11, 3*gptqRowChunk+5, 256, 1024, 3)
	w32 := make([]float32, len(L.w))
	for i, v := range L.w {
		w32[i] = float32(v)
	}
	cases := []struct {
		format string
		opt    Options
	}{
		{"int4", Options{}},
		{"int4", Options{ActOrder: true, ClipRatios: []float64{1, 0.9}}},
		{"int4", Options{ActOrder: true, StaticGroups: true, ClipRatios: []float64{1, 0.9, 0.8}, HessianWeightedSearch: true}},
		{"mxfp4", MROptions()},
		{"nvfp4", Options{ActOrder: true}},
		{"q4_k", Options{ActOrder: true}},
		{"q4_k", Options{}},
		{"q3_k", Options{Refit: true}},
		{"q6_k", Options{BlockActOrder: true}},
		{"iq4_xs", Options{ActOrder: true, PercDamp: 0.1}},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s/%+v", c.format, c.opt), func(t *testing.T) {
			f, err := quant.Lookup(c.format)
			if err != nil {
				t.Fatal(err)
			}
			var ref *quant.Packed
			var refRes *Result
			// One chunk a slab, two, and the whole tensor at once.
			for _, slab := range []int{gptqRowChunk * L.cols, 2 * gptqRowChunk * L.cols, L.rows * L.cols} {
				opt := c.opt
				opt.slabWeights = slab
				p, res, err := QuantizeFormat(context.Background(), w32, L.rows, L.cols, L.h, f, opt)
				if err != nil {
					t.Fatal(err)
				}
				if ref == nil {
					ref, refRes = p, res
					e, err := layerError(w32, res.Q, L.rows, L.cols, L.h)
					if err != nil {
						t.Fatal(err)
					}
					if e != res.Err {
						t.Errorf("Err %v, LayerError %v", res.Err, e)
					}
					continue
				}
				if !bytes.Equal(p.Codes, ref.Codes) || !bytes.Equal(p.Scales, ref.Scales) || !bytes.Equal(p.Zeros, ref.Zeros) ||
					!slices.Equal(p.GIdx, ref.GIdx) || p.TensorScale != ref.TensorScale {
					t.Errorf("slab of %d weights: packed tensor differs", slab)
				}
				if !slices.Equal(res.Q, refRes.Q) || !bytes.Equal(res.Codes, refRes.Codes) || res.Loss != refRes.Loss || res.Err != refRes.Err || res.Refit != refRes.Refit {
					t.Errorf("slab of %d weights: result differs (loss %v/%v, err %v/%v)", slab, res.Loss, refRes.Loss, res.Err, refRes.Err)
				}
			}
		})
	}
}
