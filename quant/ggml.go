package quant

import (
	"context"
	"fmt"
	"strings"

	"github.com/marlin-llm/marlin/model/gguf"
	"github.com/marlin-llm/marlin/quant/ggml"
)

// GGML block formats (ElemGGML): the packed rows are llama.cpp blocks, so a
// GGUF writer copies them unchanged and llama.cpp reads back exactly the
// values Dequantize gives.

// ggmlInfo returns the block geometry of a GGML type name.
func ggmlInfo(typ string) (ggml.Grid, bool) {
	g, err := ggml.LookupGrid(typ)
	if err != nil {
		return ggml.Grid{}, false
	}
	return *g, true
}

// checkGGML checks that rows of cols weights fill whole blocks of f.
func checkGGML(f Format, cols int) error {
	gi, ok := ggmlInfo(f.GGML)
	if !ok {
		return fmt.Errorf("quant: format %s: unknown GGML type %q", f.Name, f.GGML)
	}
	if cols%gi.BlockSize != 0 {
		return fmt.Errorf("quant: format %s: rows of %d weights do not fill whole blocks of %d", f.Name, cols, gi.BlockSize)
	}
	return nil
}

// RowFallback returns the format that rows of cols weights take under f:
// f itself unless f is a GGML block format whose blocks do not divide cols,
// else the first type along llama-quantize's fallback chain (Q4_K → Q5_0,
// Q6_K → Q8_0, ..., F16 last) whose blocks do. fell reports a change.
func RowFallback(f Format, cols int) (out Format, fell bool, err error) {
	typ, ok := f.GGMLType()
	if !ok || checkGGML(f, cols) == nil {
		return f, false, nil
	}
	for range 8 { // the chains are at most two steps long
		t, ok := ggml.LookupType(typ)
		if !ok {
			return f, false, fmt.Errorf("quant: format %s: no fallback for GGML type %s", f.Name, typ)
		}
		typ = t.Fallback
		next, err := Lookup(strings.ToLower(typ.String()))
		if err != nil {
			return f, false, fmt.Errorf("quant: format %s: fallback %s: %w", f.Name, typ, err)
		}
		if next.Elem != ElemGGML || checkGGML(next, cols) == nil {
			return next, true, nil
		}
	}
	return f, false, fmt.Errorf("quant: format %s: no fallback fits rows of %d weights", f.Name, cols)
}

// GGMLType returns the gguf type of an ElemGGML format.
func (f Format) GGMLType() (gguf.GGMLType, bool) {
	if f.Elem != ElemGGML {
		return 0, false
	}
	t, err := gguf.ParseType(f.GGML)
	return t, err == nil
}

// dequantGGML dequantizes one row of blocks as llama.cpp does.
func dequantGGML(typ string, row []byte, dst []float32) error {
	t, err := gguf.ParseType(typ)
	if err != nil {
		return err
	}
	return gguf.DequantizeInto(dst, t, row)
}

// QuantizeGGML encodes w (rows×cols) into the blocks of the GGML format f
// with per-column importance weights qw (len cols, e.g. the Hessian
// diagonal; nil: llama-quantize's quantizer without an imatrix).
func QuantizeGGML(ctx context.Context, w []float32, rows, cols int, f Format, qw []float32, name string) (*Packed, error) {
	if f.Elem != ElemGGML {
		return nil, fmt.Errorf("quant: tensor %q: format %s is not a GGML block type", name, f.Name)
	}
	if len(w) != rows*cols {
		return nil, fmt.Errorf("quant: tensor %q: %d weights for shape [%d, %d]", name, len(w), rows, cols)
	}
	if qw != nil && len(qw) != cols {
		return nil, fmt.Errorf("quant: tensor %q: %d importance weights for %d columns", name, len(qw), cols)
	}
	p, err := NewPacked(f, rows, cols)
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", name, err)
	}
	g, err := ggml.LookupGrid(f.GGML)
	if err != nil {
		return nil, err
	}
	rb := p.RowBytes()
	err = parallelRows(ctx, rows, 0, func(r0, r1 int) error {
		for r := r0; r < r1; r++ {
			if err := g.Encode(p.Codes[r*rb:(r+1)*rb], w[r*cols:(r+1)*cols], qw); err != nil {
				return fmt.Errorf("row %d: %w", r, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("quant: tensor %q: %w", name, err)
	}
	return p, nil
}

// quantizeGGMLRTN is Quantize for GGML formats: llama-quantize's quantizer
// without an imatrix. Non-finite weights are an error (NonFiniteReject)
// or, with NonFinitePass, NaN becomes 0 and ±Inf the row's largest finite
// magnitude.
func quantizeGGMLRTN(ctx context.Context, w []float32, rows, cols int, f Format, opts *Options) (*Packed, error) {
	if len(w) != rows*cols {
		return nil, fmt.Errorf("quant: tensor %q: %d weights for shape [%d, %d]", opts.Name, len(w), rows, cols)
	}
	var fixed []float32
	for i, v := range w {
		if v-v == 0 {
			continue
		}
		if opts.NonFinite == NonFiniteReject {
			return nil, &NonFiniteError{Name: opts.Name, Row: i / cols, Col: i % cols, Value: v}
		}
		if fixed == nil {
			fixed = append([]float32(nil), w...)
		}
	}
	if fixed != nil {
		for r := 0; r < rows; r++ {
			row := fixed[r*cols : (r+1)*cols]
			var amax float32
			for _, v := range row {
				if v-v == 0 {
					amax = max(amax, abs32(v))
				}
			}
			for c, v := range row {
				switch {
				case v != v:
					row[c] = 0
				case v-v != 0 && v > 0:
					row[c] = amax
				case v-v != 0:
					row[c] = -amax
				}
			}
		}
		w = fixed
	}
	return QuantizeGGML(ctx, w, rows, cols, f, nil, opts.Name)
}
