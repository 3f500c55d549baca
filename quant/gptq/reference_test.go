package gptq

import (
	"compress/gzip"
	"context"
	"encoding/binary"
	"io"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/marlin-llm/marlin/internal/assets"
)

// Reference layer: 256 outputs × 512 inputs, 2048 tokens, column 7 dead.
const (
	refSeed = 20250923
	refRows = 256
	refCols = 512
	refN    = 2048
	refDead = 7
)

// TestWriteReferenceInputs writes the reference layer as .npy files for the
// PyTorch run of the original algorithm (testdata/ref_gptq.py). It only runs
// when MARLIN_GPTQ_REF_DIR names the output directory.
func TestWriteReferenceInputs(t *testing.T) {
	dir := os.Getenv("MARLIN_GPTQ_REF_DIR")
	if dir == "" {
		t.Skip("set MARLIN_GPTQ_REF_DIR to write the reference inputs")
	}
	L := genLayer(t, refSeed, refRows, refCols, refN, refDead)
	if err := writeNPY(filepath.Join(dir, "W.npy"), L.w, refRows, refCols); err != nil {
		t.Fatal(err)
	}
	if err := writeNPY(filepath.Join(dir, "H.npy"), L.h, refCols, refCols); err != nil {
		t.Fatal(err)
	}
	t.Logf("W sha256 %s, H sha256 %s", digest32(L.w), digest32(L.h))
}

type refCase struct {
	Loss float64 `json:"loss"`
	Err  float64 `json:"err"`
}

type refFile struct {
	WSHA256 string             `json:"w_sha256"`
	HSHA256 string             `json:"h_sha256"`
	Cases   map[string]refCase `json:"cases"`
}

// TestMatchesReferenceGPTQ compares our layer error with the original
// algorithm run in PyTorch (F32 on an H100) on the same W and H.
func TestMatchesReferenceGPTQ(t *testing.T) {
	ref := loadRef(t)
	L := genLayer(t, refSeed, refRows, refCols, refN, refDead)
	if got := digest32(L.w); got != ref.WSHA256 {
		t.Fatalf("W digest %s, reference ran on %s", got, ref.WSHA256)
	}
	if got := digest32(L.h); got != ref.HSHA256 {
		t.Fatalf("H digest %s, reference ran on %s", got, ref.HSHA256)
	}
	cases := []struct {
		name string
		grid Grid
		opt  Options
	}{
		{"ref_int4_g128", refIntGrid{4, 128}, Options{}},
		{"ref_int4_g128_actorder", refIntGrid{4, 128}, Options{ActOrder: true}},
		{"ref_int4_g128_actorder_static", refIntGrid{4, 128}, Options{ActOrder: true, StaticGroups: true}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want, ok := ref.Cases[c.name]
			if !ok {
				t.Fatalf("no reference for %s", c.name)
			}
			res, err := Quantize(context.Background(), L.w, refRows, refCols, L.h, c.grid, c.opt)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: err %.6g (ref %.6g, %+.3f%%), loss %.6g (ref %.6g)", c.name, res.Err, want.Err,
				100*(res.Err/want.Err-1), res.Loss, want.Loss)
			if math.Abs(res.Err/want.Err-1) > 0.01 {
				t.Errorf("layer error %.6g differs from the reference %.6g by more than 1%%", res.Err, want.Err)
			}
			if math.Abs(res.Loss/want.Loss-1) > 0.01 {
				t.Errorf("GPTQ loss %.6g differs from the reference %.6g by more than 1%%", res.Loss, want.Loss)
			}
		})
	}
}

// TestMatchesReferenceQ compares our Q with the reference's Q on rows 0..15
// (GPTQ treats rows independently, so these rows are a complete check of
// their own). The reference runs in F32 and we in F64, so values may differ
// by an ulp of the scale; a code flip (a difference of a whole step) is
// allowed on at most 0.5% of the entries.
func TestMatchesReferenceQ(t *testing.T) {
	L := genLayer(t, refSeed, refRows, refCols, refN, refDead)
	for _, c := range []struct {
		name string
		opt  Options
	}{
		{"ref_int4_g128", Options{}},
		{"ref_int4_g128_actorder", Options{ActOrder: true}},
		{"ref_int4_g128_actorder_static", Options{ActOrder: true, StaticGroups: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			want := readGzF32(t, "testdata/"+c.name+"_Q_rows0-15.f32.gz")
			if len(want) != 16*refCols {
				t.Fatalf("reference has %d values, want %d", len(want), 16*refCols)
			}
			res, err := Quantize(context.Background(), L.w, refRows, refCols, L.h, refIntGrid{4, 128}, c.opt)
			if err != nil {
				t.Fatal(err)
			}
			flips := 0
			for i, v := range want {
				if math.Abs(float64(v-res.Q[i])) > 1e-6*math.Max(1, math.Abs(float64(v))) {
					flips++
				}
			}
			t.Logf("%s: %d of %d entries differ by more than rounding", c.name, flips, len(want))
			if flips > len(want)/200 {
				t.Errorf("%d of %d entries differ from the reference Q", flips, len(want))
			}
		})
	}
}

func readGzF32(t *testing.T, path string) []float32 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

func loadRef(t *testing.T) *refFile {
	t.Helper()
	var ref refFile
	assets.ReadJSON(t, "testdata/reference.json", &ref)
	return &ref
}
