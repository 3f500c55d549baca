package quant

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/internal/assets"
	"github.com/marlin-llm/marlin/model/safetensors"
	"github.com/marlin-llm/marlin/tensor"
)

// readmeRTN maps the golden RTN settings of shared/testdata/README.md to
// formats: integer scales are F32 there (absmax/(2^(b-1)-1) "in F32").
func readmeRTN(t *testing.T, name string) Format {
	t.Helper()
	spec := map[string]struct {
		f string
		g int
	}{
		"rtn_int4_g128_sym": {"int4", 128},
		"rtn_int3_g128_sym": {"int3", 128},
		"rtn_int2_g64_sym":  {"int2", 64},
		"rtn_mxfp4":         {"mxfp4", 32},
		"rtn_nvfp4":         {"nvfp4", 16},
	}[name]
	f, err := Lookup(spec.f)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if f.Elem == ElemInt {
		if f, err = f.WithScale(ScaleF32); err != nil {
			t.Fatal(err)
		}
	}
	if f, err = f.WithGroupSize(spec.g); err != nil {
		t.Fatal(err)
	}
	return f
}

// goldenSelection: every 2-D model.layers.* weight except MoE routers.
func goldenSelection(ck *safetensors.Checkpoint) []string {
	var names []string
	for _, n := range ck.Names() {
		info, _ := ck.Info(n)
		if strings.HasPrefix(n, "model.layers.") && len(info.Shape) == 2 && !strings.HasSuffix(n, "mlp.gate.weight") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

func openModel(t *testing.T, name string) *safetensors.Checkpoint {
	t.Helper()
	ck, err := safetensors.Open(assets.Model(t, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ck.Close() })
	return ck
}

func weightF32(t *testing.T, w *tensor.Tensor) []float32 {
	t.Helper()
	if w.DType != tensor.BF16 {
		t.Fatalf("%s: dtype %s, want BF16", w.Name, w.DType)
	}
	out := make([]float32, w.NumElements())
	for i := range out {
		out[i] = DecodeBF16(binary.LittleEndian.Uint16(w.Data[2*i:]))
	}
	return out
}

// TestRTNMatchesReference compares our RTN's dequantized weights with the
// reference computed by testdata/xcheck.py (CPU torch, float32) from the
// README definitions: the SHA-256 of the float32 dequantized bytes must be
// equal (bit-exact), and as a readable diagnostic the float64 sums agree
// to 1e-9 relative (summation order differs).
func TestRTNMatchesReference(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "rtn_reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref struct {
		Models map[string]map[string]map[string]struct {
			Sum    float64 `json:"sum"`
			AbsSum float64 `json:"abs_sum"`
			SHA256 string  `json:"sha256"`
		} `json:"models"`
	}
	if err := json.Unmarshal(raw, &ref); err != nil {
		t.Fatal(err)
	}
	models := []string{"qwen3-nano", "qwen3moe-nano", "glm47-nano"}
	for _, m := range models {
		tensors := ref.Models[m]
		ck := openModel(t, m)
		sel := goldenSelection(ck)
		if len(sel) != len(tensors) || len(sel) == 0 {
			t.Fatalf("%s: %d selected tensors, reference has %d", m, len(sel), len(tensors))
		}
		for _, name := range sel {
			w, err := ck.Tensor(name)
			if err != nil {
				t.Fatal(err)
			}
			x := weightF32(t, w)
			for setting, want := range tensors[name] {
				f := readmeRTN(t, setting)
				p, err := QuantizeTensor(context.Background(), w, f, nil)
				if err != nil {
					t.Fatal(err)
				}
				deq := make([]float32, p.Rows*p.Cols)
				p.Dequantize(deq)
				var sum, abs float64
				for _, v := range deq {
					sum += float64(v)
					abs += math.Abs(float64(v))
				}
				if f.Elem == ElemInt {
					// A packed integer code has no −0; torch's q·scale keeps
					// the sign of w where w rounds to 0. Restore it so that
					// the bytes can be compared (values are equal either way).
					for i, v := range deq {
						if v == 0 && math.Signbit(float64(x[i])) {
							deq[i] = float32(math.Copysign(0, -1))
						}
					}
				}
				h := sha256.Sum256(f32bytes(deq))
				if got := hex.EncodeToString(h[:]); got != want.SHA256 {
					t.Errorf("%s %s %s: dequantized weights differ from reference (sum %.9g vs %.9g, abs %.9g vs %.9g)", m, name, setting, sum, want.Sum, abs, want.AbsSum)
				}
				if math.Abs(sum-want.Sum) > 1e-9*want.AbsSum || math.Abs(abs-want.AbsSum) > 1e-9*want.AbsSum {
					t.Errorf("%s %s %s: sum %.12g abs %.12g, reference %.12g %.12g", m, name, setting, sum, abs, want.Sum, want.AbsSum)
				}
			}
		}
	}
}

// TestRTNQwen3NanoCosine quantizes every golden-selected weight of
// qwen3-nano with MXFP4, FP4-g128 and INT4-g128 (FP16 scales), logs the
// per-tensor cosine and the average, and requires cosine >= 0.99 for each.
func TestRTNQwen3NanoCosine(t *testing.T) {
	ck := openModel(t, "qwen3-nano")
	sel := goldenSelection(ck)
	for _, fname := range []string{"mxfp4", "fp4", "int4"} {
		f, err := Lookup(fname)
		if err != nil {
			t.Fatal(err)
		}
		var sum float64
		minCos := 1.0
		for _, name := range sel {
			w, err := ck.Tensor(name)
			if err != nil {
				t.Fatal(err)
			}
			p, err := QuantizeTensor(context.Background(), w, f, nil)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := Measure(name, weightF32(t, w), p)
			if err != nil {
				t.Fatal(err)
			}
			t.Log(rep)
			sum += rep.Cosine
			minCos = math.Min(minCos, rep.Cosine)
			if rep.Cosine < 0.99 {
				t.Errorf("%s %s: cosine %.5f < 0.99", fname, name, rep.Cosine)
			}
		}
		t.Logf("%s: average cosine over %d tensors %.6f (min %.6f)", fname, len(sel), sum/float64(len(sel)), minCos)
	}
}
