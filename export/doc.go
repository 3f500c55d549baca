// Package export is the parent of marlin's writers: export/ggml (GGML
// block encoders, bit-exact with llama.cpp), export/llamacpp (GGUF for
// llama.cpp), export/native (marlin's packed safetensors layout and its
// loader) and export/ct (compressed-tensors and GPTQ safetensors layouts).
// The pack stage (stages/pack.go) drives them from a pipeline.
package export
