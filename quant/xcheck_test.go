package quant

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// Cross-check against PyTorch (see testdata/xcheck.py). The inputs are
// generated here from fixed seeds; MARLIN_WRITE_XCHECK=dir writes them as
// little-endian float32 files for the script, which ran once on the device
// machine (CPU torch) and produced the SHA-256 digests in
// testdata/xcheck.json. The test regenerates the inputs, checks their digest
// (so a generator drift is told apart from a codec mismatch) and compares
// our encodings' digests with torch's.

const xcheckN = 1_000_000

// xcheckInputs returns the input vector of one cross-check family.
func xcheckInputs(kind string) []float32 {
	seed := map[string]uint64{"fp8": 8, "e2m1": 4, "mxfp4": 32, "nvfp4": 16}[kind]
	r := rand.New(rand.NewPCG(seed, 0x6d61726c696e))
	x := make([]float32, xcheckN)
	sign := func() float32 {
		if r.IntN(2) == 0 {
			return 1
		}
		return -1
	}
	nudge := func(v float32) float32 {
		switch r.IntN(3) {
		case 0:
			return math.Nextafter32(v, float32(math.Inf(1)))
		case 1:
			return math.Nextafter32(v, float32(math.Inf(-1)))
		}
		return v
	}
	logUniform := func(lo, hi float64) float32 {
		return sign() * float32(math.Exp2(lo+(hi-lo)*r.Float64()))
	}
	midpoint := func(tab *[256]float32, maxCode int) float32 {
		k := r.IntN(maxCode)
		return sign() * nudge((tab[k]+tab[k+1])/2)
	}
	switch kind {
	case "fp8":
		for i := range x {
			switch i % 4 {
			case 0:
				for {
					b := r.Uint32()
					if b&0x7fffffff <= 0x7f800000 { // finite or ±Inf, no NaN
						x[i] = math.Float32frombits(b)
						break
					}
				}
			case 1:
				x[i] = logUniform(-24, 18)
			case 2:
				x[i] = midpoint(&E4M3Values, 0x7e)
			case 3:
				x[i] = midpoint(&E5M2Values, 0x7b)
			}
		}
	case "e2m1":
		for i := range x {
			switch i % 4 {
			case 0:
				x[i] = float32(16*r.Float64() - 8)
			case 1:
				x[i] = float32(r.IntN(65)-32) * 0.25
			case 2:
				x[i] = nudge(float32(r.IntN(65)-32) * 0.25)
			case 3:
				x[i] = logUniform(-10, 10)
			}
		}
	case "mxfp4":
		for b := 0; b < xcheckN/32; b++ {
			blk := x[b*32 : b*32+32]
			e := r.IntN(61) - 30
			switch b % 8 {
			case 0: // all zero
			case 1, 6, 7:
				s := math.Exp2(float64(e))
				if b%8 != 1 {
					s = 0.02
				}
				for i := range blk {
					blk[i] = float32(r.NormFloat64() * s)
				}
			case 2: // grid values of the block scale: exact codes, power-of-two amax
				for i := range blk {
					blk[i] = sign() * E2M1Values[r.IntN(8)] * float32(math.Exp2(float64(e)))
				}
			case 3: // halfway cases between grid points (and neighbours)
				for i := range blk {
					blk[i] = nudge(float32(r.IntN(49)-24) * 0.25 * float32(math.Exp2(float64(e))))
				}
			case 4: // float32 subnormals: scale clamps to 2^-127
				for i := range blk {
					blk[i] = float32(r.NormFloat64() * 1e-39)
				}
			case 5: // near the float32 top: scale exponent up to 125
				for i := range blk {
					blk[i] = float32(r.NormFloat64() * math.Exp2(float64(100+r.IntN(26))))
				}
			}
		}
	case "nvfp4":
		const cols = 1600
		for row := 0; row < xcheckN/cols; row++ {
			rs := math.Exp2(float64(r.IntN(11) - 8))
			for b := 0; b < cols/16; b++ {
				blk := x[row*cols+b*16 : row*cols+b*16+16]
				s := rs * 0.02
				switch r.IntN(16) {
				case 0:
					continue // zero block
				case 1:
					s *= math.Exp2(-float64(r.IntN(20))) // tiny blocks: E4M3 subnormal or zero scale
				}
				for i := range blk {
					blk[i] = float32(r.NormFloat64() * s)
				}
			}
		}
	}
	return x
}

func f32bytes(x []float32) []byte {
	b := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

func digest(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// xcheckOutputs computes our encodings, named as the script's outputs.
func xcheckOutputs(t *testing.T) map[string][]byte {
	out := map[string][]byte{}
	fp8 := xcheckInputs("fp8")
	e4, e5 := make([]byte, xcheckN), make([]byte, xcheckN)
	for i, v := range fp8 {
		e4[i], e5[i] = EncodeE4M3(v), EncodeE5M2(v)
	}
	out["e4m3"], out["e5m2"] = e4, e5
	e2 := xcheckInputs("e2m1")
	c := make([]byte, xcheckN)
	for i, v := range e2 {
		c[i] = EncodeE2M1(v)
	}
	out["e2m1"] = c
	for _, kind := range []string{"mxfp4", "nvfp4"} {
		x := xcheckInputs(kind)
		f, _ := Lookup(kind)
		cols := 32 * 125
		if kind == "nvfp4" {
			cols = 1600
		}
		p, err := Quantize(x, xcheckN/cols, cols, f, &Options{Name: kind})
		if err != nil {
			t.Fatal(err)
		}
		codes := make([]byte, xcheckN)
		for i := range codes {
			codes[i] = uint8(p.Code(i/cols, i%cols))
		}
		out[kind+"_codes"] = codes
		out[kind+"_scales"] = p.Scales
		if kind == "nvfp4" {
			out[kind+"_tensor_scale"] = f32bytes([]float32{p.TensorScale})
		}
	}
	return out
}

func TestXCheckTorch(t *testing.T) {
	if dir := os.Getenv("MARLIN_WRITE_XCHECK"); dir != "" {
		for _, k := range []string{"fp8", "e2m1", "mxfp4", "nvfp4"} {
			if err := os.WriteFile(filepath.Join(dir, k+".f32"), f32bytes(xcheckInputs(k)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	raw, err := os.ReadFile("testdata/xcheck.json")
	if err != nil {
		t.Skipf("no reference digests yet: %v", err)
	}
	var ref struct {
		Inputs  map[string]string `json:"inputs"`
		Outputs map[string]string `json:"outputs"`
	}
	if err := json.Unmarshal(raw, &ref); err != nil {
		t.Fatal(err)
	}
	for k, want := range ref.Inputs {
		if got := digest(f32bytes(xcheckInputs(k))); got != want {
			t.Fatalf("input %s: generator changed (digest %s, reference %s)", k, got, want)
		}
	}
	ours := xcheckOutputs(t)
	if len(ref.Outputs) == 0 {
		t.Fatal("reference has no outputs")
	}
	for k, want := range ref.Outputs {
		b, ok := ours[k]
		if !ok {
			t.Errorf("output %s: not computed here", k)
			continue
		}
		if got := digest(b); got != want {
			t.Errorf("output %s: digest %s, torch %s", k, got, want)
		}
	}
}
