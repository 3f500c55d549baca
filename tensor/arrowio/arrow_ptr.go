package arrowio

import "unsafe"

// uintptrOf returns the address of b's first element (for alignment only).
func uintptrOf(b []byte) uintptr {
	if cap(b) == 0 {
		return 0
	}
	return uintptr(unsafe.Pointer(unsafe.SliceData(b)))
}
