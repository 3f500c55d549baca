package pipeline

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// Progress is a terminal display with one bar per stage (tasks done of
// total, percentage, ETA) drawn with github.com/vbauerster/mpb/v8. Feed it
// runner events through Handler and call Wait when the run returns.
type Progress struct {
	p    *mpb.Progress
	mu   sync.Mutex
	bars map[string]*mpb.Bar
	// inflight counts running tasks per stage for the bar label.
	inflight map[string]int
	w        io.Writer
}

// NewProgress creates the display for a plan, writing to w (a terminal).
func NewProgress(w io.Writer, plan *Plan) *Progress {
	pr := &Progress{
		p:        mpb.New(mpb.WithOutput(w), mpb.WithAutoRefresh(), mpb.WithWidth(40), mpb.WithRefreshRate(150*time.Millisecond)),
		bars:     map[string]*mpb.Bar{},
		inflight: map[string]int{},
		w:        w,
	}
	width := 8
	for _, sp := range plan.Stages {
		width = max(width, len(sp.ID))
	}
	for _, sp := range plan.Stages {
		id := sp.ID
		bar := pr.p.AddBar(int64(len(sp.Tasks)),
			mpb.PrependDecorators(
				decor.Name(id, decor.WC{W: width + 1, C: decor.DindentRight}),
				decor.CountersNoUnit("%d/%d", decor.WCSyncWidth),
				decor.Any(func(decor.Statistics) string {
					pr.mu.Lock()
					defer pr.mu.Unlock()
					if n := pr.inflight[id]; n > 0 {
						return fmt.Sprintf(" (%d running)", n)
					}
					return ""
				}, decor.WCSyncWidthR),
			),
			mpb.AppendDecorators(
				decor.Percentage(decor.WC{W: 5}),
				decor.OnComplete(decor.AverageETA(decor.ET_STYLE_GO, decor.WC{W: 8}), " done"),
			),
		)
		if len(sp.Tasks) == 0 {
			bar.SetTotal(0, true)
		}
		pr.bars[id] = bar
	}
	return pr
}

// Handler returns the event handler that advances the bars.
func (pr *Progress) Handler() EventHandler {
	return func(e Event) {
		pr.mu.Lock()
		bar := pr.bars[e.Stage]
		switch e.Type {
		case EventStarted:
			pr.inflight[e.Stage]++
		case EventDone, EventFailed:
			pr.inflight[e.Stage]--
		}
		pr.mu.Unlock()
		if bar == nil {
			return
		}
		switch e.Type {
		case EventDone, EventSkipped:
			bar.Increment()
		case EventFailed:
			fmt.Fprintf(pr.p, "failed %s/%s: %s\n", e.Stage, e.Key, e.Err)
		}
	}
}

// Writer returns a writer whose lines are printed above the bars.
func (pr *Progress) Writer() io.Writer { return pr.p }

// Wait stops the display (aborting unfinished bars) and waits for the last
// frame to be drawn.
func (pr *Progress) Wait() {
	pr.mu.Lock()
	for _, b := range pr.bars {
		if !b.Completed() {
			b.Abort(false)
		}
	}
	pr.mu.Unlock()
	pr.p.Wait()
}
