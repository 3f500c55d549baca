// Package heappeak measures the most heap a function holds at once, for
// tests that check memory estimates against what code really allocates.
package heappeak

import (
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"time"
)

// Of runs f with the collector running after every 2% of heap growth (so
// that garbage barely counts) and returns the most the heap held above
// what it held before f, sampled every 2 ms. Sampling can miss a short
// peak, so the figure is a lower bound of the true peak: a test that
// asserts an estimate is at least this catches undercounts of anything
// that lives for more than a few milliseconds.
func Of(f func()) int64 {
	defer debug.SetGCPercent(debug.SetGCPercent(2))
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		var m runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			runtime.ReadMemStats(&m)
			if m.HeapAlloc > peak.Load() {
				peak.Store(m.HeapAlloc)
			}
		}
	}()
	f()
	close(stop)
	<-done
	return int64(peak.Load()) - int64(base.HeapAlloc)
}
