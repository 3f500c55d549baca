package ggml

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// Encoder describes one GGML block format this package writes.
type Encoder struct {
	// Name is llama.cpp's type name ("Q4_0", "Q8_0", "MXFP4", "Q4_K", ...).
	Name string
	// BlockSize is the number of weights per block and BlockBytes the
	// encoded size of one block.
	BlockSize, BlockBytes int
	// encode writes len(x)/BlockSize blocks to dst; len(x) is a multiple of
	// BlockSize and dst long enough (Encode checks both).
	encode func(dst []byte, x []float32)
}

// Lookup returns the encoder of a type name (case-insensitive).
func Lookup(name string) (Encoder, error) {
	if e, ok := encoders[strings.ToUpper(name)]; ok {
		return e, nil
	}
	return Encoder{}, fmt.Errorf("ggml: no encoder for type %q (have %s)", name, strings.Join(Names(), ", "))
}

// Names lists the encodable type names, sorted.
func Names() []string {
	n := make([]string, 0, len(encoders))
	for k := range encoders {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// RowBytes is the encoded size of a row of n weights (n a multiple of
// BlockSize).
func (e Encoder) RowBytes(n int) int { return n / e.BlockSize * e.BlockBytes }

// Encode quantizes x (whole rows, row-major) and appends the blocks to dst.
// It fails when len(x) is not a multiple of the block size or x holds a NaN
// or an infinity.
func (e Encoder) Encode(dst []byte, x []float32) ([]byte, error) {
	if len(x)%e.BlockSize != 0 {
		return dst, fmt.Errorf("ggml %s: %d weights is not a multiple of the block size %d", e.Name, len(x), e.BlockSize)
	}
	for i, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return dst, fmt.Errorf("ggml %s: weight %d is %v", e.Name, i, v)
		}
	}
	n := len(dst)
	dst = append(dst, make([]byte, e.RowBytes(len(x)))...)
	e.encode(dst[n:], x)
	return dst, nil
}
