//go:build linux

package stages

import "golang.org/x/sys/unix"

// pageOut asks the kernel to reclaim the whole pages inside b
// (MADV_PAGEOUT): file-backed pages leave the resident set, anonymous ones
// may go to swap; unlike MADV_DONTNEED no data is ever lost, so it is safe
// on memory of unknown origin. Errors (kernels before 5.4) are ignored.
func pageOut(b []byte) { madviseWholePages(b, unix.MADV_PAGEOUT) }
