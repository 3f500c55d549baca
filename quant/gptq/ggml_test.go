package gptq

import (
	"context"
	"fmt"
	"testing"

	"github.com/marlin-llm/marlin/quant"
)

// TestGGMLGrids: for every GGML block format, GPTQ on the type's own grid
// (scales fitted with the Hessian diagonal as importance, then error
// feedback; without act-order, with it, and with act-order inside each
// block) has a layer error well below llama-quantize's plain
// quantizer (RTN) and below the importance-weighted quantizer alone, and
// the packed blocks dequantize (llama.cpp's dequantize_row_*, model/gguf)
// to exactly the Q GPTQ returned.
func TestGGMLGrids(t *testing.T) {
	L := genLayer(t, 5, 64, 512, 1024, 9)
	for _, name := range []string{"q8_0", "q6_k", "q5_k", "q4_k", "q5_0", "q5_1", "q4_0", "q3_k", "q2_k", "iq4_nl", "iq4_xs"} {
		f, err := quant.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		rtn := rtnErr(t, L, f)
		ip, err := ImportanceRTN(context.Background(), f32s(L.w), L.rows, L.cols, L.h, f)
		if err != nil {
			t.Fatal(err)
		}
		iq := make([]float32, L.rows*L.cols)
		ip.Dequantize(iq)
		imp, err := LayerError(L.w, f64s(iq), L.rows, L.cols, L.h)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range []Options{{}, {ActOrder: true}, {BlockActOrder: true}} {
			act := fmt.Sprintf("actorder=%v block=%v", o.ActOrder, o.BlockActOrder)
			p, res, err := QuantizeFormat(context.Background(), f32s(L.w), L.rows, L.cols, L.h, f, o)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%-7s %s rtn %10.5f imatrix-rtn %10.5f gptq %10.5f (%.2fx rtn)", name, act, rtn, imp, res.Err, res.Err/rtn)
			if !(res.Err < 0.85*rtn) || !(res.Err < imp) {
				t.Errorf("%s %s: GPTQ error %.5f not below 0.85 × RTN %.5f and importance RTN %.5f", name, act, res.Err, rtn, imp)
			}
			got := make([]float32, L.rows*L.cols)
			p.Dequantize(got)
			for i := range got {
				if got[i] != res.Q[i] {
					t.Fatalf("%s: element %d dequantizes to %v, GPTQ's Q is %v", name, i, got[i], res.Q[i])
				}
			}
		}
	}
}

// TestGGMLRefit: re-solving the fp16 block scales after GPTQ never raises
// a row's error under GPTQ's damped Hessian, so that layer error with
// Refit is at most the one without, for every GGML format with and
// without act-order; the packed blocks still decode to exactly the Q
// returned.
func TestGGMLRefit(t *testing.T) {
	L := genLayer(t, 5, 64, 512, 1024, 9)
	for _, name := range []string{"q8_0", "q6_k", "q5_k", "q4_k", "q5_0", "q5_1", "q4_0", "q3_k", "q2_k", "iq4_nl", "iq4_xs"} {
		f, err := quant.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, act := range []bool{false, true} {
			_, plain, err := QuantizeFormat(context.Background(), f32s(L.w), L.rows, L.cols, L.h, f, Options{ActOrder: act})
			if err != nil {
				t.Fatal(err)
			}
			p, res, err := QuantizeFormat(context.Background(), f32s(L.w), L.rows, L.cols, L.h, f, Options{ActOrder: act, Refit: true})
			if err != nil {
				t.Fatal(err)
			}
			hd := append([]float64(nil), L.h...)
			for c := 0; c < L.cols; c++ {
				hd[c*L.cols+c] += res.Damp
			}
			before, err := LayerError(L.w, f64s(plain.Q), L.rows, L.cols, hd)
			if err != nil {
				t.Fatal(err)
			}
			after, err := LayerError(L.w, f64s(res.Q), L.rows, L.cols, hd)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%-7s actorder=%-5v damped error gptq %10.5f refit %10.5f (%d of %d rows); undamped %10.5f → %10.5f", name, act, before, after, res.Refit, L.rows, plain.Err, res.Err)
			if after > before*(1+1e-9) || res.Refit == 0 {
				t.Errorf("%s actorder=%v: refit took the damped layer error %.6f → %.6f (%d rows)", name, act, before, after, res.Refit)
			}
			got := make([]float32, L.rows*L.cols)
			p.Dequantize(got)
			for i := range got {
				if got[i] != res.Q[i] {
					t.Fatalf("%s: element %d dequantizes to %v, Q is %v", name, i, got[i], res.Q[i])
				}
			}
		}
	}
}
