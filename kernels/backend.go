package kernels

import (
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/marlin-llm/marlin/quant"
)

// Backend is the one seam between marlin's math and the hardware that runs it.
//
// Conventions shared by every method:
//   - Matrices are row-major float32 slices with an explicit leading dimension
//     (the distance in elements between the starts of two consecutive rows),
//     as in CBLAS with CblasRowMajor.
//   - Methods check shapes and slice lengths and return a wrapped error
//     (matching ErrShape) instead of panicking; Cholesky-type methods return
//     ErrNotSPD when the input is not numerically positive definite.
//   - Output slices may alias inputs only where the method says so.
//   - A Backend is safe for concurrent use by several goroutines; each call
//     may itself use several threads (see Options.Threads).
type Backend interface {
	// Name is the name the backend was registered under ("cpu", "metal").
	Name() string

	// Sgemm computes C = alpha*op(A)*op(B) + beta*C where op(X) is X or Xᵀ
	// according to transA/transB; op(A) is m×k, op(B) is k×n and C is m×n.
	// With beta == 0, C is overwritten (NaNs in C do not propagate).
	Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int,
		b []float32, ldb int, beta float32, c []float32, ldc int) error

	// SgemmStrided runs batch independent Sgemm calls; matrix i of A starts
	// at a[i*strideA], and likewise for B and C.
	SgemmStrided(transA, transB bool, m, n, k int, alpha float32,
		a []float32, lda, strideA int, b []float32, ldb, strideB int,
		beta float32, c []float32, ldc, strideC int, batch int) error

	// RMSNorm writes dst[r,:] = x[r,:] / sqrt(mean(x[r,:]²) + eps) * weight
	// for each of rows rows of cols elements. weight may be nil (all ones).
	// dst may alias x.
	RMSNorm(dst, x, weight []float32, rows, cols int, eps float32) error

	// Softmax replaces each of rows rows of cols elements of x by its
	// softmax, computed stably (max subtracted). -Inf entries get 0; a row
	// that is entirely -Inf becomes all zeros. Like SiLUMul and Sigmoid it
	// uses a float32 exp accurate to about 3 ulp whose results below the
	// smallest normal float (~1.2e-38) are 0.
	Softmax(x []float32, rows, cols int) error

	// SiLUMul writes dst[i] = silu(gate[i]) * up[i] (the SwiGLU activation,
	// silu(x) = x*sigmoid(x)). dst may alias gate or up.
	SiLUMul(dst, gate, up []float32) error

	// Sigmoid writes dst[i] = 1/(1+exp(-x[i])). dst may alias x.
	Sigmoid(dst, x []float32) error

	// RoPE rotates x in place. x holds tokens×heads vectors of headDim
	// elements (token-major: x[(t*heads+h)*headDim+i]); the first rotDim
	// elements of each vector are rotated with cos[t*rotDim/2+i] and
	// sin[t*rotDim/2+i] (see RoPETables), the rest is left unchanged.
	// style selects the pairing (RoPENeoX: i with i+rotDim/2, as Qwen3 and
	// HF's rotate_half; RoPEInterleaved: 2i with 2i+1, GPT-J style).
	RoPE(x []float32, tokens, heads, headDim, rotDim int, cos, sin []float32, style RoPEStyle) error

	// TopK writes, for each of rows rows of cols elements of x, the k largest
	// values in descending order to vals[r*k:] and their column indices to
	// idx[r*k:]. Ties go to the lower index; NaN ranks below every number.
	TopK(x []float32, rows, cols, k int, vals []float32, idx []int32) error

	// FWHT applies the Walsh-Hadamard transform in place to every
	// consecutive block of 2^log2Block elements of each of rows rows of cols
	// elements (cols must be a multiple of the block). With normalize the
	// result is scaled by 1/sqrt(block), which makes the transform
	// orthonormal and its own inverse; without, it is the plain ±1
	// butterfly (applying it twice multiplies by the block size). The
	// output is in natural (Sylvester, not sequency) order: H_{2n} = [[H,H],[H,-H]].
	FWHT(x []float32, rows, cols, log2Block int, normalize bool) error

	// Cholesky factors the symmetric positive-definite n×n matrix a in place
	// (only the triangle named by uplo is read). Lower leaves L with
	// A = L·Lᵀ in the lower triangle and zeros above; Upper leaves U with
	// A = Uᵀ·U in the upper triangle and zeros below.
	Cholesky(uplo Uplo, a []float32, n, lda int) error

	// TriSolve solves op(T)·X = B in place of B, where T is the n×n
	// triangular matrix in t (triangle uplo, the other triangle is not
	// read), op(T) is T or Tᵀ, and B is n×nrhs with leading dimension ldb.
	TriSolve(uplo Uplo, trans bool, n, nrhs int, t []float32, ldt int, b []float32, ldb int) error

	// TriInverse replaces the triangle uplo of the n×n triangular matrix t
	// by its inverse (the other triangle is zeroed).
	TriInverse(uplo Uplo, t []float32, n, ldt int) error

	// SPDInverse replaces the symmetric positive-definite n×n matrix a by
	// its inverse (both triangles are written). It reads the lower triangle.
	SPDInverse(a []float32, n, lda int) error

	// DequantGEMM computes C = X·Wᵀ + beta*C for the packed quantized weight
	// w of shape w.Rows×w.Cols (out×in features, any quant format including
	// act-order g_idx): X is m×w.Cols (leading dimension ldx), C is m×w.Rows
	// (leading dimension ldc). Weights are dequantized tile by tile in
	// cache, never as a whole F32 matrix; the weight values used are
	// bit-identical to w.Dequantize. m = 1 is the decode GEMV. w is checked
	// with Validate (a malformed packed tensor is an error, not a panic).
	DequantGEMM(m int, x []float32, ldx int, w *quant.Packed, beta float32, c []float32, ldc int) error
}

// Uplo names a triangle of a square matrix.
type Uplo uint8

// Triangles.
const (
	Lower Uplo = iota
	Upper
)

// String returns "lower" or "upper".
func (u Uplo) String() string {
	if u == Upper {
		return "upper"
	}
	return "lower"
}

// RoPEStyle selects how RoPE pairs the elements of a head vector.
type RoPEStyle uint8

// RoPE pairings.
const (
	// RoPENeoX rotates element i with element i+rotDim/2 (HF rotate_half;
	// Qwen3, Llama, GLM after its checkpoint permutation).
	RoPENeoX RoPEStyle = iota
	// RoPEInterleaved rotates element 2i with element 2i+1 (GPT-J, the
	// original DeepSeek MLA layout).
	RoPEInterleaved
)

// Errors returned (wrapped) by backends.
var (
	// ErrShape reports inconsistent dimensions or too-short slices.
	ErrShape = errors.New("kernels: bad shape")
	// ErrNotSPD reports a matrix that is not (numerically) symmetric
	// positive definite, or a singular triangular matrix.
	ErrNotSPD = errors.New("kernels: matrix not positive definite")
	// ErrUnknownBackend reports a backend name that was never registered.
	ErrUnknownBackend = errors.New("kernels: unknown backend")
	// ErrUnavailable reports a registered backend that cannot run here
	// (e.g. metal without a Metal device).
	ErrUnavailable = errors.New("kernels: backend unavailable")
	// ErrFormat reports a packed tensor whose format the backend cannot
	// dequantize.
	ErrFormat = errors.New("kernels: unsupported quantized format")
)

// Options configures a backend when it is opened.
type Options struct {
	// Threads bounds the goroutines one call may use; 0 means GOMAXPROCS.
	Threads int
	// F32Activations keeps small-batch (decode) products of 4-bit weights
	// on float32 activations. By default the CPU backend quantizes each
	// activation row to int8 in blocks of 32 for mxfp4, nvfp4, fp4, int4
	// and int4_asym weights, as llama.cpp does for its 4-bit formats (see the
	// package documentation: the error is bounded by the activation
	// rounding); batches of 8 rows and more (prefill, perplexity,
	// calibration) always use float32 activations.
	F32Activations bool
}

// Serial returns a backend that computes what b computes but runs each call
// on the calling goroutine, for callers that run many small independent
// calls in parallel themselves (a MoE block's experts), and ok = true; or
// b and false when b has no such variant (a GPU backend). Results are
// bit-identical to b's for the products a forward pass runs (Sgemm with
// transB or more than one row, the dequantizing products): the CPU kernels
// split those among threads by output blocks, never along a sum. A one-row
// Sgemm without transB sums per-thread parts and may differ in the last
// bits.
func Serial(b Backend) (Backend, bool) {
	if s, ok := b.(interface{ serial() Backend }); ok {
		return s.serial(), true
	}
	return b, false
}

// Factory opens a backend. It returns an error wrapping ErrUnavailable when
// the backend cannot run on this machine.
type Factory func(Options) (Backend, error)

// registry is the table of backend factories. It is filled only from init
// functions (Register) and read-only afterwards.
var registry = struct {
	sync.RWMutex
	m map[string]Factory
}{m: map[string]Factory{}}

// Register makes a backend available under name. It is meant to be called
// from an init function; it panics on an empty or duplicate name, which is a
// programming error.
func Register(name string, f Factory) {
	registry.Lock()
	defer registry.Unlock()
	if name == "" || name == "auto" || f == nil {
		panic("kernels: Register with empty name, the reserved name auto, or nil factory")
	}
	if _, dup := registry.m[name]; dup {
		panic("kernels: backend registered twice: " + name)
	}
	registry.m[name] = f
}

// Names lists the registered backends, sorted.
func Names() []string {
	registry.RLock()
	defer registry.RUnlock()
	out := make([]string, 0, len(registry.m))
	for n := range registry.m {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// autoOrder is the preference order of "auto": accelerated first, the CPU
// reference last (it is always available).
var autoOrder = []string{"metal", "cpu"}

// Open returns the backend called name with the given options. "auto" (or
// "") tries the accelerated backends first and falls back to "cpu".
func Open(name string, opts Options) (Backend, error) {
	if opts.Threads < 0 {
		return nil, fmt.Errorf("kernels: open %q: negative thread count %d", name, opts.Threads)
	}
	if name == "" || name == "auto" {
		var errs []error
		for _, n := range autoOrder {
			registry.RLock()
			f, ok := registry.m[n]
			registry.RUnlock()
			if !ok {
				continue
			}
			b, err := f(opts)
			if err == nil {
				return b, nil
			}
			errs = append(errs, err)
		}
		return nil, fmt.Errorf("kernels: open auto: no backend available: %w", errors.Join(errs...))
	}
	registry.RLock()
	f, ok := registry.m[name]
	registry.RUnlock()
	if !ok {
		return nil, fmt.Errorf("kernels: open %q (registered: %v): %w", name, Names(), ErrUnknownBackend)
	}
	b, err := f(opts)
	if err != nil {
		return nil, fmt.Errorf("kernels: open %q: %w", name, err)
	}
	return b, nil
}
