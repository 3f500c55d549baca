package ct

import (
	"encoding/json"
	"fmt"
	"strings"

	exp "github.com/marlin-llm/marlin/export"
	"github.com/marlin-llm/marlin/model/safetensors"
	"github.com/marlin-llm/marlin/quant/hadamard"
	"github.com/marlin-llm/marlin/tensor"
)

// Exporter is the pack stage's compressed-tensors format (vLLM /
// llm-compressor), or with GPTQ set its gptq format (AutoGPTQ v1).
type Exporter struct{ GPTQ bool }

var _ exp.ShardExporter = Exporter{}

// Doc implements export.Exporter.
func (e Exporter) Doc() string {
	if e.GPTQ {
		return "AutoGPTQ v1"
	}
	return "vLLM / llm-compressor"
}

// NeedsModel implements export.Exporter: config.json gets the
// quantization_config.
func (Exporter) NeedsModel() bool { return true }

// Validate implements export.Exporter; the format has no settings of its
// own.
func (Exporter) Validate(exp.Settings) []*exp.FieldError { return nil }

// shardReport is what a shard tells the index.
type shardReport struct {
	Schemes map[string]Scheme `json:"schemes,omitempty"` // compressed-tensors: module → scheme
	Plain   []string          `json:"plain,omitempty"`   // unquantized 2-D module weights
	GPTQ    *GPTQConfig       `json:"gptq,omitempty"`
}

type shard struct {
	gptq   bool
	format string
	ts     []*tensor.Tensor
	rep    shardReport
}

// NewShard implements export.ShardExporter.
func (e Exporter) NewShard(s exp.Settings) exp.Shard {
	return &shard{gptq: e.GPTQ, format: s.Format, rep: shardReport{Schemes: map[string]Scheme{}}}
}

// plainTensor strips Meta (safetensors has no per-tensor metadata).
func plainTensor(t *tensor.Tensor) *tensor.Tensor {
	return &tensor.Tensor{Name: t.Name, DType: t.DType, Shape: t.Shape, Data: t.Data}
}

// Add implements export.Shard.
func (sh *shard) Add(n string, ws exp.Weights) error {
	t, p, err := ws.Main(n)
	if err != nil {
		return err
	}
	if p != nil && t.Meta[hadamard.MetaInputPlacement] == hadamard.PlacementOnline {
		return fmt.Errorf("%s: its codes need an online input rotation (MR-GPTQ on a weight whose input the rotate stage does not rotate) that %s checkpoints cannot express: pack it as native or gguf, or quantize it with method gptq", n, sh.format)
	}
	if sh.gptq {
		if p == nil {
			sh.ts = append(sh.ts, plainTensor(t))
			return nil
		}
		out, cfg, err := GPTQTensors(n, p)
		if err != nil {
			return err
		}
		if sh.rep.GPTQ != nil && *sh.rep.GPTQ != cfg {
			return fmt.Errorf("%s: GPTQ settings %+v differ from %+v (a GPTQ checkpoint has one setting)", n, cfg, *sh.rep.GPTQ)
		}
		sh.rep.GPTQ = &cfg
		sh.ts = append(sh.ts, out...)
		return nil
	}
	if p == nil {
		sh.ts = append(sh.ts, plainTensor(t))
		if len(t.Shape) == 2 && strings.HasSuffix(n, ".weight") {
			sh.rep.Plain = append(sh.rep.Plain, strings.TrimSuffix(n, ".weight"))
		}
		return nil
	}
	out, sch, err := Tensors(n, p)
	if err != nil {
		return err
	}
	sh.ts = append(sh.ts, out...)
	if sch.Format != "" {
		sh.rep.Schemes[strings.TrimSuffix(n, ".weight")] = sch
	}
	return nil
}

// Write implements export.Shard: a safetensors file, tensors sorted for
// alignment.
func (sh *shard) Write(path string) ([]string, int64, any, error) {
	safetensors.SortForAlignment(sh.ts)
	var names []string
	var size int64
	for _, t := range sh.ts {
		names = append(names, t.Name)
		size += int64(len(t.Data))
	}
	if err := safetensors.WriteFile(path, sh.ts, map[string]string{"format": "pt"}); err != nil {
		return nil, 0, nil, err
	}
	return names, size, sh.rep, nil
}

// IndexFiles implements export.ShardExporter: the index goes through write.
func (Exporter) IndexFiles(int) []string { return nil }

// WriteIndex implements export.ShardExporter: a safetensors index when
// there are several shards, and the quantization_config.
func (e Exporter) WriteIndex(_ string, _ exp.Settings, shards []exp.ShardReport, write func(string, []byte) error) (any, error) {
	schemes := map[string]Scheme{}
	var plain []string
	var gptq *GPTQConfig
	for _, sh := range shards {
		var r shardReport
		if err := json.Unmarshal(sh.Report, &r); err != nil {
			return nil, fmt.Errorf("shard %s: %w", sh.File, err)
		}
		for k, v := range r.Schemes {
			schemes[k] = v
		}
		plain = append(plain, r.Plain...)
		if r.GPTQ != nil {
			if gptq != nil && *gptq != *r.GPTQ {
				return nil, fmt.Errorf("shards disagree on GPTQ settings: %+v vs %+v", *gptq, *r.GPTQ)
			}
			gptq = r.GPTQ
		}
	}
	if len(shards) > 1 {
		weightMap, total := exp.SafetensorsIndex(shards)
		b, err := json.MarshalIndent(map[string]any{"metadata": map[string]any{"total_size": total}, "weight_map": weightMap}, "", "  ")
		if err != nil {
			return nil, err
		}
		if err := write(safetensors.IndexFile, append(b, '\n')); err != nil {
			return nil, err
		}
	}
	switch {
	case e.GPTQ && gptq != nil:
		return gptq.Map(), nil
	case !e.GPTQ && len(schemes) > 0:
		qc, err := QuantizationConfig(schemes, plain)
		if err != nil {
			return nil, err
		}
		return qc, nil
	}
	return nil, nil
}
