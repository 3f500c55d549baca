package kernels

import (
	"fmt"
	"math"
)

// maxLog2Block bounds the FWHT block (2^24 elements).
const maxLog2Block = 24

// FWHT implements Backend.
func (c *cpu) FWHT(x []float32, rows, cols, log2Block int, normalize bool) error {
	if log2Block < 0 || log2Block > maxLog2Block {
		return fmt.Errorf("kernels: fwht: log2 block %d outside [0,%d]: %w", log2Block, maxLog2Block, ErrShape)
	}
	bs := 1 << log2Block
	n, ok := mulOK(rows, cols)
	if rows < 0 || cols < 0 || !ok || cols%bs != 0 {
		return fmt.Errorf("kernels: fwht: %dx%d with block %d (cols must be a multiple): %w", rows, cols, bs, ErrShape)
	}
	if err := checkLen("kernels: fwht: x", x, n); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	var scale float32 = 1
	if normalize {
		scale = float32(1 / math.Sqrt(float64(bs)))
	}
	blocks := n / bs
	// Tasks of about 16 Ki elements.
	per := max(1, (1<<14)/bs)
	simd := c.simd
	parallelFor(c.threadsFor(n*log2Block), (blocks+per-1)/per, func(_, t int) {
		b0 := t * per
		b1 := min(blocks, b0+per)
		seg := x[b0*bs : b1*bs]
		if simd {
			fwhtSIMD(seg, log2Block, scale)
			return
		}
		fwhtGo(seg, log2Block, scale)
	})
	return nil
}

// fwhtGo transforms each consecutive block of 2^log2Block elements of x (a
// whole number of blocks) in place and multiplies by scale (skipped when
// scale is 1). Stages 1-3 are fused on groups of 8 held in locals.
func fwhtGo(x []float32, log2Block int, scale float32) {
	bs := 1 << log2Block
	for b := 0; b+bs <= len(x); b += bs {
		blk := x[b : b+bs]
		h := 1
		if log2Block >= 3 {
			for i := 0; i+8 <= bs; i += 8 {
				v := (*[8]float32)(blk[i:])
				a0, a1 := v[0]+v[1], v[0]-v[1]
				a2, a3 := v[2]+v[3], v[2]-v[3]
				a4, a5 := v[4]+v[5], v[4]-v[5]
				a6, a7 := v[6]+v[7], v[6]-v[7]
				b0, b2 := a0+a2, a0-a2
				b1, b3 := a1+a3, a1-a3
				b4, b6 := a4+a6, a4-a6
				b5, b7 := a5+a7, a5-a7
				v[0], v[4] = b0+b4, b0-b4
				v[1], v[5] = b1+b5, b1-b5
				v[2], v[6] = b2+b6, b2-b6
				v[3], v[7] = b3+b7, b3-b7
			}
			h = 8
		}
		for ; h < bs; h *= 2 {
			for i := 0; i < bs; i += 2 * h {
				lo := blk[i : i+h]
				hi := blk[i+h : i+2*h]
				for j := range lo {
					a, c := lo[j], hi[j]
					lo[j], hi[j] = a+c, a-c
				}
			}
		}
		if scale != 1 {
			for i := range blk {
				blk[i] *= scale
			}
		}
	}
}
