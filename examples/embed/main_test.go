package main

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

func TestEmbedExample(t *testing.T) {
	wd := t.TempDir()
	st, err := run(context.Background(), wd, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if st.Executed != 2+2+4+1 {
		t.Errorf("first run: %+v", st)
	}
	st, err = run(context.Background(), wd, io.Discard)
	if err != nil || st.Executed != 0 || st.Skipped != 9 {
		t.Errorf("second run: %+v %v", st, err)
	}
	// the scaled tensor's std is 10× the source's
	b, err := os.ReadFile(filepath.Join(wd, "out", "stats.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep map[string]map[string]string
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	src, _ := strconv.ParseFloat(rep["gen/layer.0.w"]["layer.0.w.std"], 64)
	dst, _ := strconv.ParseFloat(rep["scaled/layer.0.w"]["layer.0.w.std"], 64)
	if src == 0 || dst/src < 9.999 || dst/src > 10.001 {
		t.Errorf("std %v → %v, want ×10", src, dst)
	}
}
