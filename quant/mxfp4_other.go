//go:build !amd64

package quant

// haveAVX2 is false off amd64: the pure-Go table path runs.
const haveAVX2 = false

// mxfp4BlocksFast has no assembly off amd64.
func mxfp4BlocksFast(src, out, scales []byte, n int) int { return 0 }

// e2m1DivFast has no assembly off amd64.
func e2m1DivFast(w []float32, out []byte, mul float32) int { return 0 }
