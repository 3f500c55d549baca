package pipeline

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// Summary is the plain-text display for a run whose stderr is not a
// terminal (CI logs, files, pipes): a few lines per stage instead of one
// per task event. A stage gets a line when its first task starts, a
// progress line at most every interval while it runs (from task events
// and a ticker, so that a long single task shows it is alive), and one
// line when its last task ends, with the counts of tasks run, skipped and
// failed, the bytes written and the wall time. Every failure gets its own
// line. Per-task lines are PlainLines (marlin-run run -v) or JSONLines.
type Summary struct {
	mu       sync.Mutex
	w        io.Writer
	interval time.Duration
	order    []string
	stages   map[string]*stageSum
	stop     chan struct{}
	stopped  chan struct{}
	once     sync.Once
}

type stageSum struct {
	total                 int
	run, skipped, failed  int
	running               int
	bytes                 int64
	start, last, lastLine time.Time
	started, finished     bool
	progDone, progTotal   int64
	progKey               string
	idWidth               int
}

// NewSummary returns the display for plan, writing to w. interval is the
// least time between two progress lines of a stage (0: none). Call Close
// when the run returns.
func NewSummary(w io.Writer, plan *Plan, interval time.Duration) *Summary {
	s := newSummary(w, plan, interval)
	if interval > 0 {
		s.stop, s.stopped = make(chan struct{}), make(chan struct{})
		go s.ticker()
	}
	return s
}

func newSummary(w io.Writer, plan *Plan, interval time.Duration) *Summary {
	s := &Summary{w: w, interval: interval, stages: map[string]*stageSum{}}
	width := 0
	for _, sp := range plan.Stages {
		width = max(width, len(sp.ID))
	}
	for _, sp := range plan.Stages {
		s.order = append(s.order, sp.ID)
		s.stages[sp.ID] = &stageSum{total: len(sp.Tasks), idWidth: width}
	}
	return s
}

func (s *Summary) ticker() {
	defer close(s.stopped)
	t := time.NewTicker(s.interval / 2)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.tick(now)
		}
	}
}

// tick prints a progress line for every running stage that has printed
// nothing for interval.
func (s *Summary) tick(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range s.order {
		st := s.stages[id]
		if st.started && !st.finished && now.Sub(st.lastLine) >= s.interval {
			s.progress(id, st, now)
		}
	}
}

// Close stops the ticker.
func (s *Summary) Close() {
	s.once.Do(func() {
		if s.stop != nil {
			close(s.stop)
			<-s.stopped
		}
	})
}

// Handler returns the event handler that feeds the summary.
func (s *Summary) Handler() EventHandler {
	return func(e Event) {
		s.mu.Lock()
		defer s.mu.Unlock()
		st := s.stages[e.Stage]
		if st == nil {
			return
		}
		if st.start.IsZero() {
			st.start = e.Time
		}
		st.last = e.Time
		switch e.Type {
		case EventStarted:
			st.running++
			if !st.started {
				st.started = true
				st.lastLine = e.Time
				n := st.total - st.run - st.skipped - st.failed
				fmt.Fprintf(s.w, "%s %-*s started: %s%s\n", clock(e.Time), st.idWidth+1, e.Stage+":", plural(n, "task"), skippedNote(st.skipped))
			}
		case EventProgress:
			st.progKey, st.progDone, st.progTotal = e.Key, e.Done, e.Total
		case EventDone:
			st.running--
			st.run++
			st.bytes += e.Bytes
		case EventSkipped:
			st.skipped++
		case EventFailed:
			st.running--
			st.failed++
			fmt.Fprintf(s.w, "%s %-*s FAILED %s: %s\n", clock(e.Time), st.idWidth+1, e.Stage+":", e.Key, e.Err)
			st.lastLine = e.Time
		}
		if st.run+st.skipped+st.failed == st.total && !st.finished {
			st.finished = true
			s.finish(e.Stage, st)
			return
		}
		if st.started && s.interval > 0 && e.Time.Sub(st.lastLine) >= s.interval {
			s.progress(e.Stage, st, e.Time)
		}
	}
}

func (s *Summary) progress(id string, st *stageSum, now time.Time) {
	st.lastLine = now
	line := fmt.Sprintf("%s %-*s %d/%d tasks done", clock(now), st.idWidth+1, id+":", st.run+st.skipped, st.total)
	if st.running > 0 {
		line += fmt.Sprintf(", %d running", st.running)
	}
	if st.running > 0 && st.progTotal > 0 {
		line += fmt.Sprintf(" (%s: %d/%d)", st.progKey, st.progDone, st.progTotal)
	}
	fmt.Fprintf(s.w, "%s, %.0fs\n", line, now.Sub(st.start).Seconds())
}

func (s *Summary) finish(id string, st *stageSum) {
	var what string
	switch {
	case st.run == 0 && st.failed == 0:
		what = fmt.Sprintf("%s skipped (checkpointed)", plural(st.skipped, "task"))
	default:
		what = fmt.Sprintf("%d run", st.run)
		if st.skipped > 0 {
			what += fmt.Sprintf(", %d skipped", st.skipped)
		}
		if st.failed > 0 {
			what += fmt.Sprintf(", %d FAILED", st.failed)
		}
		what += fmt.Sprintf(", %s written in %.1fs", ByteSize(st.bytes), st.last.Sub(st.start).Seconds())
	}
	fmt.Fprintf(s.w, "%s %-*s done: %s\n", clock(st.last), st.idWidth+1, id+":", what)
}

func clock(t time.Time) string { return t.Format("15:04:05") }

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func skippedNote(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d skipped: checkpointed)", n)
}
