package metal

import (
	"errors"
	"fmt"
	"math"
	"unsafe"

	"github.com/marlin-llm/marlin/kernels"
	"github.com/marlin-llm/marlin/metal/launch"
	"github.com/marlin-llm/marlin/quant"
)

// arg is one kernel argument, in [[buffer(i)]] order.
type arg struct {
	data  []byte
	out   bool // the kernel writes it: copy back (or map it without copying)
	param bool // a small constant block (setBytes)
}

// device runs kernels of marlin.metal: the Objective-C bridge on a Mac, the
// shaders emulator in the Linux tests. dispatch returns after the kernel has
// finished, with the outputs in the out arguments' slices.
type device interface {
	dispatch(l launch.Launch, args []arg) error
	name() string
}

// Backend is the Metal kernels.Backend. The quantized products (fused
// dequant-GEMM and GEMV), the Walsh-Hadamard transform, dequantization,
// router top-k and the expert-grouped GEMM run as Metal kernels; every other
// operation (SGEMM, norms, Cholesky, ...) is the embedded CPU backend's.
type Backend struct {
	kernels.Backend // the CPU backend, for operations without a Metal kernel
	dev             device
}

var _ kernels.Backend = (*Backend)(nil)

func newBackend(dev device, opts kernels.Options) (*Backend, error) {
	cpu, err := kernels.Open("cpu", opts)
	if err != nil {
		return nil, fmt.Errorf("metal: opening the CPU fallback: %w", err)
	}
	return &Backend{Backend: cpu, dev: dev}, nil
}

// Name is "metal".
func (b *Backend) Name() string { return "metal" }

// Device names the GPU ("Apple M2 Max", or the emulator in tests).
func (b *Backend) Device() string { return b.dev.name() }

func f32bytes(x []float32) []byte {
	if len(x) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&x[0])), 4*len(x))
}

func i32bytes(x []int32) []byte {
	if len(x) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&x[0])), 4*len(x))
}

// nonEmpty gives Metal a buffer even where the kernel does not read it
// (zero points of symmetric formats, g_idx when absent): a zero-length
// MTLBuffer cannot be created.
func nonEmpty(b []byte) []byte {
	if len(b) == 0 {
		return make([]byte, 4)
	}
	return b
}

// fits32 reports whether every size fits the kernels' 32-bit indexing.
func fits32(n ...int) bool {
	for _, v := range n {
		if v < 0 || v > math.MaxUint32 {
			return false
		}
	}
	return true
}

func checkMat(what string, s []float32, rows, cols, ld int) error {
	if rows < 0 || cols < 0 || ld < max(1, cols) {
		return fmt.Errorf("metal: %s: %dx%d with leading dimension %d: %w", what, rows, cols, ld, kernels.ErrShape)
	}
	if rows == 0 || cols == 0 {
		return nil
	}
	need := (rows-1)*ld + cols
	if (rows-1) != 0 && need/ld < rows-1 || len(s) < need {
		return fmt.Errorf("metal: %s: %dx%d (ld %d) needs %d elements, have %d: %w", what, rows, cols, ld, need, len(s), kernels.ErrShape)
	}
	return nil
}

// weightArgs turns a packed weight into kernel parameters and buffers; ok is
// false for formats without a Metal kernel (bf16, f16).
func weightArgs(w *quant.Packed) (launch.QParams, launch.Weights, bool, error) {
	if w == nil {
		return launch.QParams{}, launch.Weights{}, false, fmt.Errorf("metal: nil weight: %w", kernels.ErrShape)
	}
	if !w.Format.Quantized() {
		return launch.QParams{}, launch.Weights{}, false, nil
	}
	p, ws, err := launch.FromPacked(w)
	if err != nil {
		return p, ws, false, fmt.Errorf("metal: %w", err)
	}
	return p, ws, true, nil
}

// weightBufs returns the W, S, Z, G arguments.
func weightBufs(ws launch.Weights) []arg {
	return []arg{{data: nonEmpty(ws.Codes)}, {data: nonEmpty(ws.Scales)}, {data: nonEmpty(ws.Zeros)}, {data: nonEmpty(i32bytes(ws.GIdx))}}
}

// DequantGEMM computes C = X·Wᵀ + beta·C on the GPU: the GEMV kernel for
// m ≤ 8 (decode), the tiled simdgroup-matrix kernel otherwise. Formats
// without a Metal kernel go to the CPU backend.
func (b *Backend) DequantGEMM(m int, x []float32, ldx int, w *quant.Packed, beta float32, c []float32, ldc int) error {
	p, ws, ok, err := weightArgs(w)
	if err != nil {
		return fmt.Errorf("metal: dequant-gemm: %w", err)
	}
	if !ok {
		return b.Backend.DequantGEMM(m, x, ldx, w, beta, c, ldc)
	}
	rows, cols := w.Rows, w.Cols
	if m < 0 {
		return fmt.Errorf("metal: dequant-gemm: m = %d: %w", m, kernels.ErrShape)
	}
	if err := checkMat("dequant-gemm: X", x, m, cols, ldx); err != nil {
		return err
	}
	if err := checkMat("dequant-gemm: C", c, m, rows, ldc); err != nil {
		return err
	}
	if m == 0 {
		return nil
	}
	xn, cn := (m-1)*ldx+cols, (m-1)*ldc+rows
	if !fits32(m, ldx, ldc, 4*xn, 4*cn) {
		return b.Backend.DequantGEMM(m, x, ldx, w, beta, c, ldc)
	}
	p.M, p.LDX, p.LDC, p.Beta = uint32(m), uint32(ldx), uint32(ldc), beta
	l := launch.PlanGEMM(p)
	if m <= launch.GEMVMaxM {
		l = launch.PlanGEMV(p)
	}
	args := append([]arg{{data: p.Bytes(), param: true}, {data: f32bytes(x[:xn])}}, weightBufs(ws)...)
	args = append(args, arg{data: f32bytes(c[:cn]), out: true})
	if err := b.dev.dispatch(l, args); err != nil {
		return fmt.Errorf("metal: dequant-gemm %dx%dx%d %s: %w", m, rows, cols, w.Format, err)
	}
	return nil
}

// Dequantize writes the rows×cols dequantized weights of w to dst on the
// GPU; the values are bit-identical to w.Dequantize.
func (b *Backend) Dequantize(w *quant.Packed, dst []float32) error {
	p, ws, ok, err := weightArgs(w)
	if err != nil {
		return fmt.Errorf("metal: dequantize: %w", err)
	}
	n := w.Rows * w.Cols
	if len(dst) < n {
		return fmt.Errorf("metal: dequantize: %d elements for %dx%d: %w", len(dst), w.Rows, w.Cols, kernels.ErrShape)
	}
	if !ok || !fits32(4*n) {
		w.Dequantize(dst)
		return nil
	}
	args := append([]arg{{data: p.Bytes(), param: true}}, weightBufs(ws)...)
	args = append(args, arg{data: f32bytes(dst[:n]), out: true})
	if err := b.dev.dispatch(launch.PlanDequant(p), args); err != nil {
		return fmt.Errorf("metal: dequantize %s: %w", w.Format, err)
	}
	return nil
}

// FWHT implements kernels.Backend on the GPU for blocks up to
// 2^launch.FWHTMaxLog2 (larger blocks run on the CPU); results are
// bit-identical to the CPU backend's.
func (b *Backend) FWHT(x []float32, rows, cols, log2Block int, normalize bool) error {
	if log2Block < 0 || log2Block > launch.FWHTMaxLog2 || rows < 0 || cols < 0 {
		return b.Backend.FWHT(x, rows, cols, log2Block, normalize)
	}
	bs := 1 << log2Block
	n := rows * cols
	if cols%bs != 0 || (rows != 0 && n/rows != cols) || len(x) < n || !fits32(4*n) {
		return b.Backend.FWHT(x, rows, cols, log2Block, normalize) // its error, or its result
	}
	if n == 0 {
		return nil
	}
	fp := launch.FWHTParams{Total: uint32(n), Log2B: uint32(log2Block)}
	if normalize {
		fp.Scaled, fp.Scale = 1, float32(1/math.Sqrt(float64(bs)))
	}
	l, err := launch.PlanFWHT(fp)
	if err != nil {
		return fmt.Errorf("metal: fwht: %w", err)
	}
	if err := b.dev.dispatch(l, []arg{{data: fp.Bytes(), param: true}, {data: f32bytes(x[:n]), out: true}}); err != nil {
		return fmt.Errorf("metal: fwht %dx%d block %d: %w", rows, cols, bs, err)
	}
	return nil
}

// RouterConfig selects an MoE router's scoring.
type RouterConfig struct {
	// K experts per token (≤ 8).
	K int
	// Sigmoid scores (GLM-4.x, DeepSeek-V3) instead of a softmax over all
	// experts (Qwen3-MoE).
	Sigmoid bool
	// Bias, when set (one per expert), is added to the scores for the
	// selection only (e_score_correction_bias).
	Bias []float32
	// Normalize divides the selected weights by their sum plus NormEps.
	Normalize bool
	NormEps   float32
	// Scaling multiplies the final weights (routed_scaling_factor; 0 means 1).
	Scaling float32
}

// Route picks the top cfg.K experts of each of tokens rows of router logits
// (tokens×experts, experts ≤ 256) on the GPU: idx and weights receive
// tokens×K entries, best first, ties to the lower expert index.
func (b *Backend) Route(logits []float32, tokens, experts int, cfg RouterConfig, idx []int32, weights []float32) error {
	if tokens < 0 || experts <= 0 || cfg.K <= 0 || cfg.K > experts || !fits32(tokens*experts) ||
		len(logits) < tokens*experts || len(idx) < tokens*cfg.K || len(weights) < tokens*cfg.K ||
		(cfg.Bias != nil && len(cfg.Bias) != experts) {
		return fmt.Errorf("metal: route: %d tokens × %d experts, k %d, %d logits, %d/%d outputs, %d biases: %w",
			tokens, experts, cfg.K, len(logits), len(idx), len(weights), len(cfg.Bias), kernels.ErrShape)
	}
	if tokens == 0 {
		return nil
	}
	rp := launch.RouterParams{Tokens: uint32(tokens), Experts: uint32(experts), K: uint32(cfg.K),
		NormEps: cfg.NormEps, Scaling: cfg.Scaling}
	if rp.Scaling == 0 {
		rp.Scaling = 1
	}
	if cfg.Sigmoid {
		rp.Mode = launch.RouterSigmoid
	}
	if cfg.Normalize {
		rp.Norm = 1
	}
	bias := cfg.Bias
	if bias != nil {
		rp.HasBias = 1
	} else {
		bias = make([]float32, 1)
	}
	l, err := launch.PlanRouter(rp)
	if err != nil {
		return fmt.Errorf("metal: route: %w", err)
	}
	n := tokens * cfg.K
	args := []arg{{data: rp.Bytes(), param: true}, {data: f32bytes(logits[:tokens*experts])}, {data: f32bytes(bias)},
		{data: i32bytes(idx[:n]), out: true}, {data: f32bytes(weights[:n]), out: true}}
	if err := b.dev.dispatch(l, args); err != nil {
		return fmt.Errorf("metal: route %d tokens: %w", tokens, err)
	}
	return nil
}

// ErrExperts reports experts that cannot share one grouped GEMM.
var ErrExperts = errors.New("metal: experts differ in format or shape")

// MoEGEMM computes the expert-grouped product: the assignments are sorted
// by expert, rows offsets[e] .. offsets[e+1]-1 of C (leading dimension ldc)
// belong to expert e and are X[rowmap[r]]·W_eᵀ (X with leading dimension
// ldx). All experts must share format and shape (and NVFP4 tensor scale).
// The expert weights are copied into one buffer per call.
func (b *Backend) MoEGEMM(x []float32, ldx int, experts []*quant.Packed, offsets, rowmap []int32, c []float32, ldc int) error {
	if len(experts) == 0 || len(offsets) != len(experts)+1 || offsets[0] != 0 {
		return fmt.Errorf("metal: moe-gemm: %d experts, %d offsets: %w", len(experts), len(offsets), kernels.ErrShape)
	}
	p, first, ok, err := weightArgs(experts[0])
	if err != nil {
		return fmt.Errorf("metal: moe-gemm: expert 0: %w", err)
	}
	if !ok {
		return fmt.Errorf("metal: moe-gemm: format %s: %w", experts[0].Format, kernels.ErrFormat)
	}
	rows, cols := experts[0].Rows, experts[0].Cols
	total := int(offsets[len(experts)])
	maxRows := 0
	for e := range experts {
		if offsets[e+1] < offsets[e] {
			return fmt.Errorf("metal: moe-gemm: offsets decrease at expert %d: %w", e, kernels.ErrShape)
		}
		maxRows = max(maxRows, int(offsets[e+1]-offsets[e]))
	}
	if len(rowmap) < total || checkMat("moe-gemm: C", c, total, rows, ldc) != nil || ldx < cols {
		return fmt.Errorf("metal: moe-gemm: %d rows for rowmap %d, C %d (ldc %d): %w", total, len(rowmap), len(c), ldc, kernels.ErrShape)
	}
	xrows := 0
	for _, r := range rowmap[:total] {
		if r < 0 {
			return fmt.Errorf("metal: moe-gemm: negative row %d: %w", r, kernels.ErrShape)
		}
		xrows = max(xrows, int(r)+1)
	}
	if err := checkMat("moe-gemm: X", x, xrows, cols, ldx); err != nil {
		return err
	}
	if total == 0 {
		return nil
	}
	var ws launch.Weights
	for e, w := range experts {
		pe, we, ok, err := weightArgs(w)
		if err != nil || !ok {
			return fmt.Errorf("metal: moe-gemm: expert %d: %v: %w", e, err, ErrExperts)
		}
		pe.TScale, p.TScale = 0, 0
		if pe != p || w.TensorScale != experts[0].TensorScale || (we.GIdx == nil) != (first.GIdx == nil) {
			return fmt.Errorf("metal: moe-gemm: expert %d (%s %dx%d) vs expert 0 (%s %dx%d): %w",
				e, w.Format, w.Rows, w.Cols, experts[0].Format, rows, cols, ErrExperts)
		}
		ws.Codes = append(ws.Codes, we.Codes...)
		ws.Scales = append(ws.Scales, we.Scales...)
		ws.Zeros = append(ws.Zeros, we.Zeros...)
		ws.GIdx = append(ws.GIdx, we.GIdx...)
	}
	p.TScale = experts[0].TensorScale
	if p.HasTScale == 0 {
		p.TScale = 1
	}
	xn, cn := (xrows-1)*ldx+cols, (total-1)*ldc+rows
	if !fits32(4*xn, 4*cn, len(ws.Codes), len(ws.Scales)) {
		return fmt.Errorf("metal: moe-gemm: buffers over 4 GiB: %w", kernels.ErrShape)
	}
	p.Experts, p.LDX, p.LDC = uint32(len(experts)), uint32(ldx), uint32(ldc)
	sb := make([]byte, 4)
	sb[0] = byte(launch.ScaleBytes(int(p.ScaleType)))
	args := append([]arg{{data: p.Bytes(), param: true}, {data: f32bytes(x[:xn])}}, weightBufs(ws)...)
	args = append(args, arg{data: f32bytes(c[:cn]), out: true}, arg{data: i32bytes(offsets)}, arg{data: i32bytes(rowmap[:total])},
		arg{data: sb, param: true})
	if err := b.dev.dispatch(launch.PlanMoEGEMM(p, maxRows), args); err != nil {
		return fmt.Errorf("metal: moe-gemm %d experts: %w", len(experts), err)
	}
	return nil
}
