//go:build linux && cgo

package shaders

/*
#cgo CFLAGS: -O2 -std=gnu11 -Wall -Wno-unused-function
#cgo LDFLAGS: -lm
#include <stdlib.h>
#include "emu_kernels.h"
#include "emu.h"
*/
import "C"

import (
	"fmt"
	"unsafe"

	"github.com/marlin-llm/marlin/metal/launch"
)

// Order is the order in which the emulator resumes the threads of a
// threadgroup between barriers. A kernel whose output depends on it has a
// data race.
type Order int

// Orders.
const (
	Forward Order = C.EMU_ORDER_FORWARD
	Reverse Order = C.EMU_ORDER_REVERSE
	Shuffle Order = C.EMU_ORDER_SHUFFLE
)

// Orders lists every Order, for tests.
var Orders = []Order{Forward, Reverse, Shuffle}

// cmem copies Go data into C memory (kernels hold pointers to each other's
// buffers, which cgo's rules forbid for Go memory) and frees it all at once.
// Every allocation is surrounded by guard bytes of 0xFF: a kernel that
// reads past a buffer gets NaNs (which the comparisons catch), and one that
// writes past it is reported by check.
type cmem struct{ allocs []callocation }

type callocation struct {
	base unsafe.Pointer
	n    int
}

// guard is the size of the 0xFF zones around each allocation.
const guard = 256

func (m *cmem) alloc(n int) unsafe.Pointer {
	base := C.malloc(C.size_t(n + 2*guard))
	if base == nil {
		panic("shaders: emulator out of C memory")
	}
	all := unsafe.Slice((*byte)(base), n+2*guard)
	for i := range all {
		all[i] = 0xff
	}
	clear(all[guard : guard+n])
	m.allocs = append(m.allocs, callocation{base, n})
	return unsafe.Add(base, guard)
}

// check reports a write outside any allocation's bounds.
func (m *cmem) check(kernel string) error {
	for i, a := range m.allocs {
		all := unsafe.Slice((*byte)(a.base), a.n+2*guard)
		for j, b := range all {
			if (j < guard || j >= guard+a.n) && b != 0xff {
				return fmt.Errorf("shaders: %s wrote out of bounds: allocation %d (%d bytes), offset %d", kernel, i, a.n, j-guard)
			}
		}
	}
	return nil
}

// run launches kernel and checks the guards.
func (m *cmem) run(kernel C.int, args unsafe.Pointer, l launch.Launch, order Order) error {
	if err := run(kernel, args, l, order); err != nil {
		return err
	}
	return m.check(l.Kernel)
}

func (m *cmem) bytes(b []byte) unsafe.Pointer {
	p := m.alloc(len(b))
	if len(b) > 0 {
		copy(unsafe.Slice((*byte)(p), len(b)), b)
	}
	return p
}

func (m *cmem) floats(f []float32) unsafe.Pointer {
	p := m.alloc(4 * len(f))
	if len(f) > 0 {
		copy(unsafe.Slice((*float32)(p), len(f)), f)
	}
	return p
}

func (m *cmem) uints(u []uint32) unsafe.Pointer {
	p := m.alloc(4 * len(u))
	if len(u) > 0 {
		copy(unsafe.Slice((*uint32)(p), len(u)), u)
	}
	return p
}

func (m *cmem) free() {
	for _, a := range m.allocs {
		C.free(a.base)
	}
}

func floatsOut(p unsafe.Pointer, n int) []float32 {
	out := make([]float32, n)
	if n > 0 {
		copy(out, unsafe.Slice((*float32)(p), n))
	}
	return out
}

func run(kernel C.int, args unsafe.Pointer, l launch.Launch, order Order) error {
	for _, g := range l.Groups {
		if g == 0 {
			return nil // empty grid: nothing to run, as on the GPU
		}
	}
	var buf [512]C.char
	rc := C.mqemu_run(kernel, args, C.uint(l.Groups[0]), C.uint(l.Groups[1]), C.uint(l.Groups[2]),
		C.uint(l.Threads[0]), C.uint(l.Threads[1]), C.uint(l.Threads[2]), C.int(order), &buf[0], C.int(len(buf)))
	if rc != 0 {
		return fmt.Errorf("shaders: emulating %s: %s", l.Kernel, C.GoString(&buf[0]))
	}
	return nil
}

func cparams(p launch.QParams) C.mq_qparams {
	return C.mq_qparams{
		elem: C.uint(p.Elem), bits: C.uint(p.Bits), scale_type: C.uint(p.ScaleType), asym: C.uint(p.Asym),
		rows: C.uint(p.Rows), cols: C.uint(p.Cols), group: C.uint(p.Group), ngroups: C.uint(p.NGroups),
		row_bytes: C.uint(p.RowBytes), has_tscale: C.uint(p.HasTScale), tscale: C.float(p.TScale),
		m: C.uint(p.M), ldx: C.uint(p.LDX), ldc: C.uint(p.LDC), beta: C.float(p.Beta), experts: C.uint(p.Experts),
		has_gidx: C.uint(p.HasGIdx),
	}
}

func (m *cmem) weights(a *C.mqemu_qargs, w launch.Weights) {
	a.W, a.S, a.Z = (*C.uchar)(m.bytes(w.Codes)), (*C.uchar)(m.bytes(w.Scales)), (*C.uchar)(m.bytes(w.Zeros))
	g := make([]uint32, len(w.GIdx))
	for i, v := range w.GIdx {
		g[i] = uint32(v)
	}
	a.G = (*C.int)(m.uints(g))
}

// EmuDequant runs mq_dequant under the emulator and returns the rows×cols
// dequantized weights.
func EmuDequant(p launch.QParams, w launch.Weights, order Order) ([]float32, error) {
	if err := w.Check(p, 1); err != nil {
		return nil, err
	}
	var m cmem
	defer m.free()
	n := int(p.Rows) * int(p.Cols)
	a := (*C.mqemu_qargs)(m.alloc(int(unsafe.Sizeof(C.mqemu_qargs{}))))
	a.p = cparams(p)
	m.weights(a, w)
	out := m.floats(make([]float32, n))
	a.C = (*C.float)(out)
	if err := m.run(C.MQEMU_DEQUANT, unsafe.Pointer(a), launch.PlanDequant(p), order); err != nil {
		return nil, err
	}
	return floatsOut(out, n), nil
}

// EmuGEMM runs mq_gemm (gemv false) or mq_gemv (gemv true) under the
// emulator: C = X·Wᵀ + p.Beta·C with X of p.M×p.LDX and C of p.M×p.LDC.
// It returns the new C.
func EmuGEMM(p launch.QParams, x []float32, w launch.Weights, c []float32, gemv bool, order Order) ([]float32, error) {
	if err := w.Check(p, 1); err != nil {
		return nil, err
	}
	if p.M > 0 && (len(x) < int(p.M-1)*int(p.LDX)+int(p.Cols) || len(c) < int(p.M-1)*int(p.LDC)+int(p.Rows)) {
		return nil, fmt.Errorf("shaders: x or c too short")
	}
	var m cmem
	defer m.free()
	a := (*C.mqemu_qargs)(m.alloc(int(unsafe.Sizeof(C.mqemu_qargs{}))))
	a.p = cparams(p)
	m.weights(a, w)
	a.X = (*C.float)(m.floats(x))
	out := m.floats(c)
	a.C = (*C.float)(out)
	l, k := launch.PlanGEMM(p), C.int(C.MQEMU_GEMM)
	if gemv {
		l, k = launch.PlanGEMV(p), C.MQEMU_GEMV
	}
	if err := m.run(k, unsafe.Pointer(a), l, order); err != nil {
		return nil, err
	}
	return floatsOut(out, len(c)), nil
}

// EmuMoEGEMM runs mq_moe_gemm: for expert e, output rows offsets[e] ..
// offsets[e+1]-1 are X[rowmap[r]]·W_eᵀ (+ Beta·C). W, S, Z hold p.Experts
// matrices back to back. C has offsets[E] rows of p.LDC.
func EmuMoEGEMM(p launch.QParams, x []float32, w launch.Weights, offsets, rowmap []uint32, c []float32, order Order) ([]float32, error) {
	e := int(p.Experts)
	if err := w.Check(p, e); err != nil {
		return nil, err
	}
	if len(offsets) != e+1 {
		return nil, fmt.Errorf("shaders: %d offsets for %d experts", len(offsets), e)
	}
	maxRows := 0
	for i := 0; i < e; i++ {
		if offsets[i+1] < offsets[i] {
			return nil, fmt.Errorf("shaders: offsets decrease at expert %d", i)
		}
		maxRows = max(maxRows, int(offsets[i+1]-offsets[i]))
	}
	total := int(offsets[e])
	if len(rowmap) < total || len(c) < total*int(p.LDC) {
		return nil, fmt.Errorf("shaders: rowmap or c too short")
	}
	for _, r := range rowmap[:total] {
		if int(r)*int(p.LDX)+int(p.Cols) > len(x) {
			return nil, fmt.Errorf("shaders: rowmap entry %d out of range", r)
		}
	}
	var m cmem
	defer m.free()
	a := (*C.mqemu_qargs)(m.alloc(int(unsafe.Sizeof(C.mqemu_qargs{}))))
	a.p = cparams(p)
	m.weights(a, w)
	a.X = (*C.float)(m.floats(x))
	a.offsets = (*C.uint)(m.uints(offsets))
	a.rowmap = (*C.uint)(m.uints(rowmap))
	a.scale_bytes = C.uint(launch.ScaleBytes(int(p.ScaleType)))
	out := m.floats(c)
	a.C = (*C.float)(out)
	if err := m.run(C.MQEMU_MOE_GEMM, unsafe.Pointer(a), launch.PlanMoEGEMM(p, maxRows), order); err != nil {
		return nil, err
	}
	return floatsOut(out, len(c)), nil
}

// EmuFWHT transforms x (blocks of 2^p.Log2B) under the emulator and returns
// the result.
func EmuFWHT(p launch.FWHTParams, x []float32, order Order) ([]float32, error) {
	if len(x) != int(p.Total) {
		return nil, fmt.Errorf("shaders: fwht of %d elements, params say %d", len(x), p.Total)
	}
	l, err := launch.PlanFWHT(p)
	if err != nil {
		return nil, err
	}
	var m cmem
	defer m.free()
	a := (*C.mqemu_fwht_args)(m.alloc(int(unsafe.Sizeof(C.mqemu_fwht_args{}))))
	a.p = C.mq_fwht_params{total: C.uint(p.Total), log2b: C.uint(p.Log2B), scaled: C.uint(p.Scaled), scale: C.float(p.Scale)}
	buf := m.floats(x)
	a.x = (*C.float)(buf)
	k := C.int(C.MQEMU_FWHT_SIMD)
	if l.Kernel == "mq_fwht_tg" {
		k = C.MQEMU_FWHT_TG
	}
	if err := m.run(k, unsafe.Pointer(a), l, order); err != nil {
		return nil, err
	}
	return floatsOut(buf, len(x)), nil
}

// EmuRouter runs mq_router_topk: logits are tokens×experts, bias (nil when
// !HasBias) has experts entries. It returns the expert ids and weights,
// tokens×k each.
func EmuRouter(p launch.RouterParams, logits, bias []float32, order Order) ([]uint32, []float32, error) {
	l, err := launch.PlanRouter(p)
	if err != nil {
		return nil, nil, err
	}
	if len(logits) != int(p.Tokens*p.Experts) || (p.HasBias != 0 && len(bias) != int(p.Experts)) {
		return nil, nil, fmt.Errorf("shaders: router inputs of %d logits, %d biases", len(logits), len(bias))
	}
	var m cmem
	defer m.free()
	a := (*C.mqemu_router_args)(m.alloc(int(unsafe.Sizeof(C.mqemu_router_args{}))))
	a.p = C.mq_router_params{tokens: C.uint(p.Tokens), experts: C.uint(p.Experts), k: C.uint(p.K), mode: C.uint(p.Mode),
		has_bias: C.uint(p.HasBias), norm: C.uint(p.Norm), norm_eps: C.float(p.NormEps), scaling: C.float(p.Scaling)}
	a.logits = (*C.float)(m.floats(logits))
	a.bias = (*C.float)(m.floats(bias))
	n := int(p.Tokens * p.K)
	idx := m.alloc(4 * n)
	wts := m.alloc(4 * n)
	a.idx = (*C.uint)(idx)
	a.w = (*C.float)(wts)
	if err := m.run(C.MQEMU_ROUTER, unsafe.Pointer(a), l, order); err != nil {
		return nil, nil, err
	}
	ids := make([]uint32, n)
	if n > 0 {
		copy(ids, unsafe.Slice((*uint32)(idx), n))
	}
	return ids, floatsOut(wts, n), nil
}

// cSizeofQParams is sizeof(mq_qparams) as C sees it (checked by a test).
const cSizeofQParams = C.sizeof_mq_qparams

// Element functions compiled from mq_formats.h, for bit-exact tests.

// CDecodeE4M3 is mq_e4m3.
func CDecodeE4M3(c uint8) float32 { return float32(C.mq_e4m3(C.uint(c))) }

// CDecodeE5M2 is mq_e5m2.
func CDecodeE5M2(c uint8) float32 { return float32(C.mq_e5m2(C.uint(c))) }

// CDecodeE8M0 is mq_e8m0.
func CDecodeE8M0(c uint8) float32 { return float32(C.mq_e8m0(C.uint(c))) }

// CDecodeE2M1 is mq_e2m1.
func CDecodeE2M1(c uint8) float32 { return float32(C.mq_e2m1(C.uint(c))) }

// CHalfToFloat is mq_half_bits_to_float (gcc's _Float16 conversion).
func CHalfToFloat(h uint16) float32 { return float32(C.mq_half_bits_to_float(C.ushort(h))) }

// CIntMagic is mq_int_magic.
func CIntMagic(code, zero uint32) float32 {
	return float32(C.mq_int_magic(C.uint(code), C.uint(zero)))
}

// Deliberately broken kernels of the emulator's self-test.
const (
	selfDiverge = iota // odd threads skip a barrier
	selfRace           // a read of another thread's threadgroup slot without a barrier
	selfSGLoad         // lanes of a SIMD group load different matrices
)

// emuSelfTest runs one of the emulator's deliberately broken kernels on one
// threadgroup of n threads and returns the race kernel's output.
func emuSelfTest(which int, n int, order Order) ([]float32, error) {
	var m cmem
	defer m.free()
	a := (*C.mqemu_fwht_args)(m.alloc(int(unsafe.Sizeof(C.mqemu_fwht_args{}))))
	buf := m.floats(make([]float32, n))
	a.x = (*C.float)(buf)
	k, name := C.int(C.MQEMU_TEST_DIVERGE), "test_diverge"
	switch which {
	case selfRace:
		k, name = C.MQEMU_TEST_RACE, "test_race"
	case selfSGLoad:
		k, name = C.MQEMU_TEST_SGLOAD, "test_sgload"
	}
	if err := m.run(k, unsafe.Pointer(a), launch.Launch{Kernel: name, Groups: [3]int{1, 1, 1}, Threads: [3]int{n, 1, 1}}, order); err != nil {
		return nil, err
	}
	return floatsOut(buf, n), nil
}

// CLevel is mq_level: the unscaled value of a code of an element encoding.
func CLevel(elem, bits int, code, zero uint32) float32 {
	return float32(C.mq_level(C.uint(elem), C.uint(bits), C.uint(code), C.uint(zero)))
}

// EmuDispatch runs a kernel of marlin.metal the way the Metal bridge
// dispatches it: bufs are its arguments in [[buffer(i)]] order (see
// launch.Bindings; parameter blocks as encoded by launch.QParams.Bytes and friends), l the
// grid. Every buffer is copied to C memory and back, so outputs land in
// bufs. It lets the metal package's host code run on Linux unchanged.
func EmuDispatch(l launch.Launch, bufs [][]byte, order Order) error {
	names, ok := launch.Bindings[l.Kernel]
	if !ok {
		return fmt.Errorf("shaders: no kernel %q", l.Kernel)
	}
	if len(bufs) != len(names) {
		return fmt.Errorf("shaders: %s takes %d buffers, got %d", l.Kernel, len(names), len(bufs))
	}
	var m cmem
	defer m.free()
	ptrs := make([]unsafe.Pointer, len(bufs))
	for i, b := range bufs {
		ptrs[i] = m.bytes(b)
	}
	param := func(size int) (unsafe.Pointer, error) {
		if len(bufs[0]) != size {
			return nil, fmt.Errorf("shaders: %s: parameter block of %d bytes, want %d", l.Kernel, len(bufs[0]), size)
		}
		return ptrs[0], nil
	}
	var args unsafe.Pointer
	var kernel C.int
	switch l.Kernel {
	case "mq_dequant", "mq_gemm", "mq_gemv", "mq_moe_gemm":
		pp, err := param(int(C.sizeof_mq_qparams))
		if err != nil {
			return err
		}
		a := (*C.mqemu_qargs)(m.alloc(int(unsafe.Sizeof(C.mqemu_qargs{}))))
		a.p = *(*C.mq_qparams)(pp)
		if l.Kernel == "mq_dequant" {
			a.W, a.S, a.Z, a.G, a.C = (*C.uchar)(ptrs[1]), (*C.uchar)(ptrs[2]), (*C.uchar)(ptrs[3]), (*C.int)(ptrs[4]), (*C.float)(ptrs[5])
			kernel = C.MQEMU_DEQUANT
		} else {
			a.X, a.W, a.S, a.Z, a.G, a.C = (*C.float)(ptrs[1]), (*C.uchar)(ptrs[2]), (*C.uchar)(ptrs[3]), (*C.uchar)(ptrs[4]), (*C.int)(ptrs[5]), (*C.float)(ptrs[6])
			kernel = C.MQEMU_GEMM
			if l.Kernel == "mq_gemv" {
				kernel = C.MQEMU_GEMV
			}
		}
		if l.Kernel == "mq_moe_gemm" {
			if len(bufs[9]) != 4 {
				return fmt.Errorf("shaders: mq_moe_gemm: scale_bytes of %d bytes", len(bufs[9]))
			}
			a.offsets, a.rowmap = (*C.uint)(ptrs[7]), (*C.uint)(ptrs[8])
			a.scale_bytes = *(*C.uint)(ptrs[9])
			kernel = C.MQEMU_MOE_GEMM
		}
		args = unsafe.Pointer(a)
	case "mq_fwht_simd", "mq_fwht_tg":
		pp, err := param(int(C.sizeof_mq_fwht_params))
		if err != nil {
			return err
		}
		a := (*C.mqemu_fwht_args)(m.alloc(int(unsafe.Sizeof(C.mqemu_fwht_args{}))))
		a.p = *(*C.mq_fwht_params)(pp)
		a.x = (*C.float)(ptrs[1])
		kernel = C.MQEMU_FWHT_SIMD
		if l.Kernel == "mq_fwht_tg" {
			kernel = C.MQEMU_FWHT_TG
		}
		args = unsafe.Pointer(a)
	case "mq_router_topk":
		pp, err := param(int(C.sizeof_mq_router_params))
		if err != nil {
			return err
		}
		a := (*C.mqemu_router_args)(m.alloc(int(unsafe.Sizeof(C.mqemu_router_args{}))))
		a.p = *(*C.mq_router_params)(pp)
		a.logits, a.bias, a.idx, a.w = (*C.float)(ptrs[1]), (*C.float)(ptrs[2]), (*C.uint)(ptrs[3]), (*C.float)(ptrs[4])
		kernel = C.MQEMU_ROUTER
		args = unsafe.Pointer(a)
	}
	if err := m.run(kernel, args, l, order); err != nil {
		return err
	}
	for i, b := range bufs {
		if len(b) > 0 {
			copy(b, unsafe.Slice((*byte)(ptrs[i]), len(b)))
		}
	}
	return nil
}
