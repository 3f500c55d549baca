package kernels

import "math"

// dotGo returns sum x[i]*y[i] over len(x) (y at least as long), with four
// partial sums.
func dotGo(x, y []float32) float32 {
	y = y[:len(x)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += x[i] * y[i]
		s1 += x[i+1] * y[i+1]
		s2 += x[i+2] * y[i+2]
		s3 += x[i+3] * y[i+3]
	}
	for ; i < len(x); i++ {
		s0 += x[i] * y[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// axpyGo computes y[i] += a*x[i] over len(x).
func axpyGo(a float32, x, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] += a * v
	}
}

// axpy4Go computes y[j] += Σ_{i<4} x[i]·b[i*ldb+j] for j < len(y).
func axpy4Go(x *[4]float32, b []float32, ldb int, y []float32) {
	n := len(y)
	b0, b1, b2, b3 := b[:n], b[ldb:ldb+n], b[2*ldb:2*ldb+n], b[3*ldb:3*ldb+n]
	for j := range y {
		y[j] += x[0]*b0[j] + x[1]*b1[j] + x[2]*b2[j] + x[3]*b3[j]
	}
}

// expGo is e^x in float32 with the conventions of expAVX: 0 below the
// smallest normal result, +Inf above the largest.
func expGo(x float32) float32 {
	if x < -87.33654 {
		return 0
	}
	return float32(math.Exp(float64(x)))
}
