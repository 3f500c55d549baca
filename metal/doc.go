// Package metal is marlin's Metal backend: a kernels.Backend whose
// quantized products (fused dequant-GEMM and decode GEMV for every quant
// format), Walsh-Hadamard transform, dequantization, MoE router top-k and
// expert-grouped GEMM run on an Apple GPU. Operations without a Metal
// kernel use the embedded CPU backend.
//
// Importing the package registers the backend as "metal" with
// kernels.Register. On macOS with cgo, Open creates the default MTLDevice
// and a command queue, and compiles the kernels from the embedded MSL
// sources of ./shaders with newLibraryWithSource, fast math off;
// pipelines are created once per kernel and cached. Buffers whose memory
// and length are page-aligned (mmapped weights) are wrapped without a copy
// (newBufferWithBytesNoCopy); others are copied into shared buffers and
// outputs copied back. Compile, pipeline and command-buffer errors come
// back as Go errors. Elsewhere Open fails with kernels.ErrUnavailable and
// `backend: auto` picks the CPU.
//
// The host logic (argument checks, parameter blocks, buffer order, grid
// shapes) is platform-independent and tested on Linux by running it
// against the shaders package's emulator instead of a GPU; only the
// Objective-C bridge (bridge_darwin.m) is Mac-only. See README.md for what
// was verified where.
package metal
