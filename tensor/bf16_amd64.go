//go:build amd64 && !purego

package tensor

// bf16WidenSSE2 is implemented in bf16_amd64.s. SSE2 is part of the amd64
// baseline, so no feature detection is needed. It is hand-written because
// Go's compiler does not vectorize the widening loop, which otherwise caps
// single-core BF16→F32 conversion near 2 GB/s.
//
//go:noescape
func bf16WidenSSE2(d *uint32, s *uint16, n int)

// bf16Widen writes each bfloat16 of s, shifted into the top half, to d
// (len(d) >= len(s)).
func bf16Widen(d []uint32, s []uint16) {
	n := len(s) &^ 7
	d = d[:len(s)]
	if n > 0 {
		bf16WidenSSE2(&d[0], &s[0], n)
	}
	for i := n; i < len(s); i++ {
		d[i] = uint32(s[i]) << 16
	}
}
