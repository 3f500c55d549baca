//go:build amd64 && !purego

package kernels

import xcpu "golang.org/x/sys/cpu"

// haveSIMD reports whether the AVX2+FMA assembly kernels can run (decided
// once from CPUID; immutable afterwards).
var haveSIMD = xcpu.X86.HasAVX2 && xcpu.X86.HasFMA

func microKernelSIMD(kc int, ap, bp, c []float32, ldc int) { microKernelGo(kc, ap, bp, c, ldc) }

func dotF32(x, y []float32) float32 { return dotGo(x, y) }

func axpyF32(a float32, x, y []float32) { axpyGo(a, x, y) }

func fwhtSIMD(x []float32, log2Block int, scale float32) { fwhtGo(x, log2Block, scale) }
