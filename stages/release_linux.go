//go:build linux

package stages

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pageOut asks the kernel to reclaim the whole pages inside b
// (MADV_PAGEOUT): file-backed pages leave the resident set, anonymous ones
// may go to swap; unlike MADV_DONTNEED no data is ever lost, so it is safe
// on memory of unknown origin. Errors (kernels before 5.4) are ignored.
func pageOut(b []byte) {
	if len(b) == 0 {
		return
	}
	ps := uintptr(os.Getpagesize())
	start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	end := start + uintptr(len(b))
	lo := (start + ps - 1) &^ (ps - 1)
	hi := end &^ (ps - 1)
	if hi <= lo {
		return
	}
	_ = unix.Madvise(b[lo-start:hi-start], unix.MADV_PAGEOUT)
}
