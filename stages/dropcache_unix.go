//go:build unix

package stages

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// dropPages tells the kernel that the whole pages inside b (a view of a
// read-only file mapping) are no longer needed, so they leave the process's
// resident set; a later read faults them in again from the file. The load
// stage copies each tensor out of the mapping and then drops its pages,
// which keeps peak RSS near resources.memory instead of the model's size.
// Unmodified private file pages carry no data of their own, so dropping
// them loses nothing. Errors are ignored: this is only advice.
func dropPages(b []byte) { madviseWholePages(b, unix.MADV_DONTNEED) }

// madviseWholePages gives advice for the whole pages inside b; errors are
// ignored (it is only advice).
func madviseWholePages(b []byte, advice int) {
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
	_ = unix.Madvise(b[lo-start:hi-start], advice)
}
