package arch

import (
	"fmt"

	"github.com/marlin-llm/marlin/kernels"
)

// maxScratch is the most floats (16 MiB) a Cache keeps for decode scratch
// buffers; a call that needs more (a long prompt) gets the rest from the
// heap, as prefill does.
const maxScratch = 1 << 22

// scratch is the bump allocator of float32 buffers a Cache reuses across
// Decode calls, so that a decode step allocates (almost) nothing. It hands
// out zeroed buffers (like make) whose capacity ends where they do, so an
// append never runs into the next one. A buffer stays valid until the
// allocator is released to a mark taken before it, or reset.
type scratch struct {
	buf  []float32
	off  int // floats handed out (logically: may exceed len(buf))
	need int // largest off since the last reset
}

// reset frees every buffer; it first grows buf to what the previous call
// needed (up to maxScratch), so a repeated call shape is served from buf.
func (s *scratch) reset() {
	if s.need > len(s.buf) && s.need <= maxScratch {
		s.buf = make([]float32, s.need)
	}
	s.off, s.need = 0, 0
}

// alloc returns n zeroed floats.
func (s *scratch) alloc(n int) []float32 {
	off := s.off
	s.off += n
	s.need = max(s.need, s.off)
	if s.off > len(s.buf) {
		return make([]float32, n)
	}
	b := s.buf[off:s.off:s.off]
	clear(b)
	return b
}

// mark returns the current position, for release.
func (s *scratch) mark() int { return s.off }

// release frees the buffers handed out since mark was taken.
func (s *scratch) release(mark int) { s.off = mark }

// ropeTable holds the RoPE cos/sin tables (kernels.RoPETables) of positions
// 0..n-1 for one rotary dimension and theta.
type ropeTable struct {
	dim      int
	theta    float64
	n        int
	cos, sin []float32
}

// ropeBlock is the fewest positions a Cache adds to a RoPE table at once.
const ropeBlock = 64

// ropeTables returns the cos/sin tables of positions pos..pos+n-1 for
// rotary dimension dim: views of tables the cache extends as the sequence
// grows, so Decode computes each position's angles once per sequence
// length, not once per layer and call. The entries equal what
// kernels.RoPETables returns for those positions (it computes each
// position independently).
func (c *Cache) ropeTables(dim int, theta float64, pos, n int) (cos, sin []float32, err error) {
	var t *ropeTable
	for i := range c.rope {
		if c.rope[i].dim == dim && c.rope[i].theta == theta {
			t = &c.rope[i]
			break
		}
	}
	if t == nil {
		c.rope = append(c.rope, ropeTable{dim: dim, theta: theta})
		t = &c.rope[len(c.rope)-1]
	}
	if end := pos + n; end > t.n {
		end = max(end, min(c.max, max(t.n+ropeBlock, 2*t.n)))
		positions := make([]int, end-t.n)
		for i := range positions {
			positions[i] = t.n + i
		}
		cs, sn, err := kernels.RoPETables(positions, dim, theta)
		if err != nil {
			return nil, nil, fmt.Errorf("rope tables: %w", err)
		}
		t.cos, t.sin, t.n = append(t.cos, cs...), append(t.sin, sn...), end
	}
	half := dim / 2
	return t.cos[pos*half : (pos+n)*half], t.sin[pos*half : (pos+n)*half], nil
}
