package quant

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/marlin-llm/marlin/tensor"
)

// NonFinite says what to do with NaN/Inf weights.
type NonFinite uint8

const (
	// NonFiniteReject (default) refuses the tensor with an error naming the
	// tensor and the element index.
	NonFiniteReject NonFinite = iota
	// NonFinitePass quantizes anyway: scales are fitted on the finite
	// weights; an MXFP4 block holding NaN/Inf gets the NaN scale (E8M0 0xFF,
	// every element NaN, per OCP MX); FP8 keeps NaN (and E5M2 ±Inf, E4M3
	// saturates ±Inf); other grids saturate ±Inf to ±max·scale and encode NaN
	// as the zero code. Report.NonFinite counts them.
	NonFinitePass
)

// Options tune Quantize.
type Options struct {
	// Name is the tensor name used in errors and reports.
	Name string
	// ScaleSearch enables clipping-ratio search per group (ClipRatios, or
	// DefaultClipRatios when empty), minimising the group's squared error.
	ScaleSearch bool
	// ClipRatios overrides the search grid.
	ClipRatios []float32
	// NonFinite selects NaN/Inf handling.
	NonFinite NonFinite
	// Workers is the number of goroutines (rows are split among them);
	// 0 or 1 runs on the calling goroutine, -1 uses GOMAXPROCS.
	Workers int
}

// NonFiniteError is returned (wrapped) for a NaN/Inf weight.
type NonFiniteError struct {
	Name     string
	Row, Col int
	Value    float32
}

func (e *NonFiniteError) Error() string {
	return fmt.Sprintf("tensor %q: non-finite weight %v at [%d, %d] (use nonfinite: pass in the rule to quantize anyway)", e.Name, e.Value, e.Row, e.Col)
}

// Quantize quantizes the row-major rows×cols weights w with round-to-nearest
// (RNE onto the grid, see FitGroup and QuantizeValue), with optional scale
// search. For bf16/f16 it rounds the weights to that type.
func Quantize(w []float32, rows, cols int, f Format, opts *Options) (*Packed, error) {
	return QuantizeContext(context.Background(), w, rows, cols, f, opts)
}

// QuantizeContext is Quantize with cancellation (checked between rows).
func QuantizeContext(ctx context.Context, w []float32, rows, cols int, f Format, opts *Options) (*Packed, error) {
	if opts == nil {
		opts = &Options{}
	}
	if len(w) != rows*cols {
		return nil, fmt.Errorf("quant: tensor %q: %d weights for shape [%d, %d]", opts.Name, len(w), rows, cols)
	}
	p, err := NewPacked(f, rows, cols)
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", opts.Name, err)
	}
	if err := checkFinite(w, cols, opts); err != nil {
		return nil, err
	}
	if f.TensorScale {
		var amax float32
		for _, x := range w {
			if a := abs32(x); a > amax && x-x == 0 {
				amax = a
			}
		}
		p.TensorScale = f.TensorScaleFor(amax)
	}
	q := newRowQuantizer(p, opts)
	err = parallelRows(ctx, rows, opts.Workers, func(r0, r1 int) {
		for r := r0; r < r1; r++ {
			q.row(r, w[r*cols:(r+1)*cols])
		}
	})
	if err != nil {
		return nil, fmt.Errorf("quant: tensor %q: %w", opts.Name, err)
	}
	return p, nil
}

func checkFinite(w []float32, cols int, opts *Options) error {
	if opts.NonFinite == NonFinitePass {
		return nil
	}
	for i, x := range w {
		if x-x != 0 {
			return &NonFiniteError{Name: opts.Name, Row: i / cols, Col: i % cols, Value: x}
		}
	}
	return nil
}

// parallelRows runs fn over [0, rows) split in chunks among workers.
func parallelRows(ctx context.Context, rows, workers int, fn func(r0, r1 int)) error {
	if workers < 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	if workers <= 1 {
		const chunk = 64
		for r := 0; r < rows; r += chunk {
			if err := ctx.Err(); err != nil {
				return err
			}
			fn(r, min(r+chunk, rows))
		}
		return nil
	}
	var wg sync.WaitGroup
	chunk := max(1, (rows+4*workers-1)/(4*workers))
	next := make(chan int)
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range next {
				fn(r, min(r+chunk, rows))
			}
		}()
	}
	var err error
	for r := 0; r < rows; r += chunk {
		if err = ctx.Err(); err != nil {
			break
		}
		next <- r
	}
	close(next)
	wg.Wait()
	return err
}

// rowQuantizer quantizes one row at a time into a Packed.
type rowQuantizer struct {
	p   *Packed
	fit *FitOptions
}

func newRowQuantizer(p *Packed, opts *Options) *rowQuantizer {
	q := &rowQuantizer{p: p}
	if opts.ScaleSearch {
		r := opts.ClipRatios
		if len(r) == 0 {
			r = DefaultClipRatios()
		}
		q.fit = &FitOptions{ClipRatios: r}
	}
	return q
}

func (q *rowQuantizer) row(r int, w []float32) {
	p := q.p
	f := p.Format
	rb := p.RowBytes()
	out := p.Codes[r*rb : (r+1)*rb]
	switch f.Elem {
	case ElemBF16:
		for c, x := range w {
			binary.LittleEndian.PutUint16(out[2*c:], EncodeBF16(x))
		}
		return
	case ElemF16:
		for c, x := range w {
			binary.LittleEndian.PutUint16(out[2*c:], EncodeF16(x))
		}
		return
	}
	if f.Scale == ScaleE8M0 && f.Elem == ElemE2M1 && q.fit == nil && f.GroupSize == 32 {
		mxfp4Row(w, out, p.Scales[r*p.Groups():(r+1)*p.Groups()])
		return
	}
	g := f.Group(p.Cols)
	for gi := 0; gi*g < p.Cols; gi++ {
		c0, c1 := gi*g, min((gi+1)*g, p.Cols)
		gs := f.FitGroup(w[c0:c1], p.TensorScale, q.fit)
		p.SetGroup(r, gi, gs)
		if f.Bits == 4 && f.Elem == ElemE2M1 && !gs.NaN && gs.Mul != 0 && c0%2 == 0 {
			e2m1Group(w[c0:c1], out[c0/2:], gs.Mul)
			continue
		}
		for c := c0; c < c1; c++ {
			code, _ := f.QuantizeValue(w[c], gs)
			setBits(out, c, f.Bits, uint32(code))
		}
	}
}

// e2m1Group encodes x/mul to E2M1 nibbles (low first) into out.
func e2m1Group(w []float32, out []byte, mul float32) {
	n := len(w)
	i := 0
	for ; i+1 < n; i += 2 {
		out[i/2] = EncodeE2M1(w[i]/mul) | EncodeE2M1(w[i+1]/mul)<<4
	}
	if i < n {
		out[i/2] = out[i/2]&0xf0 | EncodeE2M1(w[i]/mul)
	}
}

// mxfp4Row is the MXFP4 fast path: blocks of 32, E8M0 scale from the block
// absmax's exponent, elements multiplied by the exact power of two 2^-e.
func mxfp4Row(w []float32, out, scales []byte) {
	for b := 0; b*32 < len(w); b++ {
		blk := w[b*32 : min(b*32+32, len(w))]
		var amaxBits uint32
		nonFinite := false
		for _, x := range blk {
			a := math.Float32bits(x) & 0x7fffffff
			if a >= 0x7f800000 {
				nonFinite = true
				continue
			}
			amaxBits = max(amaxBits, a)
		}
		if nonFinite {
			scales[b] = E8M0NaN
			for i := range blk {
				setBits(out, b*32+i, 4, 0)
			}
			continue
		}
		e := MXSharedExp(math.Float32frombits(amaxBits), 2)
		scales[b] = EncodeE8M0(e)
		inv := float32(math.Ldexp(1, -e)) // exact: -e in [-127, 127]
		o := out[b*16:]
		if len(blk) == 32 {
			for i := 0; i < 32; i += 2 {
				lo := math.Float32bits(blk[i] * inv)
				hi := math.Float32bits(blk[i+1] * inv)
				o[i/2] = uint8(lo>>28)&8 | e2m1Mag(lo&0x7fffffff) | (uint8(hi>>28)&8|e2m1Mag(hi&0x7fffffff))<<4
			}
			continue
		}
		for i, x := range blk {
			setBits(out, b*32+i, 4, uint32(EncodeE2M1(x*inv)))
		}
	}
}

// QuantizeTensor quantizes a 2-D (or N-D, flattened to [prod(shape[:-1]),
// shape[-1]]) BF16, F16 or F32 tensor, converting rows in chunks so that no
// float32 copy of the whole tensor is made beyond one chunk per worker.
// opts.Name defaults to t.Name.
func QuantizeTensor(ctx context.Context, t *tensor.Tensor, f Format, opts *Options) (*Packed, error) {
	o := Options{}
	if opts != nil {
		o = *opts
	}
	if o.Name == "" {
		o.Name = t.Name
	}
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("quant: %w", err)
	}
	if len(t.Shape) < 2 {
		return nil, fmt.Errorf("quant: tensor %q: need at least 2 dimensions, have shape %v", t.Name, t.Shape)
	}
	cols := t.Shape[len(t.Shape)-1]
	rows := t.NumElements() / max(cols, 1)
	var conv func(dst []float32, src []byte)
	switch t.DType {
	case tensor.BF16:
		conv = func(dst []float32, src []byte) {
			for i := range dst {
				dst[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(src[2*i:])) << 16)
			}
		}
	case tensor.F16:
		conv = func(dst []float32, src []byte) {
			for i := range dst {
				dst[i] = DecodeF16(binary.LittleEndian.Uint16(src[2*i:]))
			}
		}
	case tensor.F32:
		conv = func(dst []float32, src []byte) {
			for i := range dst {
				dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
			}
		}
	default:
		return nil, fmt.Errorf("quant: tensor %q: cannot quantize dtype %s", t.Name, t.DType)
	}
	p, err := NewPacked(f, rows, cols)
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", o.Name, err)
	}
	es := t.DType.Size()
	if f.TensorScale || o.NonFinite == NonFiniteReject {
		// One streaming pass: tensor absmax and the finiteness check.
		var amax float32
		buf := make([]float32, cols)
		for r := 0; r < rows; r++ {
			conv(buf, t.Data[r*cols*es:(r+1)*cols*es])
			for c, x := range buf {
				if x-x != 0 {
					if o.NonFinite == NonFiniteReject {
						return nil, &NonFiniteError{Name: o.Name, Row: r, Col: c, Value: x}
					}
					continue
				}
				amax = max(amax, abs32(x))
			}
		}
		p.TensorScale = f.TensorScaleFor(amax)
	}
	q := newRowQuantizer(p, &o)
	err = parallelRows(ctx, rows, o.Workers, func(r0, r1 int) {
		buf := make([]float32, cols)
		for r := r0; r < r1; r++ {
			conv(buf, t.Data[r*cols*es:(r+1)*cols*es])
			q.row(r, buf)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("quant: tensor %q: %w", o.Name, err)
	}
	if !f.TensorScale {
		p.TensorScale = 0
	}
	return p, nil
}

func abs32(x float32) float32 { return math.Float32frombits(math.Float32bits(x) &^ (1 << 31)) }
