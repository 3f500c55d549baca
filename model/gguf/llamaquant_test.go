package gguf

import (
	"math"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/internal/assets"
)

// TestReadLlamaQuantized quantizes the reference F16 GGUF with llama.cpp's
// llama-quantize and reads every recipe's output: every tensor must
// dequantize, and stay close to the F16 original (a layout mistake gives
// errors near 100%). Bounds are about twice the errors observed.
func TestReadLlamaQuantized(t *testing.T) {
	src := assets.Shared(t, "gguf", "qwen3-nano-f16.gguf")
	out, err := exec.Command(filepath.Join(assets.Shared(t, "..", "tools", "llama.cpp", "bin.sh"))).Output()
	if err != nil {
		t.Skipf("llama.cpp tools unavailable: %v", err)
	}
	quantize := filepath.Join(strings.TrimSpace(string(out)), "llama-quantize")
	ref, err := Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	bound := map[GGMLType]float64{TypeQ8_0: 0.011, TypeQ4_0: 0.18, TypeQ4_K: 0.15, TypeQ5_K: 0.08, TypeQ6_K: 0.04,
		TypeQ3_K: 0.31, TypeQ2_K: 0.6, TypeMXFP4: 0.3, TypeF16: 0, TypeF32: 0}
	for _, recipe := range []string{"Q8_0", "Q4_0", "Q4_K_M", "Q3_K_M", "Q2_K", "MXFP4_MOE"} {
		t.Run(recipe, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), recipe+".gguf")
			if b, err := exec.Command(quantize, src, dst, recipe).CombinedOutput(); err != nil {
				t.Skipf("llama-quantize %s failed: %v\n%s", recipe, err, b)
			}
			f, err := Open(dst)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			worst := map[GGMLType]float64{}
			for _, ti := range f.Tensors {
				got, err := f.Float32(ti.Name)
				if err != nil {
					t.Fatalf("%s (%s): %v", ti.Name, ti.Type, err)
				}
				want, err := ref.Float32(ti.Name)
				if err != nil || len(want) != len(got) {
					t.Fatalf("%s: reference %v", ti.Name, err)
				}
				var num, den float64
				for i := range got {
					d := float64(got[i]) - float64(want[i])
					num += d * d
					den += float64(want[i]) * float64(want[i])
				}
				rel := math.Sqrt(num / den)
				worst[ti.Type] = math.Max(worst[ti.Type], rel)
				b, ok := bound[ti.Type]
				if !ok || rel > b {
					t.Errorf("%s (%s): relative RMS error %.4f (bound %v)", ti.Name, ti.Type, rel, b)
				}
			}
			t.Logf("%s: worst relative RMS error per type %v", recipe, worst)
		})
	}
}
