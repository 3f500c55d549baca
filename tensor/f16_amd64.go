//go:build amd64 && !purego

package tensor

import "golang.org/x/sys/cpu"

// hasF16C reports whether VCVTPH2PS can be used (checked once at init by
// x/sys/cpu; read-only afterwards).
var hasF16C = cpu.X86.HasF16C && cpu.X86.HasAVX

// f16ToF32F16C is implemented in f16_amd64.s.
//
//go:noescape
func f16ToF32F16C(d *float32, s *uint16, n int)

// f16Widen converts the halves of s into d (len(d) >= len(s)), with F16C
// where the CPU has it.
func f16Widen(d []float32, s []uint16) {
	d = d[:len(s)]
	n := 0
	if hasF16C {
		n = len(s) &^ 7
		if n > 0 {
			f16ToF32F16C(&d[0], &s[0], n)
		}
	}
	for i := n; i < len(s); i++ {
		d[i] = halfToFloat(s[i])
	}
}
