package llamacpp

import (
	"context"
	"fmt"
	"math"
	"path/filepath"

	"github.com/marlin-llm/marlin/model/gguf"
	"github.com/marlin-llm/marlin/model/hfconfig"
	"github.com/marlin-llm/marlin/model/safetensors"
	"github.com/marlin-llm/marlin/quant/ggml"
	"github.com/marlin-llm/marlin/tensor"
)

// DefaultRecipe is the gguf_type recipe of an export that names none.
const DefaultRecipe = "f16"

// Options select what an export writes.
type Options struct {
	// Recipe is the gguf_type recipe (see Recipes); default DefaultRecipe.
	Recipe string
	// Rules override per-tensor types (first match wins).
	Rules []Rule
	// Name is general.name; empty derives it from the model directory.
	Name string
	// TokenizerPre overrides the recognised pre-tokenizer name.
	TokenizerPre string
	// HasImatrix tells a mixture recipe that the weights were quantized
	// with importance weights (llama-quantize --imatrix); it changes a few
	// of its choices (Hparams.HasImatrix).
	HasImatrix bool
}

// Plan is a complete GGUF export: metadata in order and typed tensors.
type Plan struct {
	Arch    string
	KVs     []gguf.KV
	Tensors []*Tensor
	Types   []gguf.GGMLType
}

// NewPlan plans the export of a checkpoint with config cfg whose tokenizer
// files are in tokDir. names lists the Hugging Face tensors in storage
// order and shape returns each one's shape.
func NewPlan(cfg *hfconfig.Config, tokDir string, names []string, shape func(string) []int, opt Options) (*Plan, error) {
	if opt.Recipe == "" {
		opt.Recipe = DefaultRecipe
	}
	arch, err := ArchName(cfg)
	if err != nil {
		return nil, err
	}
	ts, err := Map(cfg, names, shape)
	if err != nil {
		return nil, err
	}
	hp := HparamsOf(cfg)
	hp.HasImatrix = opt.HasImatrix
	types, err := AssignTypes(ts, opt.Recipe, hp, opt.Rules)
	if err != nil {
		return nil, err
	}
	ft, ok := FileType(opt.Recipe)
	if !ok {
		ft, _ = FileType(DefaultRecipe)
		if len(types) > 0 {
			ft = fileTypeOf(types)
		}
	}
	name := opt.Name
	if name == "" {
		name = NameFromDir(filepath.Base(filepath.Clean(tokDir)))
	}
	kvs, err := ArchKVs(cfg, ts, Info{Name: name, FileType: ft})
	if err != nil {
		return nil, err
	}
	v, err := LoadVocab(tokDir, cfg.VocabSize, cfg.BOSTokenID, cfg.EOSTokenIDs, cfg.ModelType, opt.TokenizerPre)
	if err != nil {
		return nil, err
	}
	return &Plan{Arch: arch, KVs: append(kvs, v.KVs()...), Tensors: ts, Types: types}, nil
}

// fileTypeOf picks general.file_type for a pure recipe from its most common
// quantized type.
func fileTypeOf(types []gguf.GGMLType) uint32 {
	count := map[gguf.GGMLType]int{}
	for _, t := range types {
		count[t]++
	}
	best, n := gguf.TypeF16, 0
	for t, c := range count {
		if t != gguf.TypeF32 && c > n {
			best, n = t, c
		}
	}
	if f, ok := FileType(best.String()); ok {
		return f
	}
	f, _ := FileType(DefaultRecipe)
	return f
}

// Source supplies the checkpoint's tensors by Hugging Face name.
type Source interface {
	// Float32 returns the named tensor's values, row-major, dequantized if
	// the tensor is stored quantized.
	Float32(ctx context.Context, name string) ([]float32, error)
}

// BlockSource is optionally implemented by sources holding quantized
// tensors that can be copied into GGML blocks without re-quantizing
// (MXFP4 with E8M0 scales, symmetric INT4/INT8 with groups of 32·k).
type BlockSource interface {
	// Blocks returns the named tensor encoded as typ, or ok false when the
	// tensor cannot be transcoded to typ exactly.
	Blocks(ctx context.Context, name string, typ gguf.GGMLType) (b []byte, ok bool, err error)
}

// Data produces the bytes of planned tensor i.
func (p *Plan) Data(ctx context.Context, i int, src Source) ([]byte, error) {
	t, typ := p.Tensors[i], p.Types[i]
	if bs, ok := src.(BlockSource); ok && (t.op == opCopy || t.op == opStack) {
		var out []byte
		all := true
		for _, s := range t.Sources {
			b, ok, err := bs.Blocks(ctx, s, typ)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", t.Name, err)
			}
			if !ok {
				all = false
				break
			}
			out = append(out, b...)
		}
		if all {
			if want, _ := typ.RowSize(int64(t.Elements())); int64(len(out)) != want {
				return nil, fmt.Errorf("%s: transcoded %d bytes, want %d", t.Name, len(out), want)
			}
			return out, nil
		}
	}
	x, err := p.values(ctx, t, src)
	if err != nil {
		return nil, err
	}
	if len(x) != t.Elements() {
		return nil, fmt.Errorf("%s: sources hold %d values, want %d", t.Name, len(x), t.Elements())
	}
	for j, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("%s: value %d is %v", t.Name, j, v)
		}
	}
	return EncodeValues(typ, x)
}

// EncodeValues encodes float32 values as a writable GGML tensor type
// (ggml.EncodeValues).
func EncodeValues(typ gguf.GGMLType, x []float32) ([]byte, error) {
	return ggml.EncodeValues(typ, x)
}

// values gathers a planned tensor's float32 values from its sources.
func (p *Plan) values(ctx context.Context, t *Tensor, src Source) ([]float32, error) {
	switch t.op {
	case opCopy:
		return src.Float32(ctx, t.Sources[0])
	case opNegExp:
		x, err := src.Float32(ctx, t.Sources[0])
		if err != nil {
			return nil, err
		}
		for i, v := range x {
			x[i] = -float32(math.Exp(float64(v)))
		}
		return x, nil
	case opStack:
		x := make([]float32, 0, t.Elements())
		for _, s := range t.Sources {
			v, err := src.Float32(ctx, s)
			if err != nil {
				return nil, err
			}
			x = append(x, v...)
		}
		return x, nil
	case opKB, opVB:
		kv, err := src.Float32(ctx, t.Sources[0])
		if err != nil {
			return nil, err
		}
		h, nope, v := t.heads, t.nope, t.v
		r := len(kv) / (h * (nope + v))
		if r*h*(nope+v) != len(kv) {
			return nil, fmt.Errorf("%s: kv_b_proj has %d values", t.Name, len(kv))
		}
		out := make([]float32, 0, t.Elements())
		for hh := 0; hh < h; hh++ {
			base := hh * (nope + v)
			if t.op == opKB {
				// k_b[h] = kv_b[h, :nope, :]ᵀ: rows are the latent dims.
				for j := 0; j < r; j++ {
					for i := 0; i < nope; i++ {
						out = append(out, kv[(base+i)*r+j])
					}
				}
			} else {
				out = append(out, kv[(base+nope)*r:(base+nope+v)*r]...)
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s: unknown op", t.Name)
}

// Write streams the planned GGUF to path (temporary file, fsync, rename),
// holding one planned tensor's data at a time.
func (p *Plan) Write(ctx context.Context, path string, src Source) error {
	w, err := gguf.Create(path)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		w.Abort()
		return fmt.Errorf("llamacpp: write %s: %w", path, err)
	}
	for _, kv := range p.KVs {
		if err := w.AddKV(kv.Key, kv.Value); err != nil {
			return fail(err)
		}
	}
	for i, t := range p.Tensors {
		dims := make([]uint64, len(t.Dims))
		for j, d := range t.Dims {
			dims[j] = uint64(d)
		}
		if err := w.AddTensorInfo(t.Name, p.Types[i], dims); err != nil {
			return fail(err)
		}
	}
	for i, t := range p.Tensors {
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		b, err := p.Data(ctx, i, src)
		if err != nil {
			return fail(err)
		}
		if err := w.WriteTensorData(t.Name, b); err != nil {
			return fail(err)
		}
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("llamacpp: write %s: %w", path, err)
	}
	return nil
}

// CheckpointSource reads float tensors from an opened safetensors
// checkpoint.
type CheckpointSource struct{ C *safetensors.Checkpoint }

// Float32 implements Source.
func (s CheckpointSource) Float32(_ context.Context, name string) ([]float32, error) {
	t, err := s.C.Tensor(name)
	if err != nil {
		return nil, err
	}
	return tensor.ToFloat32(t)
}

// ExportDir exports the Hugging Face model in dir (config.json,
// safetensors, tokenizer.json) to a GGUF file at out.
func ExportDir(ctx context.Context, dir, out string, opt Options) (*Plan, error) {
	cfg, err := hfconfig.Load(dir)
	if err != nil {
		return nil, err
	}
	ck, err := safetensors.Open(dir)
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	p, err := NewPlan(cfg, dir, ck.Names(), func(n string) []int {
		info, _ := ck.Info(n)
		return info.Shape
	}, opt)
	if err != nil {
		return nil, err
	}
	return p, p.Write(ctx, out, CheckpointSource{ck})
}
