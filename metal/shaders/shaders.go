// Package shaders holds marlin's Metal Shading Language kernels and, on
// Linux with cgo, an emulator that runs the very same kernel code on the
// CPU. The Go API is the emulator's (Emu*), for tests; the metal package
// embeds the sources of this directory (marlin.metal, mq_*.h) without
// importing this package, so production binaries carry no emulator.
//
// The arithmetic of every kernel (element and scale decoding, the GEMM tile
// loop, FWHT butterflies, router top-k) lives in the mq_*.h headers, written
// in the dialect shared by MSL and C (mq_compat.h). marlin.metal holds only
// the `kernel` entry points: argument binding and threadgroup arrays. On a
// Mac, metal.LibrarySource inlines the headers into one source string that
// the metal package compiles with newLibraryWithSource. On Linux, emu.c and
// emu_kernels.c compile the same headers with gcc (half is _Float16) and run
// whole kernels under a small grid emulator (fibers per thread, barriers,
// SIMD-group reductions and shuffles, 8x8 simdgroup_matrix), which the tests
// compare with quant/ and kernels/. Launch parameters and grids come from
// package launch, as on the GPU.
//
// Why hand-written: no Go library emulates Metal's compute model, and the
// point is to test our own kernel source, so the emulator is ours (about 300
// lines of C); it is deliberately simple (one OS thread, ucontext fibers).
package shaders
