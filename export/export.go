package export

import (
	"context"
	"encoding/json"
	"log/slog"

	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/tensor"
)

// Weights serves the tensors to export by name.
type Weights interface {
	// Group returns a weight's tensors: the weight itself and its packed
	// companions (scales, zeros, g_idx).
	Group(name string) ([]*tensor.Tensor, error)
	// Main returns the weight tensor and, when it is quantized, its Packed
	// form (nil otherwise).
	Main(name string) (*tensor.Tensor, *quant.Packed, error)
}

// Rule overrides a tensor's type in formats that choose types per tensor
// (gguf): the first rule whose glob matches a tensor's name wins.
type Rule struct {
	Match string `yaml:"match" json:"match" jsonschema:"description=path.Match glob on the llama.cpp tensor name or the Hugging Face source name (e.g. *.ffn_down_exps.* or model.layers.*.mlp.gate.weight)"`
	Type  string `yaml:"type" json:"type" jsonschema:"description=GGUF type of the matching tensors: one of the writable types gguf_type lists (case-insensitive); norm/router and 1-D tensors stay f32 and a type whose block does not divide the row size falls back as gguf_type says"`
}

// Settings are the pack stage's settings an exporter reads.
type Settings struct {
	// Format is the export format's name.
	Format string
	// Model is the model directory (config.json, tokenizer), resolved
	// against the job file; "" when the job names none.
	Model string
	// ModelAsGiven is the model path as the job file writes it.
	ModelAsGiven string
	// GGUFType, Rules, TokenizerPre and Name are gguf's settings.
	GGUFType     string
	Rules        []Rule
	TokenizerPre string
	Name         string
	// HasImatrix: the quantized weights had importance weights (a gguf
	// mixture recipe's choice depends on it).
	HasImatrix bool
}

// Exporter is one export format of the pack stage. It is either a
// FileExporter or a ShardExporter.
type Exporter interface {
	// Doc is the format's description for the schema ("llama.cpp").
	Doc() string
	// NeedsModel reports whether the format needs the model directory.
	NeedsModel() bool
	// Validate checks the format's own settings without a model; errors
	// name the field (*FieldError).
	Validate(s Settings) []*FieldError
}

// FieldError is a settings error of one field.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }

// Unwrap returns the underlying error.
func (e *FieldError) Unwrap() error { return e.Err }

// FileExporter writes one file from every weight (gguf).
type FileExporter interface {
	Exporter
	// WriteFile writes the file at path. names are the weights in upstream
	// order; shapes holds the shapes of plain (unquantized) weights known
	// without loading them. It returns the Meta the stage reports.
	WriteFile(ctx context.Context, path string, s Settings, ws Weights, names []string, shapes map[string][]int, log *slog.Logger) (map[string]string, error)
}

// ShardExporter writes safetensors shards, each from a part of the
// weights, and then an index from the shards' reports.
type ShardExporter interface {
	Exporter
	// NewShard starts one shard.
	NewShard(s Settings) Shard
	// IndexFiles names the files WriteIndex writes into the output
	// directory itself rather than through write (the stage checks their
	// paths first).
	IndexFiles(nShards int) []string
	// WriteIndex writes the index of the shards (in order) into dir; write
	// writes one file there atomically. It returns the
	// quantization_config for config.json (nil: none).
	WriteIndex(dir string, s Settings, shards []ShardReport, write func(name string, b []byte) error) (any, error)
}

// Shard collects one shard's tensors.
type Shard interface {
	// Add converts a weight and its companions into the shard's tensors.
	Add(name string, ws Weights) error
	// Write writes the shard file at path and returns the tensor names in
	// file order, their data bytes, and the report WriteIndex reads (it
	// marshals to a JSON object without the keys file, names and size).
	Write(path string) (names []string, size int64, report any, err error)
}

// ShardReport is what one shard reports to the index.
type ShardReport struct {
	File  string
	Names []string
	Size  int64
	// Report is the shard's own report (Shard.Write) as JSON.
	Report json.RawMessage
}

// SafetensorsIndex is the model.safetensors.index.json of shards: every
// tensor name mapped to its shard file, with the total data size.
func SafetensorsIndex(shards []ShardReport) (weightMap map[string]string, total int64) {
	weightMap = map[string]string{}
	for _, sh := range shards {
		for _, n := range sh.Names {
			weightMap[n] = sh.File
		}
		total += sh.Size
	}
	return weightMap, total
}
