// Package export is the parent of marlin's writers for other runtimes:
// export/llamacpp (GGUF for llama.cpp, its blocks encoded by quant/ggml,
// bit-exact with llama.cpp) and export/ct (compressed-tensors and GPTQ
// safetensors layouts). marlin's own packed safetensors layout,
// which model/qmodel runs, is a model format with a reader and a writer:
// model/native. The pack stage (stages/pack.go) drives them from a
// pipeline.
package export
