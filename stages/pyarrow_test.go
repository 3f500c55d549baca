package stages

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"testing"

	"github.com/marlin-llm/marlin/tensor"
	"github.com/marlin-llm/marlin/tensor/arrowio"
)

// TestPyarrowReference checks the blob pyarrow opened on the device machine
// (testdata/pyarrow_check.json) against the code: the synthetic stage must
// still produce a byte-identical blob, and the Go statistics must agree
// with numpy's over the bytes pyarrow decoded.
func TestPyarrowReference(t *testing.T) {
	raw, err := os.ReadFile("testdata/pyarrow_check.json")
	if err != nil {
		t.Fatal(err)
	}
	var ref struct {
		BlobSHA256  string  `json:"blob_sha256"`
		BlobSize    int     `json:"blob_size"`
		Seed        uint64  `json:"seed"`
		Std         float64 `json:"std"`
		Name, DType string
		Shape       []int
		NumpyMean   float64 `json:"numpy_mean"`
		NumpyStd    float64 `json:"numpy_std"`
		NumpyAbsmax float64 `json:"numpy_absmax"`
	}
	if err := json.Unmarshal(raw, &ref); err != nil {
		t.Fatal(err)
	}
	dt, err := tensor.ParseDType(ref.DType)
	if err != nil {
		t.Fatal(err)
	}
	x, err := SyntheticTensorData(context.Background(), ref.Name, ref.Shape, dt, ref.Seed, ref.Std)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := arrowio.Write(&buf, []*tensor.Tensor{x}, nil); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	if got := hex.EncodeToString(sum[:]); got != ref.BlobSHA256 || buf.Len() != ref.BlobSize {
		t.Errorf("blob sha256 %s (%d bytes), pyarrow read %s (%d bytes)", got, buf.Len(), ref.BlobSHA256, ref.BlobSize)
	}
	st, err := TensorStats(context.Background(), x)
	if err != nil {
		t.Fatal(err)
	}
	rel := func(a, b float64) float64 { return math.Abs(a-b) / math.Max(math.Abs(b), 1e-300) }
	if rel(st.Mean, ref.NumpyMean) > 1e-9 || rel(st.Std, ref.NumpyStd) > 1e-12 || st.AbsMax != ref.NumpyAbsmax {
		t.Errorf("Go stats mean %.17g std %.17g absmax %.17g; numpy %.17g %.17g %.17g",
			st.Mean, st.Std, st.AbsMax, ref.NumpyMean, ref.NumpyStd, ref.NumpyAbsmax)
	}
}
