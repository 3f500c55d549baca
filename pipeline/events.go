package pipeline

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"
)

// EventType names what happened to a task.
type EventType string

// Event types, in the order a task goes through them.
const (
	EventQueued   EventType = "queued"   // all needs done; waiting for a worker and memory
	EventStarted  EventType = "started"  // admitted and running
	EventProgress EventType = "progress" // TaskEnv.Progress was called
	EventDone     EventType = "done"     // finished and checkpointed
	EventSkipped  EventType = "skipped"  // found valid in the checkpoint store
	EventFailed   EventType = "failed"   // returned an error (or was cancelled)
)

// Event is one runner event. Handlers are called one at a time (the runner
// serializes them) and should return quickly.
type Event struct {
	Type  EventType `json:"event"`
	Time  time.Time `json:"time"`
	Stage string    `json:"stage"`
	Key   string    `json:"key"`
	// Bytes is the task's EstBytes for queued/started, the stored blob
	// size for done/skipped.
	Bytes int64 `json:"bytes,omitempty"`
	// Seconds is the task's run time (done, failed).
	Seconds float64 `json:"seconds,omitempty"`
	// Done and Total are progress units (progress events).
	Done  int64 `json:"done,omitempty"`
	Total int64 `json:"total,omitempty"`
	// Err is the failure (failed events).
	Err string `json:"error,omitempty"`
}

// EventHandler receives runner events.
type EventHandler func(Event)

// JSONLines returns a handler writing one JSON object per line to w.
func JSONLines(w io.Writer) EventHandler {
	var mu sync.Mutex
	enc := json.NewEncoder(w)
	return func(e Event) {
		mu.Lock()
		defer mu.Unlock()
		enc.Encode(e)
	}
}

// PlainLines returns a handler writing one human-readable line per event
// (progress events are dropped) — the display when stderr is not a
// terminal.
func PlainLines(w io.Writer) EventHandler {
	var mu sync.Mutex
	return func(e Event) {
		if e.Type == EventProgress {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		ts := e.Time.Format("15:04:05.000")
		switch e.Type {
		case EventDone:
			fmt.Fprintf(w, "%s %-8s %s/%s %s in %.2fs\n", ts, e.Type, e.Stage, e.Key, ByteSize(e.Bytes), e.Seconds)
		case EventFailed:
			fmt.Fprintf(w, "%s %-8s %s/%s after %.2fs: %s\n", ts, e.Type, e.Stage, e.Key, e.Seconds, e.Err)
		case EventQueued, EventStarted:
			fmt.Fprintf(w, "%s %-8s %s/%s est %s\n", ts, e.Type, e.Stage, e.Key, ByteSize(e.Bytes))
		default:
			fmt.Fprintf(w, "%s %-8s %s/%s\n", ts, e.Type, e.Stage, e.Key)
		}
	}
}

// MultiHandler fans events out to several handlers (nil entries ignored).
func MultiHandler(hs ...EventHandler) EventHandler {
	return func(e Event) {
		for _, h := range hs {
			if h != nil {
				h(e)
			}
		}
	}
}
