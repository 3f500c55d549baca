package pipeline

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestSummaryLines feeds synthetic events (with their own times, no
// ticker) and checks the per-stage lines: one when a stage starts,
// progress lines no closer than the interval, failures, and one when it
// ends with its counts.
func TestSummaryLines(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	plan := &Plan{Stages: []*StagePlan{{ID: "load", Tasks: make([]*Task, 3)}, {ID: "quant", Tasks: make([]*Task, 10)}}}
	type ev struct {
		at      time.Duration
		typ     EventType
		stage   string
		key     string
		bytes   int64
		errText string
	}
	var quant []ev
	for i := range 10 {
		k := fmt.Sprint("t", i)
		at := 10*time.Second + time.Duration(i)*time.Second
		quant = append(quant, ev{at, EventStarted, "quant", k, 0, ""}, ev{at + 900*time.Millisecond, EventDone, "quant", k, 100, ""})
	}
	cases := []struct {
		name     string
		interval time.Duration
		events   []ev
		want     []string // substrings, one per line, in order
	}{
		{"all skipped", 5 * time.Second, []ev{
			{0, EventSkipped, "load", "a", 0, ""}, {0, EventSkipped, "load", "b", 0, ""}, {0, EventSkipped, "load", "c", 0, ""},
		}, []string{"load:  done: 3 tasks skipped (checkpointed)"}},
		{"run with a skip", 5 * time.Second, []ev{
			{0, EventSkipped, "load", "a", 0, ""}, {0, EventQueued, "load", "b", 0, ""}, {time.Second, EventStarted, "load", "b", 0, ""},
			{time.Second, EventStarted, "load", "c", 0, ""}, {2 * time.Second, EventDone, "load", "b", 1024, ""}, {3 * time.Second, EventDone, "load", "c", 1024, ""},
		}, []string{"03:04:06 load:  started: 2 tasks (1 skipped: checkpointed)", "03:04:08 load:  done: 2 run, 1 skipped, 2KiB written in 3.0s"}},
		{"progress every 5s at most", 5 * time.Second, quant, []string{
			"03:04:15 quant: started: 10 tasks", "03:04:20 quant: 5/10 tasks done, 1 running, 5s", "03:04:24 quant: done: 10 run",
		}},
		{"no interval", 0, quant, []string{"quant: started: 10 tasks", "quant: done: 10 run, 1000B written in 9.9s"}},
		{"failure", 5 * time.Second, []ev{
			{0, EventStarted, "load", "a", 0, ""}, {0, EventStarted, "load", "b", 0, ""}, {time.Second, EventFailed, "load", "a", 0, "boom"},
			{time.Second, EventDone, "load", "b", 8, ""}, {time.Second, EventSkipped, "load", "c", 0, ""},
		}, []string{"load:  started: 3 tasks", "load:  FAILED a: boom", "load:  done: 1 run, 1 skipped, 1 FAILED"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			s := newSummary(&buf, plan, c.interval)
			h := s.Handler()
			for _, e := range c.events {
				h(Event{Type: e.typ, Time: t0.Add(e.at), Stage: e.stage, Key: e.key, Bytes: e.bytes, Err: e.errText})
			}
			lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
			if len(lines) != len(c.want) {
				t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(c.want), buf.String())
			}
			for i, w := range c.want {
				if !strings.Contains(lines[i], w) {
					t.Errorf("line %d = %q, want it to contain %q", i, lines[i], w)
				}
			}
		})
	}
}

// TestSummaryTicker: a stage whose single task runs long gets progress
// lines from the ticker (no events arrive meanwhile).
func TestSummaryTicker(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	plan := &Plan{Stages: []*StagePlan{{ID: "calib", Tasks: make([]*Task, 1)}}}
	var buf bytes.Buffer
	s := newSummary(&buf, plan, 5*time.Second)
	s.Handler()(Event{Type: EventStarted, Time: t0, Stage: "calib", Key: "all"})
	s.Handler()(Event{Type: EventProgress, Time: t0.Add(time.Second), Stage: "calib", Key: "all", Done: 3, Total: 8})
	for _, d := range []time.Duration{2, 4, 6, 8, 10, 12} {
		s.tick(t0.Add(d * time.Second))
	}
	got := buf.String()
	if n := strings.Count(got, "0/1 tasks done, 1 running (all: 3/8)"); n != 2 {
		t.Errorf("want 2 ticker lines (at 6s and 12s), got %d:\n%s", n, got)
	}
}
