//go:build !unix

package stages

// dropPages is a no-op where madvise is not available.
func dropPages(b []byte) {}
