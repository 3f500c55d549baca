package kernels

import (
	"fmt"
	"math"
)

// RMSNorm implements Backend. The sum of squares is accumulated in float64.
func (c *cpu) RMSNorm(dst, x, weight []float32, rows, cols int, eps float32) error {
	n, ok := mulOK(rows, cols)
	if rows < 0 || cols < 0 || !ok {
		return fmt.Errorf("kernels: rmsnorm: bad size %dx%d: %w", rows, cols, ErrShape)
	}
	if err := checkLen("kernels: rmsnorm: x", x, n); err != nil {
		return err
	}
	if err := checkLen("kernels: rmsnorm: dst", dst, n); err != nil {
		return err
	}
	if weight != nil {
		if err := checkLen("kernels: rmsnorm: weight", weight, cols); err != nil {
			return err
		}
	}
	if cols == 0 {
		return nil
	}
	parallelFor(c.threadsFor(n), rows, func(_, r int) {
		xr := x[r*cols : r*cols+cols]
		dr := dst[r*cols : r*cols+cols]
		var ss float64
		for _, v := range xr {
			ss += float64(v) * float64(v)
		}
		inv := float32(1 / math.Sqrt(ss/float64(cols)+float64(eps)))
		if weight == nil {
			for i, v := range xr {
				dr[i] = v * inv
			}
			return
		}
		w := weight[:cols]
		for i, v := range xr {
			dr[i] = (v * inv) * w[i]
		}
	})
	return nil
}

// Softmax implements Backend.
func (c *cpu) Softmax(x []float32, rows, cols int) error {
	n, ok := mulOK(rows, cols)
	if rows < 0 || cols < 0 || !ok {
		return fmt.Errorf("kernels: softmax: bad size %dx%d: %w", rows, cols, ErrShape)
	}
	if err := checkLen("kernels: softmax: x", x, n); err != nil {
		return err
	}
	if cols == 0 {
		return nil
	}
	parallelFor(c.threadsFor(n*8), rows, func(_, r int) {
		softmaxRow(x[r*cols : r*cols+cols])
	})
	return nil
}

// softmaxRow replaces row by its softmax (max subtracted, vector exp,
// float64 sum).
func softmaxRow(row []float32) {
	m := float32(math.Inf(-1))
	for _, v := range row {
		if v > m {
			m = v
		}
	}
	if math.IsInf(float64(m), -1) {
		clear(row)
		return
	}
	for i := range row {
		row[i] -= m
	}
	expF32(row, row)
	var sum float64
	for _, e := range row {
		sum += float64(e)
	}
	inv := float32(1 / sum)
	for i := range row {
		row[i] *= inv
	}
}

// SiLUMul implements Backend.
func (c *cpu) SiLUMul(dst, gate, up []float32) error {
	if len(gate) != len(up) || len(dst) < len(gate) {
		return fmt.Errorf("kernels: silu-mul: lengths dst %d gate %d up %d: %w", len(dst), len(gate), len(up), ErrShape)
	}
	const chunk = 4096
	n := len(gate)
	parallelFor(c.threadsFor(n*16), (n+chunk-1)/chunk, func(_, t int) {
		var e [chunk]float32
		i0 := t * chunk
		g := gate[i0:min(n, i0+chunk)]
		u := up[i0 : i0+len(g)]
		d := dst[i0 : i0+len(g)]
		en := e[:len(g)]
		for i, v := range g {
			en[i] = -v
		}
		expF32(en, en)
		for i, v := range g {
			d[i] = v / (1 + en[i]) * u[i]
		}
	})
	return nil
}

// Sigmoid implements Backend.
func (c *cpu) Sigmoid(dst, x []float32) error {
	if len(dst) < len(x) {
		return fmt.Errorf("kernels: sigmoid: dst has %d elements, x %d: %w", len(dst), len(x), ErrShape)
	}
	d := dst[:len(x)]
	for i, v := range x {
		d[i] = -v
	}
	expF32(d, d)
	for i, e := range d {
		d[i] = 1 / (1 + e)
	}
	return nil
}

// RoPETables returns the cos and sin tables RoPE expects for the given
// positions: entry t*rotDim/2+i is cos/sin(pos[t] * theta^(-2i/rotDim)),
// computed in float64 and rounded once (HF computes inv_freq in float32;
// the difference is below float32 resolution of the rotated values).
func RoPETables(pos []int, rotDim int, theta float64) (cos, sin []float32, err error) {
	if rotDim <= 0 || rotDim%2 != 0 {
		return nil, nil, fmt.Errorf("kernels: rope tables: rotary dimension %d must be positive and even: %w", rotDim, ErrShape)
	}
	if !(theta > 0) {
		return nil, nil, fmt.Errorf("kernels: rope tables: theta %v must be positive: %w", theta, ErrShape)
	}
	half := rotDim / 2
	cos = make([]float32, len(pos)*half)
	sin = make([]float32, len(pos)*half)
	inv := make([]float64, half)
	for i := range inv {
		inv[i] = 1 / math.Pow(theta, float64(2*i)/float64(rotDim))
	}
	for t, p := range pos {
		for i, f := range inv {
			s, c := math.Sincos(float64(p) * f)
			cos[t*half+i] = float32(c)
			sin[t*half+i] = float32(s)
		}
	}
	return cos, sin, nil
}

// RoPE implements Backend.
func (c *cpu) RoPE(x []float32, tokens, heads, headDim, rotDim int, cos, sin []float32, style RoPEStyle) error {
	if tokens < 0 || heads < 0 || headDim < 0 || rotDim < 0 || rotDim > headDim || rotDim%2 != 0 {
		return fmt.Errorf("kernels: rope: tokens %d heads %d headDim %d rotDim %d: %w", tokens, heads, headDim, rotDim, ErrShape)
	}
	if style != RoPENeoX && style != RoPEInterleaved {
		return fmt.Errorf("kernels: rope: unknown style %d: %w", style, ErrShape)
	}
	th, ok1 := mulOK(tokens, heads)
	n, ok2 := mulOK(th, headDim)
	if !ok1 || !ok2 {
		return fmt.Errorf("kernels: rope: size overflows: %w", ErrShape)
	}
	half := rotDim / 2
	if err := checkLen("kernels: rope: x", x, n); err != nil {
		return err
	}
	if err := checkLen("kernels: rope: cos", cos, tokens*half); err != nil {
		return err
	}
	if err := checkLen("kernels: rope: sin", sin, tokens*half); err != nil {
		return err
	}
	for t := 0; t < tokens; t++ {
		ct := cos[t*half : t*half+half]
		st := sin[t*half : t*half+half]
		for h := 0; h < heads; h++ {
			v := x[(t*heads+h)*headDim : (t*heads+h)*headDim+rotDim]
			if style == RoPENeoX {
				x1, x2 := v[:half], v[half:rotDim]
				for i := range half {
					a, b := x1[i], x2[i]
					x1[i] = a*ct[i] - b*st[i]
					x2[i] = b*ct[i] + a*st[i]
				}
				continue
			}
			for i := range half {
				a, b := v[2*i], v[2*i+1]
				v[2*i] = a*ct[i] - b*st[i]
				v[2*i+1] = b*ct[i] + a*st[i]
			}
		}
	}
	return nil
}

// TopK implements Backend. It uses a partial insertion sort per row
// (O(cols·k), fine for router top-k with k ≤ a few dozen).
func (c *cpu) TopK(x []float32, rows, cols, k int, vals []float32, idx []int32) error {
	n, ok := mulOK(rows, cols)
	if rows < 0 || cols < 0 || k < 0 || k > cols || !ok || cols > math.MaxInt32 {
		return fmt.Errorf("kernels: topk: rows %d cols %d k %d: %w", rows, cols, k, ErrShape)
	}
	if err := checkLen("kernels: topk: x", x, n); err != nil {
		return err
	}
	if err := checkLen("kernels: topk: vals", vals, rows*k); err != nil {
		return err
	}
	if len(idx) < rows*k {
		return fmt.Errorf("kernels: topk: idx needs %d elements, have %d: %w", rows*k, len(idx), ErrShape)
	}
	if k == 0 {
		return nil
	}
	// better reports whether (v, i) ranks above (w, j).
	better := func(v float32, i int32, w float32, j int32) bool {
		vn, wn := v != v, w != w
		switch {
		case vn && wn:
			return i < j
		case vn:
			return false
		case wn:
			return true
		case v != w:
			return v > w
		}
		return i < j
	}
	for r := 0; r < rows; r++ {
		xr := x[r*cols : r*cols+cols]
		vr := vals[r*k : r*k+k]
		ir := idx[r*k : r*k+k]
		cnt := 0
		for j, v := range xr {
			jj := int32(j)
			if cnt == k && !better(v, jj, vr[k-1], ir[k-1]) {
				continue
			}
			p := cnt
			if cnt < k {
				cnt++
			} else {
				p = k - 1
			}
			for p > 0 && better(v, jj, vr[p-1], ir[p-1]) {
				vr[p], ir[p] = vr[p-1], ir[p-1]
				p--
			}
			vr[p], ir[p] = v, jj
		}
	}
	return nil
}
