package kernels

// Scale-hoisted 4-bit integer GEMV (see int4DotSIMD): every group's dot
// product of raw codes with x is formed first and scaled once, so decoding
// is integer-to-float conversion only; the zero point enters through the
// per-group sums of x.

// int4XSums writes, for every whole group of gs (a multiple of 32) elements
// of x, the 8-lane partial sums that int4DotAVX forms for a group whose
// codes are all 1: lane l of partial k sums x[32s + 8k + l] over the steps
// s, and xsv[8g+l] = (P0+P1)+(P2+P3). len(xsv) = 8·(len(x)/gs).
func int4XSums(xsv, x []float32, gs int) {
	for g := 0; g < len(xsv)/8; g++ {
		xg := x[g*gs : (g+1)*gs]
		var p [4][8]float32
		for s := 0; s < gs; s += 32 {
			for k := 0; k < 4; k++ {
				for l := 0; l < 8; l++ {
					p[k][l] += xg[s+8*k+l]
				}
			}
		}
		for l := 0; l < 8; l++ {
			xsv[8*g+l] = (p[0][l] + p[1][l]) + (p[2][l] + p[3][l])
		}
	}
}

// int4DotGo is the pure-Go twin of int4DotSIMD, with the same partial
// sums in the same order.
func int4DotGo(x []float32, codes []byte, ngroups, gs int, xsv, muls, offs []float32) float32 {
	var acc [2][8]float32
	for g := 0; g < ngroups; g++ {
		var p [4][8]float32
		for s := g * gs; s < (g+1)*gs; s += 32 {
			for k := 0; k < 4; k++ {
				for l := 0; l < 8; l++ {
					e := s + 8*k + l
					p[k][l] += float32((codes[e>>1]>>(4*(e&1)))&15) * x[e]
				}
			}
		}
		a := &acc[g&1]
		for l := 0; l < 8; l++ {
			q := (p[0][l] + p[1][l]) + (p[2][l] + p[3][l])
			q -= offs[g] * xsv[8*g+l]
			a[l] += q * muls[g]
		}
	}
	var v [8]float32
	for l := range v {
		v[l] = acc[0][l] + acc[1][l]
	}
	return ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]))
}
