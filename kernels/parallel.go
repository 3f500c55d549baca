package kernels

import (
	"sync"
	"sync/atomic"
)

// parallelFor runs body(worker, i) for i in [0, n) on at most threads
// goroutines (worker in [0, threads)); tasks are handed out dynamically.
// It returns when all tasks are done. With one thread or one task it runs
// inline.
func parallelFor(threads, n int, body func(worker, i int)) {
	if n <= 0 {
		return
	}
	if threads > n {
		threads = n
	}
	if threads <= 1 {
		for i := 0; i < n; i++ {
			body(0, i)
		}
		return
	}
	var next atomic.Int64
	work := func(w int) {
		for {
			i := int(next.Add(1) - 1)
			if i >= n {
				return
			}
			body(w, i)
		}
	}
	var wg sync.WaitGroup
	wg.Add(threads - 1)
	for w := 1; w < threads; w++ {
		go func(w int) {
			defer wg.Done()
			work(w)
		}(w)
	}
	work(0) // the caller is worker 0
	wg.Wait()
}
