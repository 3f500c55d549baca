package kernels

// dequantFast runs a fused kernel for the packed formats it knows; ok is
// false when w's concrete type has no fast path.
func (c *cpu) dequantFast(m int, x []float32, ldx int, w QuantMatrix, cm []float32, ldc int) (err error, ok bool) {
	return nil, false
}
