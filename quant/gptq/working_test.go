package gptq

import (
	"context"
	"fmt"
	"testing"

	"github.com/marlin-llm/marlin/internal/heappeak"
	"github.com/marlin-llm/marlin/quant"
)

// TestWorkingBytesBoundsHeap: the heap QuantizeFormat holds at its peak
// (sampled with the collector running after every 2% of growth), with the
// float64 Hessian the caller passes, stays within WorkingBytes, the figure
// memory estimates add per projection. The Hessian's copies dominate at
// these widths: the test fails if quantize copies it once more than
// WorkingBytes says.
func TestWorkingBytesBoundsHeap(t *testing.T) {
	if testing.Short() {
		t.Skip("samples the heap for a few seconds")
	}
	for _, tc := range []struct {
		format     string
		rows, cols int
		opt        Options
	}{
		{"mxfp4", 64, 2048, MROptions()},
		{"int4", 64, 2048, Options{ActOrder: true}},
		{"q4_k", 64, 2048, Options{}},
	} {
		t.Run(fmt.Sprintf("%s/%dx%d", tc.format, tc.rows, tc.cols), func(t *testing.T) {
			L := genLayer(t, 3, tc.rows, tc.cols, 256, 2)
			w32 := make([]float32, len(L.w))
			for i, v := range L.w {
				w32[i] = float32(v)
			}
			f, err := quant.Lookup(tc.format)
			if err != nil {
				t.Fatal(err)
			}
			L.w = nil
			var qerr error
			used := heappeak.Of(func() {
				_, _, qerr = QuantizeFormat(context.Background(), w32, L.rows, L.cols, L.h, f, tc.opt)
			})
			if qerr != nil {
				t.Fatal(qerr)
			}
			used += int64(8 * len(L.h)) // the caller's Hessian
			est := WorkingBytes(tc.rows, tc.cols, f.Group(tc.cols))
			t.Logf("peak heap %.1f MiB (with the caller's Hessian), WorkingBytes %.1f MiB", float64(used)/(1<<20), float64(est)/(1<<20))
			if used > est {
				t.Errorf("peak heap %d bytes over WorkingBytes %d", used, est)
			}
		})
	}
}
