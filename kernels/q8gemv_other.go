//go:build !amd64 || purego

package kernels

// q8MXRows runs the reference kernel (never reached: the int8 path needs
// haveSIMD).
func q8MXRows(codes []byte, rb int, scales []byte, rows int, a *q8Act, lut *[16]byte, y []float32) {
	q8MXRowsGo(codes, rb, scales, rows, a, lut, y)
}

// q8Quant runs the Go quantizer (never reached: quantize calls it only
// with haveSIMD).
func q8Quant(x []float32, a *q8Act) bool { return a.quantizeGo(x) }

// q8F16Rows runs the reference kernel (never reached without haveSIMD).
func q8F16Rows(codes []byte, rb int, scales, zeros []byte, rows int, a *q8Act, w *q8Weight, y []float32) {
	q8F16RowsGo(codes, rb, scales, zeros, rows, a, w, y)
}

// q8NVRows runs the reference kernel (never reached without haveSIMD).
func q8NVRows(codes []byte, rb int, scales []byte, rows int, a *q8Act, w *q8Weight, y []float32) {
	q8NVRowsGo(codes, rb, scales, rows, a, w, y)
}
