// Package export is the interface between the pack stage and marlin's
// writers for other runtimes: an Exporter per export format, either a
// FileExporter (one file from every weight: export/llamacpp, GGUF for
// llama.cpp, its blocks encoded by quant/ggml bit-exactly) or a
// ShardExporter (safetensors shards and an index: export/native, marlin's
// packed layout written by model/native, which model/qmodel runs;
// export/ct, compressed-tensors and GPTQ). The exporters see the
// upstream weights through Weights and the stage's settings as Settings;
// they import neither pipeline nor stages. The pack stage
// (stages/pack.go) plans the tasks and walks the registry of formats in
// stages/pack_formats.go.
package export
