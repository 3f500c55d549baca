//go:build amd64 && !purego

package kernels

//go:noescape
func q8MXRowsAVX(codes *byte, rb int, scales *byte, rows, nquads int, xq *int8, xs *float32, xc *int32, lut *[16]byte, y *float32)

// q8MXRows is q8MXRowsGo run by the AVX2 kernel (the caller checks
// haveSIMD).
func q8MXRows(codes []byte, rb int, scales []byte, rows int, a *q8Act, lut *[16]byte, y []float32) {
	if rows == 0 {
		return
	}
	nb := len(a.s)
	_ = codes[(rows-1)*rb+nb*q8Block/2-1]
	_ = scales[rows*nb-1]
	_ = y[rows-1]
	q8MXRowsAVX(&codes[0], rb, &scales[0], rows, nb/8, &a.q[0], &a.s[0], &a.c[0], lut, &y[0])
}
