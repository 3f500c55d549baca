// Package native is the pack stage's native format: marlin's packed
// safetensors checkpoint, written by model/native (model/qmodel runs it).
package native

import (
	"encoding/json"
	"fmt"

	exp "github.com/marlin-llm/marlin/export"
	model "github.com/marlin-llm/marlin/model/native"
	"github.com/marlin-llm/marlin/tensor"
)

// Exporter is the pack stage's native format.
type Exporter struct{}

var _ exp.ShardExporter = Exporter{}

// Doc implements export.Exporter.
func (Exporter) Doc() string { return "marlin's packed safetensors" }

// NeedsModel implements export.Exporter: the model's config and tokenizer
// are copied when given.
func (Exporter) NeedsModel() bool { return false }

// Validate implements export.Exporter; the format has no settings of its
// own.
func (Exporter) Validate(exp.Settings) []*exp.FieldError { return nil }

// shardReport is what a shard tells the index.
type shardReport struct {
	Weights map[string]string `json:"weights,omitempty"` // weight → format
	Rot     map[string]string `json:"rotation,omitempty"`
}

type shard struct {
	ts  []*tensor.Tensor
	rep shardReport
}

// NewShard implements export.ShardExporter.
func (Exporter) NewShard(exp.Settings) exp.Shard {
	return &shard{rep: shardReport{Weights: map[string]string{}, Rot: map[string]string{}}}
}

// Add implements export.Shard: the weight and its companions as they are.
func (sh *shard) Add(n string, ws exp.Weights) error {
	group, err := ws.Group(n)
	if err != nil {
		return err
	}
	t, p, err := ws.Main(n)
	if err != nil {
		return err
	}
	sh.ts = append(sh.ts, group...)
	if p != nil {
		sh.rep.Weights[n] = p.Format.String()
		for k, v := range model.RotationMeta(t.Meta) {
			sh.rep.Rot[k] = v
		}
	}
	return nil
}

// Write implements export.Shard (model/native.WriteShard).
func (sh *shard) Write(path string) ([]string, int64, any, error) {
	names, size, err := model.WriteShard(path, sh.ts)
	if err != nil {
		return nil, 0, nil, err
	}
	return names, size, sh.rep, nil
}

// IndexFiles implements export.ShardExporter: WriteIndex writes the index
// and the manifest itself.
func (Exporter) IndexFiles(int) []string { return []string{model.IndexFile, model.ManifestFile} }

// WriteIndex implements export.ShardExporter: the index and marlin.json
// (model/native.WriteIndex), for one shard too.
func (Exporter) WriteIndex(dir string, s exp.Settings, shards []exp.ShardReport, _ func(string, []byte) error) (any, error) {
	man := model.Manifest{Source: s.ModelAsGiven, Weights: map[string]string{}, Rotation: map[string]string{}}
	for _, sh := range shards {
		var r shardReport
		if err := json.Unmarshal(sh.Report, &r); err != nil {
			return nil, fmt.Errorf("shard %s: %w", sh.File, err)
		}
		man.Shards = append(man.Shards, sh.File)
		for k, v := range r.Weights {
			man.Weights[k] = v
		}
		for k, v := range r.Rot {
			man.Rotation[k] = v
		}
	}
	weightMap, total := exp.SafetensorsIndex(shards)
	return nil, model.WriteIndex(dir, weightMap, total, man)
}
