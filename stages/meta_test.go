package stages

import (
	"reflect"
	"slices"
	"testing"

	"github.com/marlin-llm/marlin/pipeline"
	"github.com/marlin-llm/marlin/quant"
)

func TestCalibMetaRoundTrip(t *testing.T) {
	for _, c := range []calibMeta{
		{Inputs: []string{"load"}, Model: "/m", Sequential: true, Precision: "f32", MinExpertTokens: 8, Samples: 128, SeqLen: 2048, TextBytes: 1 << 20},
		{Inputs: []string{"rot", "load"}, Model: "m", Precision: "f64", AllExperts: true},
	} {
		m := c.encode()
		if !isInternal(m) {
			t.Errorf("%+v: encoded Meta is not internal", c)
		}
		got, ok := decodeCalibMeta(m)
		if !ok || !reflect.DeepEqual(got, c) {
			t.Errorf("decode(encode(%+v)) = %+v, %v", c, got, ok)
		}
	}
	if _, ok := decodeCalibMeta(map[string]string{MetaInternal: "true"}); ok {
		t.Error("a Meta without calib.inputs decoded as a calibration task")
	}
}

func TestTaskMetaHelpers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		task    pipeline.Task
		tensors []string
		bytes   int64
		shape   []int
		ok      bool
	}{
		{"single", pipeline.Task{Key: "w", Meta: map[string]string{MetaShape: quant.FormatShape([]int{768, 256}), MetaBytes: "393216"}}, []string{"w"}, 393216, []int{768, 256}, true},
		{"scalar", pipeline.Task{Key: "s", Meta: map[string]string{MetaShape: quant.FormatShape(nil), MetaBytes: "4"}}, []string{"s"}, 4, []int{}, true},
		{"group", pipeline.Task{Key: "g", Meta: map[string]string{MetaTensors: "a,b", MetaBytes: "12"}}, []string{"a", "b"}, 12, nil, false},
		{"malformed", pipeline.Task{Key: "m", Meta: map[string]string{MetaShape: "[1,2]", MetaBytes: "x"}}, []string{"m"}, 0, nil, false},
	} {
		if got := taskTensors(&tc.task); !slices.Equal(got, tc.tensors) {
			t.Errorf("%s: taskTensors = %v, want %v", tc.name, got, tc.tensors)
		}
		if got := taskBytes(tc.task.Meta); got != tc.bytes {
			t.Errorf("%s: taskBytes = %d, want %d", tc.name, got, tc.bytes)
		}
		if got, ok := taskShape(tc.task.Meta); ok != tc.ok || !slices.Equal(got, tc.shape) {
			t.Errorf("%s: taskShape = %v, %v; want %v, %v", tc.name, got, ok, tc.shape, tc.ok)
		}
	}
}

func TestReportsMetaRoundTrip(t *testing.T) {
	reps := []quant.Report{{Name: "a", Format: "mxfp4"}, {Name: "b", Format: "int4"}}
	out := &pipeline.Output{Meta: map[string]string{}}
	if err := setReports(out, reps); err != nil {
		t.Fatal(err)
	}
	got, err := reportsOf(out.Meta)
	if err != nil || !reflect.DeepEqual(got, reps) {
		t.Errorf("reportsOf(setReports(%v)) = %v, %v", reps, got, err)
	}
	if _, err := reportsOf(map[string]string{metaQuantReports: "{"}); err == nil {
		t.Error("reportsOf accepted bad JSON")
	}
}
