//go:build amd64 && !purego

package kernels

//go:noescape
func q8MXRowsAVX(codes *byte, rb int, scales *byte, rows, nquads int, xq *int8, xs, sq *float32, lut *[16]byte, y *float32)

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
	q8MXRowsAVX(&codes[0], rb, &scales[0], rows, nb/8, &a.q[0], &a.s[0], &a.sq[0], lut, &y[0])
}

//go:noescape
func q8QuantAVX(x *float32, nblocks int, q *int8, s, sq *float32) bool

// q8Quant is q8Act.quantizeGo run by the AVX2 kernel (the caller checks
// haveSIMD).
func q8Quant(x []float32, a *q8Act) bool {
	nb := len(a.s)
	if nb == 0 {
		return true
	}
	_ = x[nb*q8Block-1]
	_ = a.q[nb*q8Block-1]
	_ = a.sq[4*nb-1]
	return q8QuantAVX(&x[0], nb, &a.q[0], &a.s[0], &a.sq[0])
}

//go:noescape
func q8F16RowsAVX(codes *byte, rb int, scales, zeros *byte, zquad, rows, nquads, k int, xq *int8, xs, sq *float32, lut *[16]byte, kperm *[8]int32, y *float32)

// q8F16Rows is q8F16RowsGo run by the AVX2/F16C kernel (the caller checks
// haveSIMD and haveF16C).
func q8F16Rows(codes []byte, rb int, scales, zeros []byte, rows int, a *q8Act, w *q8Weight, y []float32) {
	if rows == 0 {
		return
	}
	nb := len(a.s)
	ng := nb / w.k
	_ = codes[(rows-1)*rb+nb*q8Block/2-1]
	_ = scales[2*rows*ng-1]
	_ = y[rows-1]
	zp, zquad := &w.zc[0], 0
	if w.asym {
		_ = zeros[rows*ng-1]
		zp, zquad = &zeros[0], 8/w.k
	}
	q8F16RowsAVX(&codes[0], rb, &scales[0], zp, zquad, rows, nb/8, w.k, &a.q[0], &a.s[0], &a.sq[0], &w.lut, &q8Perm[w.k], &y[0])
}

//go:noescape
func q8NVRowsAVX(codes *byte, rb int, scales *byte, rows, nquads int, xq *int8, xs, sq *float32, lut *[16]byte, tsc float32, y *float32)

// q8NVRows is q8NVRowsGo run by the AVX2 kernel (the caller checks
// haveSIMD).
func q8NVRows(codes []byte, rb int, scales []byte, rows int, a *q8Act, w *q8Weight, y []float32) {
	if rows == 0 {
		return
	}
	nb := len(a.s)
	_ = codes[(rows-1)*rb+nb*q8Block/2-1]
	_ = scales[2*rows*nb-1]
	_ = y[rows-1]
	q8NVRowsAVX(&codes[0], rb, &scales[0], rows, nb/8, &a.q[0], &a.s[0], &a.sq[0], &w.lut, w.tsc, &y[0])
}
