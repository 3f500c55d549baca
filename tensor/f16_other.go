//go:build !amd64 || purego

package tensor

// f16Widen converts the halves of s into d (len(d) >= len(s)).
func f16Widen(d []float32, s []uint16) {
	d = d[:len(s)]
	for i, h := range s {
		d[i] = halfToFloat(h)
	}
}
