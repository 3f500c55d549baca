package quant

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"

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

// Error names the tensor, the value and its position.
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
	if f.Elem == ElemGGML {
		return quantizeGGMLRTN(ctx, w, rows, cols, f, opts)
	}
	p, err := NewPacked(f, rows, cols)
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", opts.Name, err)
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
	if f.PerTensor {
		if q.reject {
			for r := 0; r < rows; r++ {
				if err := q.nonFinite(r, w[r*cols:(r+1)*cols]); err != nil {
					return nil, wrapTensorErr(opts.Name, err)
				}
			}
		}
		gs := f.FitGroup(w, p.TensorScale, q.fit)
		q.shared = &gs
	}
	err = parallelRows(ctx, rows, opts.Workers, func(r0, r1 int) error {
		for r := r0; r < r1; r++ {
			if err := q.row(r, w[r*cols:(r+1)*cols]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, wrapTensorErr(opts.Name, err)
	}
	return p, nil
}

// wrapTensorErr names the tensor unless err already does.
func wrapTensorErr(name string, err error) error {
	var nf *NonFiniteError
	if errors.As(err, &nf) {
		return err
	}
	return fmt.Errorf("quant: tensor %q: %w", name, err)
}

// parallelRows runs fn over [0, rows) in chunks, on `workers` goroutines.
// It returns the context's error or the error of the lowest failing chunk
// (so errors are deterministic whatever the scheduling).
func parallelRows(ctx context.Context, rows, workers int, fn func(r0, r1 int) error) error {
	if workers < 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	if workers <= 1 {
		const chunk = 64
		for r := 0; r < rows; r += chunk {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(r, min(r+chunk, rows)); err != nil {
				return err
			}
		}
		return nil
	}
	chunk := max(1, min(64, (rows+4*workers-1)/(4*workers)))
	nchunks := (rows + chunk - 1) / chunk
	errs := make([]error, nchunks)
	var next atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c := int(next.Add(1) - 1)
				if c >= nchunks || ctx.Err() != nil {
					return
				}
				r := c * chunk
				errs[c] = fn(r, min(r+chunk, rows))
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// rowQuantizer quantizes one row at a time into a Packed.
type rowQuantizer struct {
	p      *Packed
	fit    *FitOptions
	reject bool // NaN/Inf is an error
	name   string
	// shared is the one scale of a PerTensor format, fitted on the whole
	// tensor before any row.
	shared *GroupScale
}

func newRowQuantizer(p *Packed, opts *Options) *rowQuantizer {
	q := &rowQuantizer{p: p, reject: opts.NonFinite == NonFiniteReject, name: opts.Name}
	if opts.ScaleSearch {
		r := opts.ClipRatios
		if len(r) == 0 {
			r = DefaultClipRatios()
		}
		q.fit = &FitOptions{ClipRatios: r}
	}
	return q
}

// nonFinite returns the error for the first NaN/Inf of row r.
func (q *rowQuantizer) nonFinite(r int, w []float32) error {
	for c, x := range w {
		if x-x != 0 {
			return &NonFiniteError{Name: q.name, Row: r, Col: c, Value: x}
		}
	}
	return nil
}

// row quantizes row r (w holds its float32 weights).
func (q *rowQuantizer) row(r int, w []float32) error {
	p := q.p
	f := p.Format
	rb := p.RowBytes()
	out := p.Codes[r*rb : (r+1)*rb]
	if f.Scale == ScaleE8M0 && f.Elem == ElemE2M1 && q.fit == nil && f.GroupSize == 32 {
		if !mxfp4Row(w, out, p.Scales[r*p.Groups():(r+1)*p.Groups()]) && q.reject {
			return q.nonFinite(r, w)
		}
		return nil
	}
	if q.reject {
		if err := q.nonFinite(r, w); err != nil {
			return err
		}
	}
	switch f.Elem {
	case ElemBF16:
		for c, x := range w {
			binary.LittleEndian.PutUint16(out[2*c:], EncodeBF16(x))
		}
		return nil
	case ElemF16:
		for c, x := range w {
			binary.LittleEndian.PutUint16(out[2*c:], EncodeF16(x))
		}
		return nil
	}
	g := f.Group(p.Cols)
	for gi := 0; gi*g < p.Cols; gi++ {
		c0, c1 := gi*g, min((gi+1)*g, p.Cols)
		var gs GroupScale
		if q.shared != nil {
			gs = *q.shared
		} else {
			gs = f.FitGroup(w[c0:c1], p.TensorScale, q.fit)
		}
		p.SetGroup(r, gi, gs)
		// Fast paths for finite rows (checked above in reject mode; pass
		// mode needs QuantizeValue's NaN rules).
		if q.reject && gs.Mul != 0 && c0%2 == 0 && f.Bits == 4 {
			switch f.Elem {
			case ElemE2M1:
				e2m1Group(w[c0:c1], out[c0/2:], gs.Mul)
				continue
			case ElemInt:
				int4Group(w[c0:c1], out[c0/2:], gs, f.Asym)
				continue
			case ElemNF:
				nf4Group(w[c0:c1], out[c0/2:], gs.Mul)
				continue
			}
		}
		for c := c0; c < c1; c++ {
			code, _ := f.QuantizeValue(w[c], gs)
			setBits(out, c, f.Bits, uint32(code))
		}
	}
	return nil
}

// e2m1Group encodes w/mul to E2M1 nibbles (low first) into out (finite
// inputs; division as in the reference definitions).
func e2m1Group(w []float32, out []byte, mul float32) {
	n := len(w)
	i := e2m1DivFast(w, out, mul) // AVX2 where available
	for ; i+1 < n; i += 2 {
		lo := math.Float32bits(w[i] / mul)
		hi := math.Float32bits(w[i+1] / mul)
		out[i/2] = uint8(lo>>28)&8 | uint8(hi>>24)&0x80 |
			uint8(e2m1MagFast(lo&0x7fffffff)) | uint8(e2m1MagFast(hi&0x7fffffff))<<4
	}
	if i < n {
		out[i/2] = out[i/2]&0xf0 | EncodeE2M1(w[i]/mul)
	}
}

// nf4Group is QuantizeValue for NF4 over a group of finite weights.
func nf4Group(w []float32, out []byte, mul float32) {
	n := len(w)
	i := 0
	for ; i+1 < n; i += 2 {
		out[i/2] = EncodeNF(w[i]/mul, &NF4Mid, 4) | EncodeNF(w[i+1]/mul, &NF4Mid, 4)<<4
	}
	if i < n {
		out[i/2] = out[i/2]&0xf0 | EncodeNF(w[i]/mul, &NF4Mid, 4)
	}
}

// int4Group is QuantizeValue for 4-bit integers over a group of finite
// weights, packed two per byte. Clamping before rounding is the same as
// after, since the bounds are integers.
func int4Group(w []float32, out []byte, gs GroupScale, asym bool) {
	lo, hi, off := float32(-8), float32(7), float32(8)
	if asym {
		lo, hi, off = -float32(gs.Zero), 15-float32(gs.Zero), float32(gs.Zero)
	}
	mul := gs.Mul
	n := len(w)
	i := 0
	for ; i+1 < n; i += 2 {
		a := min(max(w[i]/mul, lo), hi)
		b := min(max(w[i+1]/mul, lo), hi)
		out[i/2] = uint8(roundEven(a)+off) | uint8(roundEven(b)+off)<<4
	}
	if i < n {
		a := min(max(w[i]/mul, lo), hi)
		out[i/2] = out[i/2]&0xf0 | uint8(roundEven(a)+off)
	}
}

// mxfp4Row is the MXFP4 fast path: blocks of 32, E8M0 scale from the block
// absmax's exponent, elements multiplied by the exact power of two 2^-e. It
// returns false when the row holds NaN/Inf (those blocks get the NaN scale).
func mxfp4Row(w []float32, out, scales []byte) bool {
	finite := true
	for b := 0; b*32 < len(w); b++ {
		blk := w[b*32 : min(b*32+32, len(w))]
		var amaxBits uint32
		if len(blk) == 32 {
			amaxBits = f32BlockAmax((*[32]float32)(blk))
		} else {
			for _, x := range blk {
				amaxBits = max(amaxBits, math.Float32bits(x)&0x7fffffff)
			}
		}
		if amaxBits >= 0x7f800000 {
			finite = false
			scales[b] = E8M0NaN
			for i := range blk {
				setBits(out, b*32+i, 4, 0)
			}
			continue
		}
		e := MXSharedExp(math.Float32frombits(amaxBits), 2)
		scales[b] = EncodeE8M0(e)
		if len(blk) == 32 && e >= -124 {
			mxfp4BlockF32((*[32]float32)(blk), (*[16]byte)(out[b*16:b*16+16]), mxfp4OffsetBF16(int32(e)))
			continue
		}
		inv := math.Float32frombits(uint32(127-e) << 23) // 2^-e, exact: -e in [-125, 127]
		if len(blk) == 32 {
			o := out[b*16 : b*16+16]
			blk := blk[:32]
			for i := range o {
				lo := math.Float32bits(blk[2*i] * inv)
				hi := math.Float32bits(blk[2*i+1] * inv)
				o[i] = uint8(lo>>28)&8 | uint8(hi>>24)&0x80 |
					uint8(e2m1MagFast(lo&0x7fffffff)) | uint8(e2m1MagFast(hi&0x7fffffff))<<4
			}
			continue
		}
		for i, x := range blk {
			setBits(out, b*32+i, 4, uint32(EncodeE2M1(x*inv)))
		}
	}
	return finite
}

// mxfp4RowBF16 is the MXFP4 path for BF16 rows (src little-endian BF16,
// cols = len(src)/2). Scaling a BF16 value by the block's power of two
// 2^-e only shifts its exponent field, and the scaled magnitudes of a block
// lie below 8 (the block absmax maps into [4, 8)), so the E2M1 code is a
// table lookup on the shifted bits (see e2m1BF16). This is exact when e >= −124 (then BF16 subnormal
// elements scale below 0.25 and correctly take code 0); other blocks, and a
// trailing partial block, take the float32 path. The block absmax is a
// SIMD-within-a-register max over four 15-bit lanes. It returns false if
// the row holds NaN/Inf (those blocks get the NaN scale).
func mxfp4RowBF16(src []byte, out, scales []byte) bool {
	cols := len(src) / 2
	finite := true
	var tmp [32]float32
	nFull := cols / 32
	for b := 0; b*32 < cols; b++ {
		if b < nFull {
			// AVX2 where available: runs of ordinary blocks.
			if k := mxfp4BlocksFast(src[b*64:], out[b*16:], scales[b:], nFull-b); k > 0 {
				b += k - 1
				continue
			}
		}
		n := min(32, cols-b*32)
		if n == 32 {
			x := (*[64]byte)(src[b*64 : b*64+64])
			// amax's exponent field ef gives e = floor(log2 amax) − 2 =
			// ef − 129 and the E8M0 code e + 127 = ef − 2; ef >= 5 is
			// e >= −124, ef <= 0xfe excludes NaN/Inf.
			if ef := int32(bf16BlockAmax(x) >> 7); ef >= 5 && ef <= 0xfe {
				scales[b] = uint8(ef - 2)
				mxfp4BlockBF16(x, (*[16]byte)(out[b*16:b*16+16]), mxfp4OffsetBF16(ef-129))
				continue
			}
		}
		blk := src[b*64 : b*64+2*n]
		for i := 0; i < n; i++ {
			tmp[i] = DecodeBF16(uint16(blk[2*i]) | uint16(blk[2*i+1])<<8)
		}
		if !mxfp4Row(tmp[:n], out[b*16:], scales[b:b+1]) {
			finite = false
		}
	}
	return finite
}

// bf16BlockAmax is the largest magnitude (bits & 0x7fff) of 32 BF16
// values: a lane-wise max over four 15-bit lanes of 64-bit words.
func bf16BlockAmax(x *[64]byte) uint16 {
	// lane-wise max(m, v) for 15-bit lanes: (v|top)−m keeps the lane's
	// top bit iff v >= m, and no borrow crosses lanes.
	const lanes = 0x8000800080008000
	lmax := func(m, v uint64) uint64 {
		ge := ((v | lanes) - m) & lanes
		mask := ge - ge>>15 // 0x7fff in lanes where v >= m
		return v&mask | m&^mask
	}
	var m0, m1, m2, m3 uint64 // four chains for instruction-level parallelism
	for j := 0; j < 8; j += 4 {
		m0 = lmax(m0, binary.LittleEndian.Uint64(x[8*j:])&^lanes)
		m1 = lmax(m1, binary.LittleEndian.Uint64(x[8*j+8:])&^lanes)
		m2 = lmax(m2, binary.LittleEndian.Uint64(x[8*j+16:])&^lanes)
		m3 = lmax(m3, binary.LittleEndian.Uint64(x[8*j+24:])&^lanes)
	}
	m := lmax(lmax(m0, m1), lmax(m2, m3))
	return max(uint16(m), uint16(m>>16), uint16(m>>32), uint16(m>>48))
}

// mxfp4BlockBF16 encodes 32 BF16 values to 16 E2M1 bytes with the table;
// off = mxfp4OffsetBF16(e). Four values at a time share one 64-bit word:
// lane-wise offsets (a negative one, a magnitude below 0.25, clamps to
// entry 0; indices stay at most 640 because every element is at most the
// block absmax, scaled below 8), four
// table lookups, and the four sign bits gathered into nibble bit 3 by one
// multiplication.
func mxfp4BlockBF16(x *[64]byte, o *[16]byte, off int32) {
	const (
		lanes = 0x8000800080008000
		ones  = 0x0001000100010001
		// sign bits at 0, 16, 32, 48 → 51, 55, 59, 63; the cross products
		// land on distinct lower bits (15, 27, 31, 39, 43, 47) or overflow.
		gather = 1<<51 | 1<<39 | 1<<27 | 1<<15
	)
	off4 := uint64(off) * ones
	for i := 0; i < 8; i++ {
		v := binary.LittleEndian.Uint64(x[8*i:])
		r := (v | lanes) - off4                // lane: 0x8000 + (mag − off), no borrow across lanes
		idx := r & ((r >> 15 & ones) * 0x7fff) // lanes with a negative offset → 0
		signs := uint16(((v >> 15 & ones) * gather >> 48) & 0x8888)
		c := uint16(e2m1BF16[idx&1023]) | uint16(e2m1BF16[idx>>16&1023])<<4 |
			uint16(e2m1BF16[idx>>32&1023])<<8 | uint16(e2m1BF16[idx>>48&1023])<<12
		binary.LittleEndian.PutUint16(o[2*i:], c|signs)
	}
}

// e2m1BF16 and e2m1Up are the MXFP4 lookup tables (built from
// EncodeE2M1; never modified). Entry 0 stands for every magnitude below
// 0.25 (code 0); entry i >= 1 for the BF16 magnitude bits 0x3E80 + i − 1
// (0.25 upwards; i <= 640 stays below 8.0). e2m1BF16 holds the code of that
// exact value; e2m1Up is 1 where a float32 strictly above it but within the
// same BF16 bucket takes the next code (the buckets starting at the ties
// that round down: 0.25, 1.25, 2.5, 5). Thresholds have at most two
// mantissa bits, so they always start a bucket. The tables are padded to
// 1024 entries so that a masked index needs no bounds check.
var e2m1BF16, e2m1Up = func() (t, up [1024]uint8) {
	for i := 1; i <= 640; i++ {
		v := DecodeBF16(uint16(0x3e80 + i - 1))
		t[i] = EncodeE2M1(v)
		up[i] = EncodeE2M1(math.Nextafter32(v, 100)) - t[i]
	}
	return t, up
}()

// mxfp4OffsetBF16 is the table offset of a block with shared exponent e:
// index = bits − off, clamped at 0 (see e2m1BF16).
func mxfp4OffsetBF16(e int32) int32 { return 0x3e80 - 1 + e<<7 }

// f32BlockAmax is the largest magnitude bits of 32 float32 values (NaN/Inf
// give bits >= 0x7f800000); four independent chains.
func f32BlockAmax(b *[32]float32) uint32 {
	var m0, m1, m2, m3 uint32
	for i := 0; i < 32; i += 4 {
		m0 = max(m0, math.Float32bits(b[i])&0x7fffffff)
		m1 = max(m1, math.Float32bits(b[i+1])&0x7fffffff)
		m2 = max(m2, math.Float32bits(b[i+2])&0x7fffffff)
		m3 = max(m3, math.Float32bits(b[i+3])&0x7fffffff)
	}
	return max(m0, m1, m2, m3)
}

// mxfp4BlockF32 encodes 32 float32 values (finite, block exponent e >=
// −124) to 16 E2M1 bytes with the tables: the top 16 bits of a float32 are
// its BF16 truncation, and nonzero low bits select e2m1Up.
func mxfp4BlockF32(blk *[32]float32, o *[16]byte, off int32) {
	enc := func(b uint32) uint8 {
		d := int32(b&0x7fffffff>>16) - off
		i := uint32(d&^(d>>31)) & 1023
		nz := uint8((b&0xffff + 0xffff) >> 16) // 1 if the low bits are nonzero
		return uint8(b>>28)&8 | e2m1BF16[i] + e2m1Up[i]&nz
	}
	for i := 0; i < 16; i++ {
		o[i] = enc(math.Float32bits(blk[2*i])) | enc(math.Float32bits(blk[2*i+1]))<<4
	}
}

// e2m1Fast is EncodeE2M1 without branches (finite input).
func e2m1Fast(x float32) uint8 {
	b := math.Float32bits(x)
	return uint8(b>>28)&8 | uint8(e2m1MagFast(b&0x7fffffff))
}

// e2m1MagFast encodes the magnitude bits a of a finite float32: the
// a >= 1 path rounds the float32 mantissa to one bit (RNE on the bits), the
// a < 1 path adds 2^22 so that float32 addition rounds a to a multiple of
// 0.5; a mask selects. Saturation clamps the bits at 6.0 first.
func e2m1MagFast(a uint32) uint32 {
	a = min(a, 0x40c00000)
	norm := uint32(int32(0x3f7fffff-a) >> 31) // all ones when a >= 1.0
	hi := (a+0x1fffff+((a>>22)&1))>>22 - 252
	lo := math.Float32bits(math.Float32frombits(a)+4194304) - 0x4a800000
	return hi&norm | lo&^norm
}

// QuantizeTensor quantizes a 2-D (or N-D, flattened to [prod(shape[:-1]),
// shape[-1]]) BF16, F16 or F32 tensor, converting rows in chunks so that no
// float32 copy of the whole tensor is made beyond one chunk per worker.
// opts.Name defaults to t.Name. A finite BF16 (F16) tensor asked for in
// bf16 (f16) is returned sharing t.Data, since its codes are its bytes.
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
			src = src[:2*len(dst)]
			for i := range dst {
				dst[i] = math.Float32frombits(uint32(src[2*i])<<16 | uint32(src[2*i+1])<<24)
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
	if (f.Elem == ElemBF16 && t.DType == tensor.BF16) || (f.Elem == ElemF16 && t.DType == tensor.F16) {
		// Already in the format: the packed tensor shares t.Data (no
		// copy), unless a NaN/Inf must be reported or encoded.
		exp := uint16(0x7f80) // BF16
		if f.Elem == ElemF16 {
			exp = 0x7c00
		}
		if !half16NonFinite(t.Data, exp) {
			return &Packed{Format: f, Rows: rows, Cols: cols, Codes: t.Data[: rows*cols*2 : rows*cols*2], Scales: []byte{}}, nil
		}
	}
	if f.PerTensor || f.Elem == ElemGGML {
		// The scale is fitted on every weight at once (with scale search,
		// on their squared error), or GGML blocks: convert the whole tensor.
		w := make([]float32, rows*cols)
		conv(w, t.Data)
		return QuantizeContext(ctx, w, rows, cols, f, &o)
	}
	p, err := NewPacked(f, rows, cols)
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", o.Name, err)
	}
	es := t.DType.Size()
	if f.TensorScale {
		// One streaming pass for the tensor absmax (finite values only;
		// NaN/Inf are reported by the row pass below).
		var amax float32
		if t.DType == tensor.BF16 {
			var m uint16
			for i := 0; i+1 < len(t.Data); i += 2 {
				if a := binary.LittleEndian.Uint16(t.Data[i:]) & 0x7fff; a < 0x7f80 {
					m = max(m, a)
				}
			}
			amax = DecodeBF16(m)
		} else {
			buf := make([]float32, cols)
			for r := 0; r < rows; r++ {
				conv(buf, t.Data[r*cols*es:(r+1)*cols*es])
				for _, x := range buf {
					if x-x == 0 {
						amax = max(amax, abs32(x))
					}
				}
			}
		}
		p.TensorScale = f.TensorScaleFor(amax)
	}
	q := newRowQuantizer(p, &o)
	mxBF16 := t.DType == tensor.BF16 && f.Elem == ElemE2M1 && f.Scale == ScaleE8M0 && f.GroupSize == 32 && q.fit == nil
	err = parallelRows(ctx, rows, o.Workers, func(r0, r1 int) error {
		buf := make([]float32, cols)
		for r := r0; r < r1; r++ {
			src := t.Data[r*cols*es : (r+1)*cols*es]
			if mxBF16 {
				g := p.Groups()
				if mxfp4RowBF16(src, p.Codes[r*p.RowBytes():(r+1)*p.RowBytes()], p.Scales[r*g:(r+1)*g]) || !q.reject {
					continue
				}
				// a NaN/Inf: let the float32 path name it
			}
			conv(buf, src)
			if err := q.row(r, buf); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, wrapTensorErr(o.Name, err)
	}
	return p, nil
}

// half16NonFinite reports whether little-endian 16-bit floats b (BF16 or
// F16) hold a NaN or an infinity: an exponent field of all ones.
func half16NonFinite(b []byte, exp uint16) bool {
	for i := 0; i+1 < len(b); i += 2 {
		if binary.LittleEndian.Uint16(b[i:])&exp == exp {
			return true
		}
	}
	return false
}

func abs32(x float32) float32 { return math.Float32frombits(math.Float32bits(x) &^ (1 << 31)) }
