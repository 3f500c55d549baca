package stages

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/internal/assets"
	"github.com/marlin-llm/marlin/kernels"
	"github.com/marlin-llm/marlin/model/qmodel"
)

func packedNano(tb testing.TB) string {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), "packed")
	if err := qmodel.WriteRTN(context.Background(), assets.Model(tb, "qwen3-nano"), dir, "mxfp4"); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// TestMeasure checks the benchmark's shape: both models decode, every
// number is positive, and the table names them.
func TestMeasure(t *testing.T) {
	b, err := kernels.Open("cpu", kernels.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := Measure(context.Background(), b, packedNano(t), BenchOptions{Prompt: 8, Decode: 4, Repeats: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.E2E) != 2 || len(r.Kernels) != 4 {
		t.Fatalf("%d e2e and %d kernel results, want 2 and 4", len(r.E2E), len(r.Kernels))
	}
	for _, e := range r.E2E {
		if !(e.PrefillTokS > 0 && e.DecodeTokS > 0 && e.WeightBytes > 0) {
			t.Errorf("%+v", e)
		}
	}
	if r.E2E[1].WeightBytes*3 > r.E2E[0].WeightBytes {
		t.Errorf("packed weights %d bytes vs f32 %d: not 4-bit", r.E2E[1].WeightBytes, r.E2E[0].WeightBytes)
	}
	var sb strings.Builder
	WriteBenchTable(&sb, r)
	if !strings.Contains(sb.String(), "mxfp4 packed") || !strings.Contains(sb.String(), "decode tok/s") {
		t.Errorf("table:\n%s", sb.String())
	}
}

// BenchmarkDecode times one KV-cached decode step of qwen3-nano from packed
// MXFP4 weights and from the dequantized F32 weights (64 cached tokens).
func BenchmarkDecode(b *testing.B) {
	dir := packedNano(b)
	be, err := kernels.Open("cpu", kernels.Options{})
	if err != nil {
		b.Fatal(err)
	}
	for _, v := range []struct {
		name string
		deq  bool
	}{{"f32", true}, {"mxfp4", false}} {
		b.Run(v.name, func(b *testing.B) {
			m, err := qmodel.Load(dir, qmodel.Options{Backend: be, Dequantize: v.deq})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			ctx := context.Background()
			c, err := m.NewCache(65)
			if err != nil {
				b.Fatal(err)
			}
			ids := make([]int32, 64)
			for i := range ids {
				ids[i] = int32(i * 31 % m.Vocab())
			}
			for b.Loop() {
				b.StopTimer()
				c.Reset()
				if _, err := m.Decode(ctx, c, ids); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if _, err := m.Decode(ctx, c, []int32{7}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tok/s")
		})
	}
}

// TestMeasureSkipsLargeF32 checks the F32 comparison is skipped (and said
// so) when the dequantized model would exceed the limit.
func TestMeasureSkipsLargeF32(t *testing.T) {
	b, err := kernels.Open("cpu", kernels.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := Measure(context.Background(), b, packedNano(t), BenchOptions{Prompt: 4, Decode: 2, Repeats: 1, MaxF32Bytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.E2E) != 1 || r.E2E[0].Format != "mxfp4 packed" || !strings.Contains(r.Note, "F32 end-to-end comparison skipped") {
		t.Errorf("e2e %+v, note %q", r.E2E, r.Note)
	}
}
