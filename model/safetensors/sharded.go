package safetensors

import (
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/marlin-llm/marlin/internal/atomicfile"
)

// ShardedWriter streams a checkpoint split into shards of at most about
// maxShardBytes each (a tensor larger than that gets a shard of its own),
// named model-00001-of-0000N.safetensors like Hugging Face's, plus the
// model.safetensors.index.json that Open and transformers read. Tensors are
// written in declaration order with WriteTensor; Close finishes the last
// shard and writes the index (atomically, after every shard is in place).
type ShardedWriter struct {
	dir      string
	metadata map[string]string
	shards   [][]TensorInfo
	names    []string
	cur      int
	w        *Writer
	left     int // tensors left in the current shard
	total    int64
	err      error
}

// CreateSharded starts a sharded checkpoint in dir (which must exist).
func CreateSharded(dir string, metadata map[string]string, infos []TensorInfo, maxShardBytes int64) (*ShardedWriter, error) {
	if maxShardBytes <= 0 {
		return nil, fmt.Errorf("safetensors: shard size must be positive, got %d", maxShardBytes)
	}
	sw := &ShardedWriter{dir: dir, metadata: metadata}
	var cur []TensorInfo
	var curBytes int64
	seen := map[string]bool{}
	for _, ti := range infos {
		if seen[ti.Name] {
			return nil, fmt.Errorf("safetensors: duplicate tensor %q", ti.Name)
		}
		seen[ti.Name] = true
		n := int64(ti.DType.Size())
		for _, d := range ti.Shape {
			if d < 0 || (d != 0 && n > maxBytes/int64(d)) {
				return nil, fmt.Errorf("safetensors: tensor %q: bad shape %v", ti.Name, ti.Shape)
			}
			n *= int64(d)
		}
		if len(cur) > 0 && curBytes+n > maxShardBytes {
			sw.shards = append(sw.shards, cur)
			cur, curBytes = nil, 0
		}
		cur = append(cur, ti)
		curBytes += n
		sw.total += n
	}
	if len(cur) > 0 || len(sw.shards) == 0 {
		sw.shards = append(sw.shards, cur)
	}
	if err := sw.open(0); err != nil {
		return nil, err
	}
	return sw, nil
}

// ShardName is the file name of shard i (0-based) of n.
func ShardName(i, n int) string {
	return fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, n)
}

func (sw *ShardedWriter) open(i int) error {
	w, err := Create(filepath.Join(sw.dir, ShardName(i, len(sw.shards))), sw.metadata, sw.shards[i])
	if err != nil {
		sw.err = err
		return err
	}
	sw.cur, sw.w, sw.left = i, w, len(sw.shards[i])
	return nil
}

// WriteTensor writes the next declared tensor's data.
func (sw *ShardedWriter) WriteTensor(name string, data []byte) error {
	if sw.err != nil {
		return sw.err
	}
	for sw.left == 0 {
		if err := sw.next(); err != nil {
			return err
		}
	}
	if err := sw.w.WriteTensor(name, data); err != nil {
		sw.err = err
		return err
	}
	sw.names = append(sw.names, name)
	sw.left--
	return nil
}

// next closes the current shard and opens the following one.
func (sw *ShardedWriter) next() error {
	if err := sw.w.Close(); err != nil {
		sw.err = err
		return err
	}
	if sw.cur+1 >= len(sw.shards) {
		sw.err = fmt.Errorf("safetensors: more tensors written than declared")
		return sw.err
	}
	return sw.open(sw.cur + 1)
}

// Close finishes the last shard and writes the index.
func (sw *ShardedWriter) Close() error {
	if sw.err != nil {
		sw.Abort()
		return sw.err
	}
	if sw.cur != len(sw.shards)-1 || sw.left != 0 {
		sw.err = fmt.Errorf("safetensors: sharded writer closed before every tensor was written")
		sw.Abort()
		return sw.err
	}
	if err := sw.w.Close(); err != nil {
		sw.err = err
		return err
	}
	wm := map[string]string{}
	for i, shard := range sw.shards {
		for _, ti := range shard {
			wm[ti.Name] = ShardName(i, len(sw.shards))
		}
	}
	idx := map[string]any{"metadata": map[string]any{"total_size": sw.total}, "weight_map": wm}
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(sw.dir, IndexFile), append(b, '\n')); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	return nil
}

// Abort discards the shard being written (finished shards stay).
func (sw *ShardedWriter) Abort() {
	if sw.w != nil {
		sw.w.Abort()
	}
	if sw.err == nil {
		sw.err = fmt.Errorf("safetensors: sharded writer aborted")
	}
}
