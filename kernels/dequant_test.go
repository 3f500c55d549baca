package kernels

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/marlin-llm/marlin/quant"
)

// dqFormats lists every registered format plus variants whose group size
// does not divide the tile (48: not a multiple of 16; 0: one group per row)
// and with other scale encodings.
func dqFormats(t *testing.T) []quant.Format {
	t.Helper()
	var out []quant.Format
	for _, n := range quant.Names() {
		f, err := quant.Lookup(n)
		if err != nil {
			t.Fatal(err)
		}
		if f.Elem == quant.ElemGGML {
			continue // GGML blocks decode row by row (Packed.DequantizeRow); their rows must fill whole blocks
		}
		out = append(out, f)
	}
	for _, v := range []struct {
		name  string
		group int
		scale quant.ScaleType
	}{
		{"int4", 48, quant.ScaleF16}, {"int4", 0, quant.ScaleF16}, {"int4_asym", 16, quant.ScaleBF16},
		{"fp4", 64, quant.ScaleF32}, {"nf4", 32, quant.ScaleBF16}, {"int3", 32, quant.ScaleF16},
		// groups that start off the 8-code (3-bit) and 4-code (2-bit) byte grid
		{"int3_asym", 12, quant.ScaleF16}, {"int2", 6, quant.ScaleF16}, {"nf3", 20, quant.ScaleF16},
	} {
		f, err := quant.Lookup(v.name)
		if err != nil {
			t.Fatal(err)
		}
		if f, err = f.WithGroupSize(v.group); err != nil {
			t.Fatal(err)
		}
		if f, err = f.WithScale(v.scale); err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
	}
	return out
}

// randomPacked fills a Packed with random codes and scale bytes (so NaN,
// Inf and subnormal scales occur) — the adversarial input for bit-exactness.
func randomPacked(t *testing.T, r *rand.Rand, f quant.Format, rows, cols int, actOrder bool) *quant.Packed {
	t.Helper()
	p, err := quant.NewPacked(f, rows, cols)
	if err != nil {
		t.Fatal(err)
	}
	for i := range p.Codes {
		p.Codes[i] = byte(r.Uint32())
	}
	for i := range p.Scales {
		p.Scales[i] = byte(r.Uint32())
	}
	if f.PerTensor { // one scale, in every row's slot
		sb := f.Scale.Bytes()
		for row := 1; row < rows; row++ {
			copy(p.Scales[row*sb:(row+1)*sb], p.Scales[:sb])
		}
	}
	maxq := uint32(1)<<f.Bits - 1
	for i := range p.Zeros {
		p.Zeros[i] = byte(r.Uint32() % (maxq + 1))
	}
	if f.TensorScale {
		p.TensorScale = float32(r.Float64()) * 1e-3
	}
	if actOrder && p.Groups() > 0 {
		p.GIdx = make([]int32, cols)
		for c := range p.GIdx {
			p.GIdx[c] = int32(r.IntN(p.Groups()))
		}
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	return p
}

func sameFloat(a, b float32) bool {
	return math.Float32bits(a) == math.Float32bits(b) || (a != a && b != b)
}

var dqShapes = [][2]int{{1, 1}, {1, 32}, {3, 33}, {2, 95}, {5, 1000}, {4, 4100}, {2, 8200}}

// TestDequantTilesBitExact decodes every tile the kernel would use and
// compares it bit for bit with quant.Packed.Dequantize.
func TestDequantTilesBitExact(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	for _, f := range dqFormats(t) {
		for _, sh := range dqShapes {
			for _, act := range []bool{false, true} {
				rows, cols := sh[0], sh[1]
				p := randomPacked(t, r, f, rows, cols, act)
				want := make([]float32, rows*cols)
				p.Dequantize(want)
				for _, simd := range []bool{false, haveSIMD} {
					d := newTileDecoder(p, simd)
					for _, tcWant := range []int{dqTileFloats, dqBigFloats / dqBigRows, 64} {
						tc := d.tileCols(tcWant)
						buf := make([]float32, rows*tc+d.scratch()+2*(cols/max(1, d.gs)+2))
						tile := buf[:rows*tc]
						for c0 := 0; c0 < cols; c0 += tc {
							nc := min(tc, cols-c0)
							d.decode(tile, nc, 0, rows, c0, nc, buf[rows*tc:])
							for i := 0; i < rows; i++ {
								for j := 0; j < nc; j++ {
									if g, w := tile[i*nc+j], want[i*cols+c0+j]; !sameFloat(g, w) {
										t.Fatalf("%v %dx%d act=%v simd=%v lut4=%v tile %d: W[%d,%d] = %v (%#x), quant says %v (%#x)",
											f, rows, cols, act, simd, d.lut4, tc, i, c0+j, g, math.Float32bits(g), w, math.Float32bits(w))
									}
								}
							}
						}
					}
				}
			}
		}
	}
}

func TestDequantGEMM(t *testing.T) {
	r := rand.New(rand.NewPCG(33, 34))
	for _, be := range backends() {
		for _, f := range dqFormats(t) {
			for _, sh := range [][2]int{{1, 1}, {3, 33}, {17, 100}, {70, 300}} {
				rows, cols := sh[0], sh[1]
				w := randSlice(r, rows*cols)
				p, err := quant.Quantize(w, rows, cols, f, nil)
				if err != nil {
					t.Fatalf("%v: %v", f, err)
				}
				if r.IntN(2) == 0 && p.Groups() > 1 {
					// act-order style g_idx
					p.GIdx = make([]int32, cols)
					for c := range p.GIdx {
						p.GIdx[c] = int32(r.IntN(p.Groups()))
					}
				}
				deq := make([]float32, rows*cols)
				p.Dequantize(deq)
				for _, m := range []int{1, 2, 7, 8, 13} {
					name := fmt.Sprintf("%s %v %dx%d m=%d", bname(be), f, rows, cols, m)
					ldx, ldc := cols+1, rows+3
					x := randSlice(r, (m-1)*ldx+cols)
					c := randSlice(r, (m-1)*ldc+rows)
					beta := float32(0.5)
					want, mag := refGemm(false, true, m, rows, cols, 1, x, ldx, deq, cols, beta, c, ldc)
					if err := be.DequantGEMM(m, x, ldx, p, beta, c, ldc); err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					for i := 0; i < m; i++ {
						for j := 0; j < rows; j++ {
							got := float64(c[i*ldc+j])
							tol := 2 * float64(cols+2) * u32 * mag[i*rows+j]
							if math.Abs(got-want[i*rows+j]) > tol || math.IsNaN(got) {
								t.Fatalf("%s: C[%d,%d] = %v want %v (tol %g)", name, i, j, got, want[i*rows+j], tol)
							}
						}
					}
				}
			}
		}
	}
}

// TestDequantGEMMTall covers the row chunking of the packed path (m larger
// than one chunk of packed X).
func TestDequantGEMMTall(t *testing.T) {
	r := rand.New(rand.NewPCG(35, 36))
	f, _ := quant.Lookup("int4")
	rows, cols, m := 20, 300, 4*gemmMC+37
	p, err := quant.Quantize(randSlice(r, rows*cols), rows, cols, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	deq := make([]float32, rows*cols)
	p.Dequantize(deq)
	x := randSlice(r, m*cols)
	for _, be := range backends() {
		c := make([]float32, m*rows)
		if err := be.DequantGEMM(m, x, cols, p, 0, c, rows); err != nil {
			t.Fatal(err)
		}
		want, mag := refGemm(false, true, m, rows, cols, 1, x, cols, deq, cols, 0, nil, rows)
		for i := range want {
			if d := math.Abs(float64(c[i]) - want[i]); d > 2*float64(cols+2)*u32*mag[i] {
				t.Fatalf("%s: C[%d] = %v want %v", bname(be), i, c[i], want[i])
			}
		}
	}
}

func TestDequantGEMMErrors(t *testing.T) {
	be := NewCPU(Options{})
	f, _ := quant.Lookup("mxfp4")
	p, err := quant.NewPacked(f, 4, 64)
	if err != nil {
		t.Fatal(err)
	}
	x := make([]float32, 64)
	c := make([]float32, 4)
	if err := be.DequantGEMM(1, x, 64, nil, 0, c, 4); !errors.Is(err, ErrShape) {
		t.Errorf("nil weight: %v", err)
	}
	if err := be.DequantGEMM(1, x[:10], 64, p, 0, c, 4); !errors.Is(err, ErrShape) {
		t.Errorf("short x: %v", err)
	}
	if err := be.DequantGEMM(1, x, 64, p, 0, c[:3], 4); !errors.Is(err, ErrShape) {
		t.Errorf("short c: %v", err)
	}
	bad := *p
	bad.Codes = bad.Codes[:5]
	if err := be.DequantGEMM(1, x, 64, &bad, 0, c, 4); err == nil {
		t.Error("corrupt packed tensor accepted")
	}
}
