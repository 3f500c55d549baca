package gptq

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"os"
	"testing"
)

// rng is splitmix64: tiny, deterministic, and easy to reproduce anywhere.
type rng struct{ s uint64 }

func (r *rng) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func (r *rng) uniform() float64 { return (float64(r.next()>>11) + 0.5) / (1 << 53) }

func (r *rng) normal() float64 {
	u1, u2 := r.uniform(), r.uniform()
	return math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
}

// layer is a synthetic Linear layer with correlated calibration inputs.
type layer struct {
	rows, cols, n int
	w             []float64 // float32-representable weights
	x             []float32 // n×cols activations
	h             []float64 // float32-representable 2XᵀX/n
}

// genLayer builds W (rows×cols, Gaussian with a few heavy rows/columns) and
// X = Z·A with A mixing neighbouring channels and a few outlier channels,
// so that H is far from diagonal, as in real transformer layers. Column
// dead (if ≥ 0) is all-zero in X.
func genLayer(t testing.TB, seed uint64, rows, cols, n, dead int) *layer {
	r := &rng{s: seed}
	L := &layer{rows: rows, cols: cols, n: n}
	L.w = make([]float64, rows*cols)
	for i := range L.w {
		v := 0.05 * r.normal()
		if i%97 == 0 {
			v *= 6 // sparse outlier weights
		}
		L.w[i] = float64(float32(v))
	}
	chanScale := make([]float64, cols)
	for c := range chanScale {
		chanScale[c] = 0.5 + r.uniform()
		if c%61 == 5 {
			chanScale[c] = 8 // outlier channels
		}
	}
	L.x = make([]float32, n*cols)
	z := make([]float64, cols)
	for i := 0; i < n; i++ {
		for c := range z {
			z[c] = r.normal()
		}
		shared := r.normal()
		for c := 0; c < cols; c++ {
			// AR-style mixing with neighbours plus a shared component.
			v := z[c] + 0.6*z[(c+1)%cols] + 0.3*z[(c+7)%cols] + 0.5*shared
			if c == dead {
				v = 0
			}
			L.x[i*cols+c] = float32(v * chanScale[c])
		}
	}
	hs, err := NewHessian(cols, F64)
	if err != nil {
		t.Fatal(err)
	}
	// Stream in batches of 256 tokens, as calibration does.
	for i := 0; i < n; i += 256 {
		e := min(i+256, n)
		if err := hs.Add(L.x[i*cols:e*cols], e-i); err != nil {
			t.Fatal(err)
		}
	}
	L.h = hs.Matrix()
	for i, v := range L.h {
		L.h[i] = float64(float32(v))
	}
	return L
}

func digest32(v []float64) string {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(float32(f)))
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// writeNPY writes a float32 C-order .npy file.
func writeNPY(path string, v []float64, shape ...int) error {
	sh := ""
	for _, d := range shape {
		sh += fmt.Sprintf("%d, ", d)
	}
	if len(shape) > 1 {
		sh = sh[:len(sh)-2]
	}
	hdr := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", sh)
	for (10+len(hdr)+1)%64 != 0 {
		hdr += " "
	}
	hdr += "\n"
	b := []byte("\x93NUMPY\x01\x00")
	b = binary.LittleEndian.AppendUint16(b, uint16(len(hdr)))
	b = append(b, hdr...)
	for _, f := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(f)))
	}
	return os.WriteFile(path, b, 0o644)
}

// refIntGrid is the reference implementation's symmetric integer quantizer
// (quant.py Quantizer with sym=True: scale = 2·absmax/(2^b−1), zero =
// 2^(b−1), codes clamp(round(x/scale)+zero, 0, 2^b−1)).
type refIntGrid struct{ bits, group int }

func (g refIntGrid) GroupSize() int { return g.group }

func (g refIntGrid) Fit(vals []float64, clip float64) Scale {
	var amax float64
	for _, v := range vals {
		amax = math.Max(amax, math.Abs(v))
	}
	amax *= clip
	if amax == 0 {
		amax = 1
	}
	// float32 arithmetic as in the reference (xmax - xmin) / maxq.
	maxq := float32(int(1)<<g.bits - 1)
	s := (float32(amax) + float32(amax)) / maxq
	return Scale{Mul: float64(s), Zero: float64(int(1) << (g.bits - 1))}
}

func (g refIntGrid) Round(v float64, s Scale) (uint8, float64) {
	maxq := float64(int(1)<<g.bits - 1)
	q := math.RoundToEven(float64(float32(v)/float32(s.Mul))) + s.Zero
	q = math.Max(0, math.Min(maxq, q))
	return uint8(q), s.Mul * (q - s.Zero)
}
