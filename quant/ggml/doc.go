// Package ggml encodes float32 weights into GGML quantization blocks: the
// Q4_0, Q5_0, Q8_0, MXFP4, Q4_K and Q6_K block layouts that llama.cpp reads
// from GGUF files.
//
// Each encoder reproduces llama.cpp's reference quantizer
// (quantize_row_*_ref in ggml/src/ggml-quants.c, which is what
// llama-quantize runs when no importance matrix is given) bit for bit: the
// same float32 operation order, the same rounding helpers (nearest_int's
// 1.5·2^23 trick, roundf's ties away from zero, the (int8)(x+8.5) truncation
// of Q4_0, MXFP4's first-best search that breaks ties towards the smaller
// code) and the same scale searches of the K-quants. Products that feed a
// sum are wrapped in explicit float32 conversions so that the Go compiler
// never fuses them into FMA instructions, which would change low bits.
//
// The encoders are written by hand because no maintained Go library
// produces these layouts bit-exactly; the package holds encoders only. The
// GGUF container and the GGML type table (block sizes, names) live in
// model/gguf, which also holds the dequantizers the tests compare against.
//
// types.go holds the GGUF-type registry (Types): every tensor type marlin
// writes into GGUF, with its recipe, quantize-format, file-type and
// fallback facts and its codec wiring; quant.Formats, export/llamacpp's
// recipes and the pack stage's schema derive from it, and TestRegistry
// checks every row against model/gguf and llama-quantize's blocks.
//
// Grid (grid.go) is the other use of the package: the registry's block
// types with Format set (Q8_0, Q4_K, IQ4_XS, ...) as quantization grids, with llama.cpp's importance-weighted quantizers (weighted.go, the
// paths llama-quantize takes with an imatrix) to fit the block scales and
// per-element Round/SetCodes, so that GPTQ (quant/gptq) can choose the
// codes under fixed scales; Params and Value reproduce llama.cpp's
// dequantization bit for bit.
//
// Inputs must be finite: callers check for NaN/Inf first (the llama.cpp
// reference has undefined behaviour there too). A row length that is not a
// multiple of the block size is an error, never a panic.
package ggml
