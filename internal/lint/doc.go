// Package lint holds no code: its tests enforce repository-wide conventions
// that the compiler does not, in the manner of cockroachdb/pebble's
// internal/lint. TestForbiddenImports keeps imports pointing down: the
// computing packages (tensor, quant, kernels, metal, model, export, report)
// never link pipeline, stages or cmd, nor the heavy dependencies those bring
// (Apache Arrow, YAML, JSON Schema, progress bars).
package lint
