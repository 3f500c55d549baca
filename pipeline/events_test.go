package pipeline

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func TestEventsAndProgress(t *testing.T) {
	cnt := &counter{}
	plan := loadPlan(t, testRegistry(t, dagKinds(cnt)...), dagDoc)
	var js, plain, bars bytes.Buffer
	prog := NewProgress(&bars, plan)
	_, err := runPlan(t, plan, t.TempDir(), Runner{Events: MultiHandler(JSONLines(&js), PlainLines(&plain), prog.Handler())})
	prog.Wait()
	if err != nil {
		t.Fatal(err)
	}
	types := map[EventType]int{}
	for _, line := range strings.Split(strings.TrimSpace(js.String()), "\n") {
		var e Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		types[e.Type]++
	}
	if types[EventQueued] != 21 || types[EventStarted] != 21 || types[EventDone] != 21 {
		t.Errorf("events %v", types)
	}
	if n := strings.Count(plain.String(), "\n"); n != 63 {
		t.Errorf("%d plain lines", n)
	}
	for _, sp := range plan.Stages {
		if !strings.Contains(bars.String(), sp.ID) {
			t.Errorf("progress output lacks stage %s", sp.ID)
		}
	}
	var dot bytes.Buffer
	plan.WriteDot(&dot)
	if !strings.Contains(dot.String(), fmt.Sprintf("%q -> %q [label=\"4\"]", "ad", "all")) {
		t.Errorf("dot:\n%s", dot.String())
	}
}
