//go:build linux && cgo

package shaders

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/kernels"
	"github.com/marlin-llm/marlin/metal/launch"
	"github.com/marlin-llm/marlin/quant"
)

// sameBits reports whether a and b are the same float32, bit for bit, with
// any NaN equal to any NaN (quant and the kernels may carry different NaN
// payloads).
func sameBits(a, b float32) bool {
	if a != a || b != b {
		return a != a && b != b
	}
	return math.Float32bits(a) == math.Float32bits(b)
}

func TestLayoutAgrees(t *testing.T) {
	if cSizeofQParams != launch.QParamsSize || len(launch.QParams{}.Bytes()) != launch.QParamsSize {
		t.Fatalf("sizeof(mq_qparams) = %d, Go launch.QParamsSize = %d, Bytes() = %d", cSizeofQParams, launch.QParamsSize, len(launch.QParams{}.Bytes()))
	}
	pairs := []struct {
		name string
		ours int
		q    int
	}{
		{"e2m1", launch.ElemE2M1, int(quant.ElemE2M1)}, {"int", launch.ElemInt, int(quant.ElemInt)}, {"nf", launch.ElemNF, int(quant.ElemNF)},
		{"e4m3", launch.ElemE4M3, int(quant.ElemE4M3)}, {"e5m2", launch.ElemE5M2, int(quant.ElemE5M2)},
		{"f16", launch.ScaleF16, int(quant.ScaleF16)}, {"bf16", launch.ScaleBF16, int(quant.ScaleBF16)}, {"f32", launch.ScaleF32, int(quant.ScaleF32)},
		{"e8m0", launch.ScaleE8M0, int(quant.ScaleE8M0)}, {"e4m3 scale", launch.ScaleE4M3, int(quant.ScaleE4M3)},
	}
	for _, p := range pairs {
		if p.ours != p.q {
			t.Errorf("%s: shaders %d, quant %d", p.name, p.ours, p.q)
		}
	}
}

// TestDecodersExhaustive compares the C build of every decoder in
// mq_formats.h with quant's codecs over the whole code space.
func TestDecodersExhaustive(t *testing.T) {
	for c := 0; c < 256; c++ {
		b := uint8(c)
		if g, w := CDecodeE4M3(b), quant.DecodeE4M3(b); !sameBits(g, w) {
			t.Errorf("e4m3 %#02x: C %v (%#x), quant %v (%#x)", c, g, math.Float32bits(g), w, math.Float32bits(w))
		}
		if g, w := CDecodeE5M2(b), quant.DecodeE5M2(b); !sameBits(g, w) {
			t.Errorf("e5m2 %#02x: C %v, quant %v", c, g, w)
		}
		if g, w := CDecodeE8M0(b), quant.DecodeE8M0(b); !sameBits(g, w) {
			t.Errorf("e8m0 %#02x: C %v, quant %v", c, g, w)
		}
		if c < 16 {
			if g, w := CDecodeE2M1(b), quant.DecodeE2M1(b); !sameBits(g, w) {
				t.Errorf("e2m1 %#x: C %v, quant %v", c, g, w)
			}
		}
	}
	for c := 0; c < 256; c++ {
		for z := 0; z < 256; z++ {
			if g, w := CIntMagic(uint32(c), uint32(z)), float32(c-z); !sameBits(g, w) {
				t.Fatalf("int magic %d-%d: %v, want %v", c, z, g, w)
			}
		}
	}
	for c := 0; c < 16; c++ {
		if g, w := CLevel(launch.ElemNF, 4, uint32(c), 0), quant.NF4Values[c]; !sameBits(g, w) {
			t.Errorf("nf4 %d: C %v, quant %v", c, g, w)
		}
		if c < 8 {
			if g, w := CLevel(launch.ElemNF, 3, uint32(c), 0), quant.NF3Values[c]; !sameBits(g, w) {
				t.Errorf("nf3 %d: C %v, quant %v", c, g, w)
			}
		}
	}
	for h := 0; h < 1<<16; h++ {
		if g, w := CHalfToFloat(uint16(h)), quant.DecodeF16(uint16(h)); !sameBits(g, w) {
			t.Fatalf("f16 %#04x: C %v, quant %v", h, g, w)
		}
	}
}

// randomPacked fills a Packed of format f with random codes, scales, zero
// points and tensor scale: every code and scale value occurs, including NaN
// and Inf scales, so the comparison covers the formats' edge cases.
func randomPacked(t *testing.T, rng *rand.Rand, f quant.Format, rows, cols int, gidx bool) *quant.Packed {
	t.Helper()
	p, err := quant.NewPacked(f, rows, cols)
	if err != nil {
		t.Fatal(err)
	}
	for i := range p.Codes {
		p.Codes[i] = uint8(rng.Uint32())
	}
	for i := range p.Scales {
		p.Scales[i] = uint8(rng.Uint32())
	}
	if f.PerTensor { // one scale, in every row's slot
		sb := f.Scale.Bytes()
		for r := 1; r < rows; r++ {
			copy(p.Scales[r*sb:(r+1)*sb], p.Scales[:sb])
		}
	}
	for i := range p.Zeros {
		p.Zeros[i] = uint8(rng.IntN(1 << f.Bits))
	}
	if f.TensorScale {
		p.TensorScale = rng.Float32()*2 + 1e-3
	}
	if gidx {
		p.GIdx = make([]int32, cols)
		for i := range p.GIdx {
			p.GIdx[i] = int32(rng.IntN(p.Groups()))
		}
	}
	return p
}

// tamedPacked is a Packed of realistic weights (RTN of Gaussian values), for
// products whose tolerance needs finite, moderate values.
func tamedPacked(t *testing.T, rng *rand.Rand, f quant.Format, rows, cols int, gidx bool) *quant.Packed {
	t.Helper()
	w := make([]float32, rows*cols)
	for i := range w {
		w[i] = float32(rng.NormFloat64())
	}
	p, err := quant.Quantize(w, rows, cols, f, nil)
	if err != nil {
		t.Fatalf("quantize %s %dx%d: %v", f, rows, cols, err)
	}
	if gidx {
		// A permutation of columns over the groups, as act-order produces.
		p.GIdx = make([]int32, cols)
		g := f.Group(cols)
		for i, c := range rng.Perm(cols) {
			p.GIdx[c] = int32(i / g)
		}
	}
	return p
}

func mustFormat(t *testing.T, name string, group int, scale quant.ScaleType) quant.Format {
	t.Helper()
	f, err := quant.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	if group >= 0 {
		if f, err = f.WithGroupSize(group); err != nil {
			t.Fatal(err)
		}
	}
	if scale != quant.ScaleNone {
		if f, err = f.WithScale(scale); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

type fmtCase struct {
	name  string
	group int // -1: the format's default
	scale quant.ScaleType
	gidx  bool
}

func (c fmtCase) String() string {
	s := c.name
	if c.group >= 0 {
		s += fmt.Sprintf("_g%d", c.group)
	}
	if c.scale != quant.ScaleNone {
		s += "_" + c.scale.String()
	}
	if c.gidx {
		s += "_gidx"
	}
	return s
}

// allFormats is every quantized format with a kernel, plus variants of
// group size, scale type and act-order.
func allFormats() []fmtCase {
	var out []fmtCase
	for _, n := range quant.Names() {
		f, _ := quant.Lookup(n)
		if f.Quantized() && f.Elem != quant.ElemGGML { // GGML blocks: no Metal kernel
			out = append(out, fmtCase{name: n, group: -1})
		}
	}
	return append(out,
		fmtCase{name: "fp4", group: 32, scale: quant.ScaleBF16},
		fmtCase{name: "fp4", group: 16, scale: quant.ScaleF32},
		fmtCase{name: "int4", group: 8, scale: quant.ScaleF16},
		fmtCase{name: "int4", group: 32, gidx: true},
		fmtCase{name: "int3_asym", group: 32, gidx: true},
		fmtCase{name: "nf3", group: 16},
		fmtCase{name: "int2", group: 0},
	)
}

// Shapes: single element, K not a multiple of 8 or of the group, odd rows,
// and rows whose packed length is not a multiple of 4 bytes.
var dequantShapes = [][2]int{{1, 1}, {1, 7}, {3, 37}, {5, 130}, {4, 256}, {7, 72}}

func TestDequantBitExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, fc := range allFormats() {
		for _, sh := range dequantShapes {
			for _, tamed := range []bool{false, true} {
				f := mustFormat(t, fc.name, fc.group, fc.scale)
				var pk *quant.Packed
				if tamed {
					pk = tamedPacked(t, rng, f, sh[0], sh[1], fc.gidx)
				} else {
					pk = randomPacked(t, rng, f, sh[0], sh[1], fc.gidx)
				}
				name := fmt.Sprintf("%s/%dx%d/tamed=%v", fc, sh[0], sh[1], tamed)
				p, w, err := launch.FromPacked(pk)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				got, err := EmuDequant(p, w, Forward)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				want := make([]float32, sh[0]*sh[1])
				pk.Dequantize(want)
				bad := 0
				for i := range want {
					if !sameBits(got[i], want[i]) {
						if bad < 3 {
							t.Errorf("%s: element (%d,%d): metal %v (%#x), quant %v (%#x)", name, i/sh[1], i%sh[1],
								got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
						}
						bad++
					}
				}
				if bad > 0 {
					t.Errorf("%s: %d of %d elements differ", name, bad, len(want))
				}
			}
		}
	}
}

func cpuBackend(t *testing.T) kernels.Backend {
	t.Helper()
	b, err := kernels.Open("cpu", kernels.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func randFloats(rng *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	return x
}

// gemmTol checks got against the CPU backend's want and against a float64
// evaluation of c0·beta + X·deqᵀ: the differences must be within 2^-18
// (about 32 float32 ulps of 1) of Σ|x·w| + |beta·c0| for that output, the
// scale of the rounding error of any float32 summation order at the K used
// here.
func gemmTol(t *testing.T, name string, m, n, k int, x []float32, ldx int, deq []float32, beta float32, c0, got, want []float32, ldc int) {
	t.Helper()
	bad := 0
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var mag, ref float64
			if beta != 0 {
				ref = float64(beta) * float64(c0[i*ldc+j])
				mag = math.Abs(ref)
			}
			for kk := 0; kk < k; kk++ {
				p := float64(x[i*ldx+kk]) * float64(deq[j*k+kk])
				ref += p
				mag += math.Abs(p)
			}
			g, w := got[i*ldc+j], want[i*ldc+j]
			tol := mag * 0x1p-18
			d, d64 := math.Abs(float64(g)-float64(w)), math.Abs(float64(g)-ref)
			if !(d <= tol) || !(d64 <= tol) {
				if bad < 3 {
					t.Errorf("%s: C[%d,%d] = %v, cpu %v, float64 %v (tolerance %.3g)", name, i, j, g, w, ref, tol)
				}
				bad++
			}
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d outputs out of tolerance", name, bad, m*n)
	}
}

type gemmCase struct {
	m, n, k    int
	padX, padC int
	beta       float32
}

// GEMM shapes: M=1, odd N, K not a multiple of the 32-wide k tile nor of
// the group, tiles with partial rows and columns, padded leading dimensions
// and beta ≠ 0.
var gemmCases = []gemmCase{
	{1, 1, 1, 0, 0, 0}, {1, 33, 100, 0, 0, 0}, {3, 7, 64, 0, 0, 0}, {33, 65, 97, 3, 1, 0},
	{40, 31, 130, 0, 2, 0.5}, {2, 5, 300, 1, 0, -1}, {9, 17, 48, 0, 0, 0}, {64, 64, 64, 0, 0, 1},
}

var gemmFormats = []fmtCase{
	{name: "fp4", group: -1}, {name: "fp4", group: 32}, {name: "mxfp4", group: -1}, {name: "nvfp4", group: -1},
	{name: "int4", group: 32}, {name: "int4_asym", group: 16}, {name: "int3", group: 32}, {name: "int2_asym", group: 32},
	{name: "nf4", group: 32}, {name: "fp8_e4m3", group: -1}, {name: "fp8_e5m2", group: -1}, {name: "int8", group: -1},
	{name: "int4", group: 32, gidx: true},
}

func TestGEMMAndGEMVAgainstCPU(t *testing.T) {
	cpu := cpuBackend(t)
	rng := rand.New(rand.NewPCG(3, 4))
	for _, fc := range gemmFormats {
		f := mustFormat(t, fc.name, fc.group, fc.scale)
		for ci, gc := range gemmCases {
			pk := tamedPacked(t, rng, f, gc.n, gc.k, fc.gidx)
			p, w, err := launch.FromPacked(pk)
			if err != nil {
				t.Fatal(err)
			}
			ldx, ldc := gc.k+gc.padX, gc.n+gc.padC
			p.M, p.LDX, p.LDC, p.Beta = uint32(gc.m), uint32(ldx), uint32(ldc), gc.beta
			x := randFloats(rng, gc.m*ldx)
			c0 := randFloats(rng, gc.m*ldc)
			if gc.beta == 0 {
				for i := range c0 {
					c0[i] = float32(math.NaN()) // beta = 0 must overwrite, not propagate
				}
			}
			want := append([]float32(nil), c0...)
			if err := cpu.DequantGEMM(gc.m, x, ldx, pk, gc.beta, want, ldc); err != nil {
				t.Fatal(err)
			}
			deq := make([]float32, gc.n*gc.k)
			pk.Dequantize(deq)
			for _, gemv := range []bool{false, true} {
				if gemv && gc.m > 2*launch.GEMVMaxM {
					continue // the backend uses GEMV for m ≤ 8; 9..16 covers two row blocks
				}
				name := fmt.Sprintf("%s/case%d(m=%d,n=%d,k=%d,beta=%g)/gemv=%v", fc, ci, gc.m, gc.n, gc.k, gc.beta, gemv)
				got, err := EmuGEMM(p, x, w, c0, gemv, Forward)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				gemmTol(t, name, gc.m, gc.n, gc.k, x, ldx, deq, gc.beta, c0, got, want, ldc)
				// Padding columns of C are never written.
				for i := 0; i < gc.m; i++ {
					for j := gc.n; j < ldc; j++ {
						if !sameBits(got[i*ldc+j], c0[i*ldc+j]) {
							t.Fatalf("%s: padding C[%d,%d] written", name, i, j)
						}
					}
				}
			}
		}
	}
}

// TestSchedulingOrderInvariance runs the barrier-heavy kernels with the
// threads of each threadgroup resumed in forward, reverse and shuffled
// order: a missing barrier would make the outputs differ.
func TestSchedulingOrderInvariance(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	f := mustFormat(t, "mxfp4", -1, quant.ScaleNone)
	pk := tamedPacked(t, rng, f, 45, 100, false)
	p, w, err := launch.FromPacked(pk)
	if err != nil {
		t.Fatal(err)
	}
	p.M, p.LDX, p.LDC = 37, 100, 45
	x := randFloats(rng, 37*100)
	c := make([]float32, 37*45)
	var ref []float32
	for _, o := range Orders {
		got, err := EmuGEMM(p, x, w, c, false, o)
		if err != nil {
			t.Fatal(err)
		}
		if ref == nil {
			ref = got
			continue
		}
		for i := range ref {
			if !sameBits(ref[i], got[i]) {
				t.Fatalf("gemm order %d: C[%d] = %v, forward %v", o, i, got[i], ref[i])
			}
		}
	}
	xs := randFloats(rng, 3*1024)
	for _, lg := range []uint32{3, 8, 10} {
		var ref []float32
		for _, o := range Orders {
			got, err := EmuFWHT(launch.FWHTParams{Total: uint32(len(xs)), Log2B: lg}, xs, o)
			if err != nil {
				t.Fatal(err)
			}
			if ref == nil {
				ref = got
				continue
			}
			for i := range ref {
				if !sameBits(ref[i], got[i]) {
					t.Fatalf("fwht 2^%d order %d: x[%d] = %v, forward %v", lg, o, i, got[i], ref[i])
				}
			}
		}
	}
}

// TestEmulatorCatchesBugs checks that the emulator reports a barrier that
// only some threads reach and a simdgroup_load whose lanes disagree, and
// that a missing barrier shows up as order-dependent output.
func TestEmulatorCatchesBugs(t *testing.T) {
	_, err := emuSelfTest(selfDiverge, 64, Forward)
	if err == nil || !strings.Contains(err.Error(), "barrier divergence") {
		t.Fatalf("diverging kernel: err = %v, want barrier divergence", err)
	}
	a, err := emuSelfTest(selfRace, 64, Forward)
	if err != nil {
		t.Fatal(err)
	}
	b, err := emuSelfTest(selfRace, 64, Reverse)
	if err != nil {
		t.Fatal(err)
	}
	same := true
	for i := range a {
		same = same && sameBits(a[i], b[i])
	}
	if same {
		t.Fatalf("racy kernel gave the same output in both orders: %v", a)
	}
	if _, err := emuSelfTest(selfSGLoad, 64, Forward); err == nil || !strings.Contains(err.Error(), "non-uniform simdgroup_load") {
		t.Fatalf("non-uniform simdgroup_load: err = %v", err)
	}
}

func TestFWHTAgainstCPU(t *testing.T) {
	cpu := cpuBackend(t)
	rng := rand.New(rand.NewPCG(7, 8))
	for lg := 0; lg <= launch.FWHTMaxLog2; lg++ {
		b := 1 << lg
		for _, rows := range []int{1, 3} {
			cols := b * (1 + lg%3)
			for _, norm := range []bool{false, true} {
				x := randFloats(rng, rows*cols)
				want := append([]float32(nil), x...)
				if err := cpu.FWHT(want, rows, cols, lg, norm); err != nil {
					t.Fatal(err)
				}
				fp := launch.FWHTParams{Total: uint32(rows * cols), Log2B: uint32(lg)}
				if norm {
					fp.Scaled, fp.Scale = 1, float32(1/math.Sqrt(float64(b)))
				}
				got, err := EmuFWHT(fp, x, Forward)
				if err != nil {
					t.Fatal(err)
				}
				for i := range want {
					if !sameBits(got[i], want[i]) {
						t.Fatalf("fwht 2^%d rows %d norm %v: x[%d] = %v, cpu %v", lg, rows, norm, i, got[i], want[i])
					}
				}
			}
		}
	}
	if _, err := EmuFWHT(launch.FWHTParams{Total: 1 << 13, Log2B: 13}, make([]float32, 1<<13), Forward); err == nil {
		t.Fatal("fwht block 2^13: no error")
	}
	if _, err := EmuFWHT(launch.FWHTParams{Total: 24, Log2B: 4}, make([]float32, 24), Forward); err == nil {
		t.Fatal("fwht of 24 elements in blocks of 16: no error")
	}
}

// routerRef computes the routing with the CPU backend's Softmax/Sigmoid and
// TopK (ties to the lower index, as the kernel).
func routerRef(t *testing.T, cpu kernels.Backend, p launch.RouterParams, logits, bias []float32) ([]int32, []float32) {
	t.Helper()
	T, E, K := int(p.Tokens), int(p.Experts), int(p.K)
	score := append([]float32(nil), logits...)
	var err error
	if p.Mode == launch.RouterSoftmax {
		err = cpu.Softmax(score, T, E)
	} else {
		err = cpu.Sigmoid(score, score)
	}
	if err != nil {
		t.Fatal(err)
	}
	key := append([]float32(nil), score...)
	if p.HasBias != 0 {
		for i := range key {
			key[i] += bias[i%E]
		}
	}
	vals := make([]float32, T*K)
	idx := make([]int32, T*K)
	if err := cpu.TopK(key, T, E, K, vals, idx); err != nil {
		t.Fatal(err)
	}
	w := make([]float32, T*K)
	for tk := 0; tk < T; tk++ {
		var sum float32
		for r := 0; r < K; r++ {
			w[tk*K+r] = score[tk*E+int(idx[tk*K+r])]
			sum += w[tk*K+r]
		}
		for r := 0; r < K; r++ {
			if p.Norm != 0 {
				w[tk*K+r] /= sum + p.NormEps
			}
			w[tk*K+r] *= p.Scaling
		}
	}
	return idx, w
}

func TestRouterAgainstCPU(t *testing.T) {
	cpu := cpuBackend(t)
	rng := rand.New(rand.NewPCG(9, 10))
	cases := []launch.RouterParams{
		{Tokens: 1, Experts: 1, K: 1, Mode: launch.RouterSoftmax, Scaling: 1},
		{Tokens: 5, Experts: 8, K: 2, Mode: launch.RouterSoftmax, Norm: 1, Scaling: 1},
		{Tokens: 9, Experts: 60, K: 4, Mode: launch.RouterSoftmax, Scaling: 1},
		{Tokens: 7, Experts: 64, K: 8, Mode: launch.RouterSigmoid, HasBias: 1, Norm: 1, NormEps: 1e-20, Scaling: 1.8},
		{Tokens: 3, Experts: 256, K: 8, Mode: launch.RouterSigmoid, HasBias: 1, Norm: 1, NormEps: 1e-20, Scaling: 2.5},
		{Tokens: 4, Experts: 33, K: 3, Mode: launch.RouterSigmoid, Scaling: 1},
	}
	for _, p := range cases {
		name := fmt.Sprintf("T%d_E%d_k%d_mode%d", p.Tokens, p.Experts, p.K, p.Mode)
		logits := randFloats(rng, int(p.Tokens*p.Experts))
		// Exact ties: the lower index must win.
		if p.Experts >= 8 {
			logits[3] = logits[5]
		}
		// A NaN score ranks below every number (kernels.TopK).
		// (Sigmoid routers only: a softmax row with a NaN is all NaN.)
		if p.Mode == launch.RouterSigmoid && p.Experts > p.K {
			logits[1] = float32(math.NaN())
		}
		var bias []float32
		if p.HasBias != 0 {
			bias = make([]float32, p.Experts)
			for i := range bias {
				bias[i] = float32(rng.NormFloat64()) * 0.1
			}
		}
		wantIdx, wantW := routerRef(t, cpu, p, logits, bias)
		gotIdx, gotW, err := EmuRouter(p, logits, bias, Forward)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for i := range wantIdx {
			if int32(gotIdx[i]) != wantIdx[i] {
				t.Fatalf("%s: slot %d: expert %d, cpu %d (got %v want %v)", name, i, gotIdx[i], wantIdx[i], gotIdx, wantIdx)
			}
			// exp differs between libm and Go's math by an ulp or two.
			if d := math.Abs(float64(gotW[i] - wantW[i])); d > 1e-6*math.Abs(float64(wantW[i]))+1e-7 {
				t.Fatalf("%s: weight %d: %v, cpu %v", name, i, gotW[i], wantW[i])
			}
		}
	}
	if _, _, err := EmuRouter(launch.RouterParams{Tokens: 1, Experts: 300, K: 2}, make([]float32, 300), nil, Forward); err == nil {
		t.Fatal("300 experts: no error")
	}
}

func TestMoEGEMMAgainstCPU(t *testing.T) {
	cpu := cpuBackend(t)
	rng := rand.New(rand.NewPCG(11, 12))
	for _, fc := range []fmtCase{{name: "mxfp4", group: -1}, {name: "int4_asym", group: 32}, {name: "nvfp4", group: -1}, {name: "int3", group: 32, gidx: true}} {
		f := mustFormat(t, fc.name, fc.group, fc.scale)
		const E, N, K, T, topk = 5, 37, 96, 23, 2
		// Stack E experts; NVFP4's tensor scale is per tensor, so all
		// experts share the first one's.
		var w launch.Weights
		var pks []*quant.Packed
		var p launch.QParams
		for e := 0; e < E; e++ {
			pk := tamedPacked(t, rng, f, N, K, fc.gidx)
			if e > 0 {
				pk.TensorScale = pks[0].TensorScale
			}
			pks = append(pks, pk)
			var we launch.Weights
			var err error
			p, we, err = launch.FromPacked(pk)
			if err != nil {
				t.Fatal(err)
			}
			w.Codes = append(w.Codes, we.Codes...)
			w.Scales = append(w.Scales, we.Scales...)
			w.Zeros = append(w.Zeros, we.Zeros...)
			w.GIdx = append(w.GIdx, we.GIdx...)
		}
		x := randFloats(rng, T*K)
		// Route each token to topk distinct experts; expert 3 stays cold.
		var byExpert [E][]uint32
		for tk := 0; tk < T; tk++ {
			for _, e := range rng.Perm(E - 1)[:topk] {
				if e >= 3 {
					e++
				}
				byExpert[e] = append(byExpert[e], uint32(tk))
			}
		}
		offsets := []uint32{0}
		var rowmap []uint32
		for e := 0; e < E; e++ {
			rowmap = append(rowmap, byExpert[e]...)
			offsets = append(offsets, uint32(len(rowmap)))
		}
		p.Experts, p.M, p.LDX, p.LDC = E, 0, K, N
		c := make([]float32, len(rowmap)*N)
		got, err := EmuMoEGEMM(p, x, w, offsets, rowmap, c, Forward)
		if err != nil {
			t.Fatal(err)
		}
		for e := 0; e < E; e++ {
			rows := byExpert[e]
			if len(rows) == 0 {
				continue
			}
			xe := make([]float32, len(rows)*K)
			for i, r := range rows {
				copy(xe[i*K:], x[int(r)*K:int(r+1)*K])
			}
			want := make([]float32, len(rows)*N)
			if err := cpu.DequantGEMM(len(rows), xe, K, pks[e], 0, want, N); err != nil {
				t.Fatal(err)
			}
			deq := make([]float32, N*K)
			pks[e].Dequantize(deq)
			gemmTol(t, fmt.Sprintf("%s/expert%d", fc, e), len(rows), N, K, xe, K, deq, 0, want, got[offsets[e]*N:offsets[e+1]*N], want, N)
		}
	}
}
