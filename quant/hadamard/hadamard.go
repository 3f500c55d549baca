// Package hadamard implements block-diagonal Walsh-Hadamard rotations of a
// weight's input dimension, as used by MR-GPTQ (Egiazarian et al. 2025) and
// QuaRot-style rotated models.
//
// A Rotation R of a dimension d is orthogonal and block diagonal: d is cut
// into blocks of Block elements (a power of two, normally the format's group
// size: 16 for NVFP4, 32 for MXFP4, 128 for INT4-g128); each block gets the
// normalised Sylvester Hadamard matrix H_b/√b, optionally times a random ±1
// diagonal (R_blk = H·D). A dimension that is not a multiple of Block keeps
// its shape: the tail r = d mod Block is covered by power-of-two sub-blocks
// (r's binary decomposition, largest first; a last block of size 1 is the
// identity), so R stays orthogonal without padding the tensor. Quantization
// groups on such a tail are partial anyway.
//
// For a Linear y = W·x (W is out×in) and any orthogonal R of the input
// dimension, y = (W·Rᵀ)(R·x): the rotated weight's rows and the rotated
// activations are both obtained by mapping each input-space vector v to
// R·v, which is what [Rotation.Apply] does to every row of a row-major
// matrix. [Rotation.ApplyT] is the inverse map v → Rᵀ·v (used to un-rotate a
// dequantized weight, Q·R, for runtimes that cannot rotate activations).
// [Rotation.ApplyColumns] rotates the output dimension (W → R·W), for
// folding a rotation into the layer that produces the activations.
//
// The transform is a hand-written in-place butterfly (O(d log b) per
// vector) because the blocks of a tail are smaller than Block and rows are
// not contiguous multiples of the block, which the kernels.Backend FWHT
// entry point requires.
package hadamard

import (
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
)

// MaxBlock bounds the block size.
const MaxBlock = 1 << 15

// Rotation is a block-diagonal Hadamard rotation of a dimension. It is
// immutable and safe for concurrent use.
type Rotation struct {
	dim, block int
	seed       uint64
	spans      [][2]int  // [start, size) of each block
	signs      []float32 // ±1 per element (nil: all +1)
}

// New returns the rotation of dimension dim with blocks of block (a power of
// two ≥ 1). seed 0 means no sign flips; any other seed draws a ±1 diagonal
// from a splitmix64 stream (reproducible from the spec string).
func New(dim, block int, seed uint64) (*Rotation, error) {
	if dim <= 0 || dim > 1<<24 {
		return nil, fmt.Errorf("hadamard: dimension %d out of range", dim)
	}
	if block <= 0 || block > MaxBlock || block&(block-1) != 0 {
		return nil, fmt.Errorf("hadamard: block %d must be a power of two in 1..%d", block, MaxBlock)
	}
	r := &Rotation{dim: dim, block: block, seed: seed}
	off := 0
	for ; off+block <= dim; off += block {
		r.spans = append(r.spans, [2]int{off, block})
	}
	for rest := dim - off; rest > 0; {
		b := 1 << (bits.Len(uint(rest)) - 1)
		r.spans = append(r.spans, [2]int{off, b})
		off += b
		rest -= b
	}
	if seed != 0 {
		r.signs = make([]float32, dim)
		s := seed
		for i := range r.signs {
			s += 0x9e3779b97f4a7c15
			z := s
			z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
			z = (z ^ (z >> 27)) * 0x94d049bb133111eb
			z ^= z >> 31
			if z&1 == 1 {
				r.signs[i] = -1
			} else {
				r.signs[i] = 1
			}
		}
	}
	return r, nil
}

// Dim is the rotated dimension.
func (r *Rotation) Dim() int { return r.dim }

// Block is the nominal block size.
func (r *Rotation) Block() int { return r.block }

// Spec is the rotation's self-describing name for tensor Meta:
// "hadamard:block=32" or "hadamard:block=32:seed=7".
func (r *Rotation) Spec() string {
	s := "hadamard:block=" + strconv.Itoa(r.block)
	if r.seed != 0 {
		s += ":seed=" + strconv.FormatUint(r.seed, 10)
	}
	return s
}

// Parse rebuilds a rotation of dimension dim from a Spec string.
func Parse(spec string, dim int) (*Rotation, error) {
	parts := strings.Split(spec, ":")
	if len(parts) < 2 || parts[0] != "hadamard" {
		return nil, fmt.Errorf("hadamard: bad rotation spec %q (want hadamard:block=N[:seed=S])", spec)
	}
	block, seed := 0, uint64(0)
	for _, p := range parts[1:] {
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			return nil, fmt.Errorf("hadamard: bad rotation spec %q: %q is not key=value", spec, p)
		}
		var err error
		switch k {
		case "block":
			block, err = strconv.Atoi(v)
		case "seed":
			seed, err = strconv.ParseUint(v, 10, 64)
		default:
			err = fmt.Errorf("unknown key %q", k)
		}
		if err != nil {
			return nil, fmt.Errorf("hadamard: bad rotation spec %q: %w", spec, err)
		}
	}
	return New(dim, block, seed)
}

// fwht is the unnormalised in-place Sylvester butterfly of a power-of-two
// length vector.
func fwht[T float32 | float64](v []T) {
	n := len(v)
	for h := 1; h < n; h <<= 1 {
		for i := 0; i < n; i += h << 1 {
			for j := i; j < i+h; j++ {
				a, b := v[j], v[j+h]
				v[j], v[j+h] = a+b, a-b
			}
		}
	}
}

func (r *Rotation) check(x []float32, rows int) error {
	if rows < 0 || len(x) != rows*r.dim {
		return fmt.Errorf("hadamard: %d values for %d rows of dimension %d", len(x), rows, r.dim)
	}
	return nil
}

// vec maps one vector v (len Dim) to R·v (transpose false) or Rᵀ·v.
func vec[T float32 | float64](r *Rotation, v []T, transpose bool) {
	if r.signs != nil && !transpose {
		for i := range v {
			v[i] *= T(r.signs[i])
		}
	}
	for _, sp := range r.spans {
		if sp[1] == 1 {
			continue
		}
		b := v[sp[0] : sp[0]+sp[1]]
		fwht(b)
		s := T(1 / math.Sqrt(float64(sp[1])))
		for i := range b {
			b[i] *= s
		}
	}
	if r.signs != nil && transpose {
		for i := range v {
			v[i] *= T(r.signs[i])
		}
	}
}

// Apply maps every row v of the row-major rows×Dim matrix x to R·v in place:
// W → W·Rᵀ for a weight's input dimension, x → R·x for activations.
func (r *Rotation) Apply(x []float32, rows int) error {
	if err := r.check(x, rows); err != nil {
		return err
	}
	for i := 0; i < rows; i++ {
		vec(r, x[i*r.dim:(i+1)*r.dim], false)
	}
	return nil
}

// ApplyT maps every row v to Rᵀ·v in place (the inverse of Apply).
func (r *Rotation) ApplyT(x []float32, rows int) error {
	if err := r.check(x, rows); err != nil {
		return err
	}
	for i := 0; i < rows; i++ {
		vec(r, x[i*r.dim:(i+1)*r.dim], true)
	}
	return nil
}

// ApplyColumns rotates the row dimension of a row-major Dim×cols matrix w in
// place: w → R·w (each column c ↦ R·c). Folding a rotation of a layer's
// outputs into its weight is ApplyColumns on that weight.
func (r *Rotation) ApplyColumns(w []float32, cols int) error {
	if cols < 0 || len(w) != r.dim*cols {
		return fmt.Errorf("hadamard: %d values for %d×%d", len(w), r.dim, cols)
	}
	col := make([]float32, r.dim)
	for c := 0; c < cols; c++ {
		for i := 0; i < r.dim; i++ {
			col[i] = w[i*cols+c]
		}
		vec(r, col, false)
		for i := 0; i < r.dim; i++ {
			w[i*cols+c] = col[i]
		}
	}
	return nil
}

// Matrix returns R as a dense row-major Dim×Dim float64 matrix (for tests
// and small dimensions).
func (r *Rotation) Matrix() []float64 {
	d := r.dim
	m := make([]float64, d*d)
	e := make([]float32, d)
	for j := 0; j < d; j++ {
		clear(e)
		e[j] = 1
		vec(r, e, false) // column j of R is R·e_j
		for i := 0; i < d; i++ {
			m[i*d+j] = float64(e[i])
		}
	}
	return m
}

// ConjugateSym returns R·H·Rᵀ for a symmetric row-major Dim×Dim float64
// matrix h (h is not modified): the Hessian of rotated activations
// x → R·x, given the Hessian of the original ones.
func (r *Rotation) ConjugateSym(h []float64) ([]float64, error) {
	d := r.dim
	if len(h) != d*d {
		return nil, fmt.Errorf("hadamard: %d values for a %d×%d matrix", len(h), d, d)
	}
	out := append([]float64(nil), h...)
	for i := 0; i < d; i++ { // rows: H·Rᵀ
		vec(r, out[i*d:(i+1)*d], false)
	}
	col := make([]float64, d)
	for c := 0; c < d; c++ { // columns: R·(H·Rᵀ)
		for i := 0; i < d; i++ {
			col[i] = out[i*d+c]
		}
		vec(r, col, false)
		for i := 0; i < d; i++ {
			out[i*d+c] = col[i]
		}
	}
	return out, nil
}
