package main

import (
	"bytes"
	"fmt"
	"io"
	"runtime/metrics"
	"runtime/pprof"
	"time"

	"github.com/marlin-llm/marlin/pipeline"
)

// profilePeaks writes a heap profile (inuse_space: the allocation sites of
// what the last collection found live) to path each time the live heap
// passes its previous peak by 2%, checked every half second, so that the
// file ends up describing the run's peak; stop ends the sampling. A
// sampled profile's sites are exact, its sizes estimates (runtime
// MemProfileRate).
func profilePeaks(path string, stderr io.Writer) (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	go func() {
		defer close(finished)
		var peak uint64
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			metrics.Read(sample)
			if sample[0].Value.Kind() != metrics.KindUint64 {
				return
			}
			live := sample[0].Value.Uint64()
			if live < peak+peak/50 {
				continue
			}
			peak = live
			var buf bytes.Buffer
			if err := pprof.Lookup("heap").WriteTo(&buf, 0); err == nil {
				err = pipeline.WriteFileAtomic(path, buf.Bytes())
				if err != nil {
					fmt.Fprintf(stderr, "marlin-run: memprofile: %v\n", err)
					return
				}
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}
