//go:build !linux

package stages

// pageOut is a no-op where MADV_PAGEOUT is not available.
func pageOut(b []byte) {}
