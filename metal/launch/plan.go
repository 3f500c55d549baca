// Package launch is the host side of marlin's Metal kernels (the MSL in
// ../shaders): the parameter blocks the kernels read (laid out as the C/MSL
// structs of the shared headers), the buffers of a packed weight, the
// buffer order of each kernel and the grid each dispatch uses. It is pure
// Go, shared by the Metal bridge (package metal) and the Linux emulator
// (package shaders), so both launch the kernels the same way.
package launch

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/marlin-llm/marlin/quant"
)

// Element and scale encodings; the values are quant.Elem and quant.ScaleType
// and the MQ_ELEM_*/MQ_SCALE_* macros of mq_formats.h (a test checks all
// three agree).
const (
	ElemE2M1 = 1
	ElemInt  = 2
	ElemNF   = 3
	ElemE4M3 = 4
	ElemE5M2 = 5

	ScaleF16  = 1
	ScaleBF16 = 2
	ScaleF32  = 3
	ScaleE8M0 = 4
	ScaleE4M3 = 5
)

// QParams mirrors mq_qparams (mq_formats.h) field for field: the packed
// weight and the product it takes part in. All fields are 32-bit, so the
// layout is the same in Go, C and MSL.
type QParams struct {
	Elem, Bits, ScaleType, Asym uint32
	Rows, Cols                  uint32 // N (out) × K (in)
	Group, NGroups, RowBytes    uint32
	HasTScale                   uint32
	TScale                      float32
	M, LDX, LDC                 uint32
	Beta                        float32
	Experts                     uint32
	HasGIdx                     uint32
	_                           [3]uint32
}

// QParamsSize is the size of mq_qparams in bytes.
const QParamsSize = 80

// WeightDesc describes a packed weight matrix in the quant.Packed layout.
type WeightDesc struct {
	Elem, Bits, ScaleType int
	Asym                  bool
	Rows, Cols            int
	// GroupSize along the input dimension; 0 or ≥ Cols means one group per row.
	GroupSize int
	// TensorScale, when HasTensorScale, multiplies every value last (NVFP4).
	HasTensorScale bool
	TensorScale    float32
	// GIdx: columns map to groups through a g_idx table (GPTQ act-order).
	GIdx bool
}

// ScaleBytes returns the size of one scale of encoding t (0 if unknown).
func ScaleBytes(t int) int {
	switch t {
	case ScaleF16, ScaleBF16:
		return 2
	case ScaleF32:
		return 4
	case ScaleE8M0, ScaleE4M3:
		return 1
	}
	return 0
}

// NewQParams validates d and returns the kernel parameter block (M, LDX,
// LDC and Beta are left for the caller).
func NewQParams(d WeightDesc) (QParams, error) {
	var p QParams
	switch d.Elem {
	case ElemE2M1:
		if d.Bits != 4 {
			return p, fmt.Errorf("launch: e2m1 with %d bits", d.Bits)
		}
	case ElemInt:
		if d.Bits < 2 || d.Bits > 8 {
			return p, fmt.Errorf("launch: int with %d bits (kernels support 2..8)", d.Bits)
		}
	case ElemNF:
		if d.Bits != 3 && d.Bits != 4 {
			return p, fmt.Errorf("launch: nf with %d bits", d.Bits)
		}
	case ElemE4M3, ElemE5M2:
		if d.Bits != 8 {
			return p, fmt.Errorf("launch: fp8 with %d bits", d.Bits)
		}
	default:
		return p, fmt.Errorf("launch: element encoding %d has no kernel", d.Elem)
	}
	if ScaleBytes(d.ScaleType) == 0 {
		return p, fmt.Errorf("launch: scale encoding %d has no kernel", d.ScaleType)
	}
	if d.Asym && d.Elem != ElemInt {
		return p, fmt.Errorf("launch: zero points on a non-integer format")
	}
	if d.Rows <= 0 || d.Cols <= 0 || d.Rows > 1<<24 || d.Cols > 1<<24 ||
		uint64(d.Rows)*uint64((d.Cols*d.Bits+7)/8) > math.MaxUint32 {
		return p, fmt.Errorf("launch: weight %dx%d out of range", d.Rows, d.Cols)
	}
	g := d.GroupSize
	if g <= 0 || g > d.Cols {
		g = d.Cols
	}
	p = QParams{
		Elem: uint32(d.Elem), Bits: uint32(d.Bits), ScaleType: uint32(d.ScaleType),
		Rows: uint32(d.Rows), Cols: uint32(d.Cols), Group: uint32(g),
		NGroups: uint32((d.Cols + g - 1) / g), RowBytes: uint32((d.Cols*d.Bits + 7) / 8),
		TScale: 1, Experts: 1,
	}
	if d.Asym {
		p.Asym = 1
	}
	if d.GIdx {
		p.HasGIdx = 1
	}
	if d.HasTensorScale {
		p.HasTScale, p.TScale = 1, d.TensorScale
	}
	return p, nil
}

// WeightBytes, ScaleLen and ZeroBytes are the buffer sizes one weight matrix
// (one expert) needs.
func (p QParams) WeightBytes() int { return int(p.Rows) * int(p.RowBytes) }

// ScaleLen returns the byte size of the scales of one weight matrix.
func (p QParams) ScaleLen() int {
	return int(p.Rows) * int(p.NGroups) * ScaleBytes(int(p.ScaleType))
}

// ZeroBytes returns the byte size of the zero points (0 when symmetric).
func (p QParams) ZeroBytes() int {
	if p.Asym == 0 {
		return 0
	}
	return int(p.Rows) * int(p.NGroups)
}

// Bytes encodes p as the little-endian block the kernels read.
func (p QParams) Bytes() []byte {
	u := []uint32{p.Elem, p.Bits, p.ScaleType, p.Asym, p.Rows, p.Cols, p.Group, p.NGroups,
		p.RowBytes, p.HasTScale, math.Float32bits(p.TScale), p.M, p.LDX, p.LDC,
		math.Float32bits(p.Beta), p.Experts, p.HasGIdx, 0, 0, 0}
	return words(u)
}

func words(u []uint32) []byte {
	b := make([]byte, 4*len(u))
	for i, v := range u {
		binary.LittleEndian.PutUint32(b[4*i:], v)
	}
	return b
}

// FWHTParams mirrors mq_fwht_params.
type FWHTParams struct {
	Total, Log2B, Scaled uint32
	Scale                float32
}

// Bytes encodes p for the kernel.
func (p FWHTParams) Bytes() []byte {
	return words([]uint32{p.Total, p.Log2B, p.Scaled, math.Float32bits(p.Scale)})
}

// Router modes (mq_moe.h).
const (
	RouterSoftmax = 0 // softmax over all experts, then top-k (Qwen3-MoE)
	RouterSigmoid = 1 // sigmoid scores, top-k of score+bias (GLM-4.x)
)

// RouterParams mirrors mq_router_params.
type RouterParams struct {
	Tokens, Experts, K, Mode, HasBias, Norm uint32
	NormEps, Scaling                        float32
}

// Bytes encodes p for the kernel.
func (p RouterParams) Bytes() []byte {
	return words([]uint32{p.Tokens, p.Experts, p.K, p.Mode, p.HasBias, p.Norm,
		math.Float32bits(p.NormEps), math.Float32bits(p.Scaling)})
}

// Limits of the kernels (mq_*.h).
const (
	GEMMTile       = 32
	GEMVMaxM       = 8
	FWHTMaxLog2    = 12
	RouterMaxE     = 256
	RouterMaxK     = 8
	fwhtSIMDMaxLog = 5
)

// Launch is one dispatch: the kernel function, the number of threadgroups
// and the threads per threadgroup (dispatchThreadgroups:threadsPerThreadgroup:).
type Launch struct {
	Kernel  string
	Groups  [3]int
	Threads [3]int
}

func cdiv(a, b int) int { return (a + b - 1) / b }

// PlanDequant launches mq_dequant over a rows×cols weight.
func PlanDequant(p QParams) Launch {
	return Launch{"mq_dequant", [3]int{cdiv(cdiv(int(p.Cols), 8), 32), cdiv(int(p.Rows), 4), 1}, [3]int{32, 4, 1}}
}

// PlanGEMM launches mq_gemm for p.M rows of X.
func PlanGEMM(p QParams) Launch {
	return Launch{"mq_gemm", [3]int{cdiv(int(p.Rows), GEMMTile), cdiv(int(p.M), GEMMTile), 1}, [3]int{128, 1, 1}}
}

// PlanGEMV launches mq_gemv (any M; it is meant for M ≤ GEMVMaxM).
func PlanGEMV(p QParams) Launch {
	return Launch{"mq_gemv", [3]int{cdiv(int(p.Rows), 4), cdiv(int(p.M), GEMVMaxM), 1}, [3]int{128, 1, 1}}
}

// PlanMoEGEMM launches mq_moe_gemm for p.Experts experts of which the
// largest has maxRows assigned rows.
func PlanMoEGEMM(p QParams, maxRows int) Launch {
	return Launch{"mq_moe_gemm", [3]int{cdiv(int(p.Rows), GEMMTile), max(1, cdiv(maxRows, GEMMTile)), int(p.Experts)}, [3]int{128, 1, 1}}
}

// PlanFWHT chooses the SIMD-shuffle kernel for blocks up to 32 and the
// threadgroup-memory kernel up to 2^FWHTMaxLog2.
func PlanFWHT(p FWHTParams) (Launch, error) {
	if p.Log2B > FWHTMaxLog2 {
		return Launch{}, fmt.Errorf("launch: fwht block 2^%d over 2^%d", p.Log2B, FWHTMaxLog2)
	}
	b := 1 << p.Log2B
	if int(p.Total)%b != 0 {
		return Launch{}, fmt.Errorf("launch: fwht of %d elements in blocks of %d", p.Total, b)
	}
	if p.Log2B <= fwhtSIMDMaxLog {
		return Launch{"mq_fwht_simd", [3]int{cdiv(int(p.Total), 128), 1, 1}, [3]int{128, 1, 1}}, nil
	}
	return Launch{"mq_fwht_tg", [3]int{int(p.Total) / b, 1, 1}, [3]int{min(256, b/2), 1, 1}}, nil
}

// PlanRouter launches mq_router_topk (4 tokens per threadgroup).
func PlanRouter(p RouterParams) (Launch, error) {
	if p.Experts == 0 || p.Experts > RouterMaxE || p.K == 0 || p.K > RouterMaxK || p.K > p.Experts {
		return Launch{}, fmt.Errorf("launch: router with %d experts, top-%d (limits %d, %d)", p.Experts, p.K, RouterMaxE, RouterMaxK)
	}
	return Launch{"mq_router_topk", [3]int{cdiv(int(p.Tokens), 4), 1, 1}, [3]int{128, 1, 1}}, nil
}

// Weights are the buffers of a packed weight (quant.Packed's Codes, Scales,
// Zeros and GIdx), possibly several experts' matrices back to back.
type Weights struct {
	Codes, Scales, Zeros []byte
	GIdx                 []int32
}

// Check verifies that w holds experts matrices described by p, and that
// every g_idx entry names a group (a kernel would read out of bounds).
func (w Weights) Check(p QParams, experts int) error {
	if len(w.Codes) < experts*p.WeightBytes() || len(w.Scales) < experts*p.ScaleLen() || len(w.Zeros) < experts*p.ZeroBytes() {
		return fmt.Errorf("launch: packed buffers too short: %d/%d/%d bytes for %d×(%d, %d, %d)",
			len(w.Codes), len(w.Scales), len(w.Zeros), experts, p.WeightBytes(), p.ScaleLen(), p.ZeroBytes())
	}
	if p.HasGIdx != 0 {
		if len(w.GIdx) < experts*int(p.Cols) {
			return fmt.Errorf("launch: g_idx has %d entries, want %d", len(w.GIdx), experts*int(p.Cols))
		}
		for i, g := range w.GIdx[:experts*int(p.Cols)] {
			if g < 0 || uint32(g) >= p.NGroups {
				return fmt.Errorf("launch: g_idx[%d] = %d outside [0, %d)", i, g, p.NGroups)
			}
		}
	}
	return nil
}

// FromPacked describes a quant.Packed weight for the kernels and returns its
// buffers. Formats without a kernel (bf16, f16) give an error.
func FromPacked(pk *quant.Packed) (QParams, Weights, error) {
	if pk == nil {
		return QParams{}, Weights{}, fmt.Errorf("launch: nil packed weight")
	}
	if err := pk.Validate(); err != nil {
		return QParams{}, Weights{}, fmt.Errorf("launch: %w", err)
	}
	f := pk.Format
	if !f.Quantized() {
		return QParams{}, Weights{}, fmt.Errorf("launch: format %s is not quantized", f.Name)
	}
	p, err := NewQParams(WeightDesc{
		Elem: int(f.Elem), Bits: f.Bits, ScaleType: int(f.Scale), Asym: f.Asym,
		Rows: pk.Rows, Cols: pk.Cols, GroupSize: f.Group(pk.Cols),
		HasTensorScale: f.TensorScale, TensorScale: pk.TensorScale, GIdx: pk.GIdx != nil,
	})
	if err != nil {
		return QParams{}, Weights{}, fmt.Errorf("launch: format %s: %w", f, err)
	}
	return p, Weights{Codes: pk.Codes, Scales: pk.Scales, Zeros: pk.Zeros, GIdx: pk.GIdx}, nil
}

// Bindings lists, for each kernel of marlin.metal, the names of its
// arguments in [[buffer(i)]] order. The host binds buffers in this order; a
// test parses marlin.metal and checks that it agrees.
var Bindings = map[string][]string{
	"mq_dequant":     {"p", "W", "S", "Z", "G", "out"},
	"mq_gemm":        {"p", "X", "W", "S", "Z", "G", "C"},
	"mq_gemv":        {"p", "X", "W", "S", "Z", "G", "C"},
	"mq_fwht_simd":   {"p", "x"},
	"mq_fwht_tg":     {"p", "x"},
	"mq_router_topk": {"p", "logits", "bias", "out_idx", "out_w"},
	"mq_moe_gemm":    {"p", "X", "W", "S", "Z", "G", "C", "offsets", "rowmap", "scale_bytes"},
}
