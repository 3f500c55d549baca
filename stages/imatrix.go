package stages

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"sort"

	"github.com/marlin-llm/marlin/export/llamacpp"
	"github.com/marlin-llm/marlin/model/gguf"
	"github.com/marlin-llm/marlin/pipeline"
	"github.com/marlin-llm/marlin/quant/gptq"
)

// The importance matrix export (quantize `imatrix:`): llama.cpp's
// imatrix is, per Linear, the sum of squared inputs of every column and the
// token count; marlin's Hessians H = 2XᵀX/n hold it on their diagonal
// (Σx² = diag·n/2). Layer tasks record it in their Meta; the imatrix task
// writes llama-imatrix's GGUF format (general.type imatrix, tensors
// "<name>.in_sum2" F32 [cols, n_mat] and "<name>.counts" F32 [n_mat], routed
// experts stacked as llama.cpp stacks them), which llama-quantize
// --imatrix reads.

// metaImatrix is the Meta key of a layer task's imatrix entries.
const metaImatrix = "quant.imatrix"

// imatrixKey is the key of the imatrix task.
const imatrixKey = "quantize-imatrix"

// imatrixEntry is one weight's input statistics.
type imatrixEntry struct {
	Name   string `json:"name"`
	Tokens int64  `json:"tokens"`
	// Sum2 is base64 of little-endian float32 Σx² per column.
	Sum2 string `json:"sum2"`
}

func newImatrixEntry(name string, h *gptq.Hessian) imatrixEntry {
	d := h.Diag()
	b := make([]byte, 4*len(d))
	n := float64(h.Samples())
	for i, v := range d {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(float32(v*n/2)))
	}
	return imatrixEntry{Name: name, Tokens: h.Samples(), Sum2: base64.StdEncoding.EncodeToString(b)}
}

func (e imatrixEntry) sum2() ([]float32, error) {
	b, err := base64.StdEncoding.DecodeString(e.Sum2)
	if err != nil || len(b)%4 != 0 {
		return nil, fmt.Errorf("imatrix entry %s: bad data", e.Name)
	}
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out, nil
}

// runImatrix gathers the layer tasks' entries and writes the imatrix GGUF.
func (s *quantizeStage) runImatrix(refs []pipeline.TaskRef, dataset string) func(context.Context, *pipeline.TaskEnv) (*pipeline.Output, error) {
	return func(ctx context.Context, env *pipeline.TaskEnv) (*pipeline.Output, error) {
		fail := func(err error) (*pipeline.Output, error) { return nil, fmt.Errorf("quantize imatrix: %w", err) }
		type slot struct {
			cols   int
			sum2   map[int][]float32 // expert (−1: none) → Σx²
			counts map[int]int64
			nexp   int
		}
		slots := map[string]*slot{}
		for _, r := range refs {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			o, err := env.Input(r)
			if err != nil {
				return fail(err)
			}
			js := o.Meta[metaImatrix]
			if js == "" {
				continue
			}
			var es []imatrixEntry
			if err := json.Unmarshal([]byte(js), &es); err != nil {
				return fail(fmt.Errorf("%s: %w", r.Key, err))
			}
			for _, e := range es {
				name, expert, ok := llamacpp.GGUFName(e.Name)
				if !ok {
					continue // no llama.cpp tensor (e.g. MLA's kv_b_proj, split there)
				}
				v, err := e.sum2()
				if err != nil {
					return fail(err)
				}
				sl := slots[name]
				if sl == nil {
					sl = &slot{cols: len(v), sum2: map[int][]float32{}, counts: map[int]int64{}}
					slots[name] = sl
				}
				if len(v) != sl.cols {
					return fail(fmt.Errorf("%s: %d columns, earlier %d", e.Name, len(v), sl.cols))
				}
				sl.sum2[expert], sl.counts[expert] = v, e.Tokens
				sl.nexp = max(sl.nexp, expert+1)
			}
		}
		names := make([]string, 0, len(slots))
		for n := range slots {
			names = append(names, n)
		}
		sort.Strings(names)
		path, err := env.ArtifactPath(s.cfg.Imatrix)
		if err != nil {
			return fail(err)
		}
		w, err := gguf.Create(path)
		if err != nil {
			return fail(err)
		}
		ok := false
		defer func() {
			if !ok {
				w.Abort()
			}
		}()
		var chunks int64
		for _, sl := range slots {
			for _, c := range sl.counts {
				chunks = max(chunks, c)
			}
		}
		for _, kv := range []struct {
			k string
			v any
		}{{"general.type", "imatrix"}, {"imatrix.datasets", []string{dataset}},
			{"imatrix.chunk_count", uint32(chunks)}, {"imatrix.chunk_size", uint32(1)}} {
			if err := w.AddKV(kv.k, kv.v); err != nil {
				return fail(err)
			}
		}
		data := map[string][]byte{}
		var order []string
		for _, n := range names {
			sl := slots[n]
			nmat := max(sl.nexp, 1)
			sum := make([]byte, 4*sl.cols*nmat)
			cnt := make([]byte, 4*nmat)
			for e := 0; e < nmat; e++ {
				key := e
				if sl.nexp == 0 {
					key = -1
				}
				for c, v := range sl.sum2[key] {
					binary.LittleEndian.PutUint32(sum[4*(e*sl.cols+c):], math.Float32bits(v))
				}
				binary.LittleEndian.PutUint32(cnt[4*e:], math.Float32bits(float32(sl.counts[key])))
			}
			dims := []uint64{uint64(sl.cols)}
			cdims := []uint64{1}
			if sl.nexp > 0 {
				dims = append(dims, uint64(nmat))
				cdims = []uint64{uint64(nmat)}
			}
			for _, t := range []struct {
				name string
				dims []uint64
				b    []byte
			}{{n + ".in_sum2", dims, sum}, {n + ".counts", cdims, cnt}} {
				if err := w.AddTensorInfo(t.name, gguf.TypeF32, t.dims); err != nil {
					return fail(err)
				}
				data[t.name] = t.b
				order = append(order, t.name)
			}
		}
		for _, n := range order {
			if err := w.WriteTensorData(n, data[n]); err != nil {
				return fail(err)
			}
		}
		if err := w.Close(); err != nil {
			return fail(err)
		}
		ok = true
		if env.Log != nil {
			env.Log.Info("quantize: wrote importance matrix", "file", s.cfg.Imatrix, "entries", len(names))
		}
		return &pipeline.Output{Meta: map[string]string{"imatrix.entries": fmt.Sprint(len(names))}}, nil
	}
}
