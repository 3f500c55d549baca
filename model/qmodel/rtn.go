package qmodel

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/marlin-llm/marlin/internal/atomicfile"
	"github.com/marlin-llm/marlin/model/native"
	"github.com/marlin-llm/marlin/model/safetensors"
	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/tensor"
)

// WriteRTN quantizes the projection weights of the Hugging Face model in
// src with round-to-nearest to format and writes a one-shard native
// checkpoint (with config.json and tokenizer files) to dst. Embeddings,
// lm_head, norms and routers stay as stored. It is the quick way to get a
// packed model for tests, benchmarks and `generate` without a pipeline.
func WriteRTN(ctx context.Context, src, dst, format string) error {
	f, err := quant.Lookup(format)
	if err != nil {
		return fmt.Errorf("qmodel: %w", err)
	}
	ck, err := safetensors.Open(src)
	if err != nil {
		return fmt.Errorf("qmodel: %w", err)
	}
	defer ck.Close()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("qmodel: %w", err)
	}
	var ts []*tensor.Tensor
	weights := map[string]string{}
	for _, name := range ck.Names() {
		t, err := ck.Tensor(name)
		if err != nil {
			return fmt.Errorf("qmodel: %w", err)
		}
		if len(t.Shape) != 2 || !strings.HasSuffix(name, "_proj.weight") {
			ts = append(ts, t)
			continue
		}
		p, err := quant.QuantizeTensor(ctx, t, f, &quant.Options{Name: name})
		if err != nil {
			return fmt.Errorf("qmodel: %s: %w", name, err)
		}
		ts = append(ts, p.ToTensors(name, map[string]string{quant.MetaMethod: "rtn", quant.MetaShape: quant.FormatShape(t.Shape)})...)
		weights[name] = f.String()
	}
	shard := native.ShardName(0, 1)
	names, size, err := native.WriteShard(filepath.Join(dst, shard), ts)
	if err != nil {
		return fmt.Errorf("qmodel: %w", err)
	}
	wm := map[string]string{}
	for _, n := range names {
		wm[n] = shard
	}
	if err := native.WriteIndex(dst, wm, size, native.Manifest{Source: src, Weights: weights, Shards: []string{shard}}); err != nil {
		return fmt.Errorf("qmodel: %w", err)
	}
	for _, fn := range []string{"config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"} {
		b, err := os.ReadFile(filepath.Join(src, fn))
		if os.IsNotExist(err) && fn != "config.json" {
			continue
		}
		if err != nil {
			return fmt.Errorf("qmodel: %w", err)
		}
		if err := atomicfile.WriteFile(filepath.Join(dst, fn), b); err != nil {
			return fmt.Errorf("qmodel: %w", err)
		}
	}
	return nil
}
