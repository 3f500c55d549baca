//go:build !amd64 || purego

package tensor

import "unsafe"

// bf16Widen writes each bfloat16 of s, shifted into the top half, to d
// (len(d) == len(s)). Four elements move per 64-bit load and two 64-bit
// stores; the tail goes one by one.
func bf16Widen(d []uint32, s []uint16) {
	n := len(s) &^ 3
	if n > 0 && uintptr(unsafe.Pointer(&s[0]))%8 == 0 && uintptr(unsafe.Pointer(&d[0]))%8 == 0 {
		s64 := unsafe.Slice((*uint64)(unsafe.Pointer(&s[0])), n/4)
		d64 := unsafe.Slice((*uint64)(unsafe.Pointer(&d[0])), n/2)
		d64 = d64[:2*len(s64)]
		for i, x := range s64 {
			d64[2*i] = (x&0xffff)<<16 | (x&0xffff0000)<<32
			d64[2*i+1] = (x>>32&0xffff)<<16 | (x>>32&0xffff0000)<<32
		}
	} else {
		n = 0
	}
	d = d[:len(s)]
	for i := n; i < len(s); i++ {
		d[i] = uint32(s[i]) << 16
	}
}
