package safetensors

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/marlin-llm/marlin/internal/assets"
	"github.com/marlin-llm/marlin/tensor"
)

type wantTensor struct {
	DType  string  `json:"dtype"`
	Shape  []int   `json:"shape"`
	Sum    float64 `json:"sum"`
	AbsSum float64 `json:"abs_sum"`
}

var torchDType = map[string]tensor.DType{
	"bfloat16": tensor.BF16, "float16": tensor.F16, "float32": tensor.F32,
}

func relClose(a, b, tol float64) bool {
	return math.Abs(a-b) <= tol*math.Max(math.Abs(b), 1e-300) || a == b
}

// TestSharedModels reads every tensor of the three nano models and compares
// dtype, shape, sum and abs-sum with tensors.json (computed by PyTorch).
func TestSharedModels(t *testing.T) {
	for _, model := range []string{"qwen3-nano", "qwen3moe-nano", "glm47-nano"} {
		t.Run(model, func(t *testing.T) {
			dir := assets.Model(t, model)
			var want map[string]wantTensor
			assets.ReadJSON(t, filepath.Join(dir, "tensors.json"), &want)
			c, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if got := len(c.Names()); got != len(want) {
				t.Errorf("%d tensors, tensors.json has %d", got, len(want))
			}
			for name, w := range want {
				tt, err := c.Tensor(name)
				if err != nil {
					t.Errorf("%s: %v", name, err)
					continue
				}
				if wd, ok := torchDType[w.DType]; !ok || wd != tt.DType {
					t.Errorf("%s: dtype %s, want %s", name, tt.DType, w.DType)
				}
				if len(tt.Shape) != len(w.Shape) {
					t.Errorf("%s: shape %v, want %v", name, tt.Shape, w.Shape)
				} else {
					for i := range w.Shape {
						if tt.Shape[i] != w.Shape[i] {
							t.Errorf("%s: shape %v, want %v", name, tt.Shape, w.Shape)
							break
						}
					}
				}
				v, err := tensor.ToFloat32(tt)
				if err != nil {
					t.Errorf("%s: %v", name, err)
					continue
				}
				var s, as float64
				for _, x := range v {
					s += float64(x)
					as += math.Abs(float64(x))
				}
				if !relClose(s, w.Sum, 1e-9) || !relClose(as, w.AbsSum, 1e-9) {
					t.Errorf("%s: sum %.17g abs %.17g, want %.17g %.17g", name, s, as, w.Sum, w.AbsSum)
				}
			}
		})
	}
}
