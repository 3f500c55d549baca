package stages

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/invopop/jsonschema"

	"github.com/marlin-llm/marlin/internal/assets"
	"github.com/marlin-llm/marlin/pipeline"
	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/tensor"
)

func quantRegistry(t *testing.T) *pipeline.Registry {
	t.Helper()
	reg := pipeline.NewRegistry()
	for _, k := range []pipeline.Kind{SyntheticKind(), QuantizeKind()} {
		if err := reg.Register(k); err != nil {
			t.Fatal(err)
		}
	}
	return reg
}

const quantJob = `version: 1
stages:
  - id: src
    kind: synthetic
    with:
      dtype: BF16
      layers: 2
      tensors:
        - {name: "model.layers.{layer}.mlp.up_proj.weight", shape: [64, 256]}
        - {name: "model.layers.{layer}.mlp.gate.weight", shape: [8, 256]}
        - {name: "model.layers.{layer}.input_layernorm.weight", shape: [256]}
        - {name: "model.embed_tokens.weight", shape: [32, 256]}
  - id: quant
    kind: quantize
    needs: [src]
    with:
      default: {format: mxfp4, method: rtn}
      rules:
        - {match: "*.mlp.gate.weight", format: bf16}
        - {match: "model.layers.1.*", format: int4, group_size: 64, scale_search: true}
        - {match: "*.embed_tokens.weight", format: skip}
`

func TestQuantizeStageRunsThroughRunner(t *testing.T) {
	reg := quantRegistry(t)
	dir := t.TempDir()
	_, plan := mustPlanYAML(t, reg, dir, quantJob)
	st := mustRunPlan(t, plan, filepath.Join(dir, "run"), 2)
	outs := map[string]*pipeline.Output{}
	for _, e := range st.Entries() {
		if e.Stage != "quant" {
			continue
		}
		o, err := st.Get(e)
		if err != nil {
			t.Fatal(err)
		}
		outs[e.Key] = o
	}
	if len(outs) != 7 {
		t.Fatalf("%d quantize outputs, want 7", len(outs))
	}
	check := func(key, format string, groupSize int) {
		t.Helper()
		o := outs[key]
		p, err := quant.FromTensors(key, o.Tensors)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		if p.Format.Name != format || p.Format.GroupSize != groupSize {
			t.Errorf("%s: format %s g%d, want %s g%d", key, p.Format.Name, p.Format.GroupSize, format, groupSize)
		}
		main := o.Tensors[0]
		if main.Meta[quant.MetaMethod] != "rtn" || main.Meta[quant.MetaShape] == "" {
			t.Errorf("%s: meta %v", key, main.Meta)
		}
		cos, err := strconv.ParseFloat(o.Meta["report.cosine"], 64)
		if err != nil || cos < 0.99 {
			t.Errorf("%s: report cosine %q", key, o.Meta["report.cosine"])
		}
		var reps []quant.Report
		if err := json.Unmarshal([]byte(o.Meta["quant.reports"]), &reps); err != nil || len(reps) != 1 || reps[0].Name != key {
			t.Errorf("%s: reports %q (%v)", key, o.Meta["quant.reports"], err)
		}
	}
	check("model.layers.0.mlp.up_proj.weight", "mxfp4", 32)
	check("model.layers.1.mlp.up_proj.weight", "int4", 64)
	check("model.layers.0.mlp.gate.weight", "bf16", 0)
	check("model.layers.1.mlp.gate.weight", "bf16", 0) // first match wins
	for _, key := range []string{"model.embed_tokens.weight", "model.layers.0.input_layernorm.weight"} {
		o := outs[key]
		if len(o.Tensors) != 1 || o.Tensors[0].DType != tensor.BF16 || o.Tensors[0].Meta[quant.MetaFormat] != "" || o.Meta["quant.reports"] != "" {
			t.Errorf("%s should pass through unchanged: %+v", key, o.Tensors[0])
		}
	}
	if s := outs["model.layers.1.mlp.up_proj.weight"].Tensors[0].Meta["quant.scale_search"]; s != "true" {
		t.Errorf("scale search not recorded: %q", s)
	}
}

func TestQuantizeConfigErrors(t *testing.T) {
	reg := quantRegistry(t)
	cases := []struct {
		with, want string
	}{
		{`{default: {format: fp5}}`, `unknown format "fp5" (known: bf16, f16, fp4,`},
		{`{default: {format: mxfp4, group_size: 64}}`, "block size is fixed at 32"},
		{`{default: {format: int4}, rules: [{match: "[", format: bf16}]}`, "rules[0].match"},
		{`{default: {format: int4}, rules: [{match: "*.w", format: int9}]}`, `rules[0].format`},
		{`{default: {format: int4, method: awq}}`, "unknown method"},
		{`{default: {format: int4, nonfinite: maybe}}`, "nonfinite"},
		{`{default: {format: int4, clip_ratios: [1.5]}}`, "clip_ratios"},
		{`{default: {format: mxfp4, scale: f16}}`, "scale"},
		{`{default: {format: int4}, rules: [{format: bf16}]}`, "match"},
		{`{default: {format: int4, bogus: 1}}`, "bogus"},
	}
	for _, c := range cases {
		doc := "version: 1\nstages:\n  - {id: src, kind: synthetic, with: {tensors: [{name: a, shape: [4, 32]}]}}\n  - {id: q, kind: quantize, needs: [src], with: " + c.with + "}\n"
		_, err := pipeline.LoadBytes("job.yaml", []byte(doc), reg, pipeline.LoadOptions{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to mention %q", c.with, err, c.want)
		} else if !strings.Contains(err.Error(), "job.yaml:") {
			t.Errorf("%s: error lacks file:line: %v", c.with, err)
		}
	}
}

func TestQuantizeRuleResolution(t *testing.T) {
	gs := 64
	yes := true
	c := QuantizeConfig{
		Default: QuantSpec{Format: "int4", Method: "rtn", ScaleSearch: &yes},
		Rules: []QuantRule{
			{Match: "*.gate.weight", QuantSpec: QuantSpec{Format: "bf16"}},
			{Match: "*.down_proj.weight", QuantSpec: QuantSpec{GroupSize: &gs}},
			{Match: "*.down_proj.*", QuantSpec: QuantSpec{Format: "skip"}},
		},
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	r, _ := c.Resolve("l.0.mlp.down_proj.weight")
	if r.Rule != 1 || r.Format.Name != "int4" || r.Format.GroupSize != 64 || !r.ScaleSearch {
		t.Errorf("down_proj: %+v", r)
	}
	r, _ = c.Resolve("l.0.mlp.down_proj.bias")
	if !r.Skip || r.Rule != 2 {
		t.Errorf("bias: %+v", r)
	}
	r, _ = c.Resolve("l.0.mlp.up_proj.weight")
	if r.Rule != -1 || r.Format.Name != "int4" || r.Format.GroupSize != 128 {
		t.Errorf("default: %+v", r)
	}
}

func TestQuantizeNonFiniteNamesTensor(t *testing.T) {
	s := &quantizeStage{cfg: QuantizeConfig{Default: QuantSpec{Format: "mxfp4"}}}
	v := make([]float32, 4*64)
	v[3*64+5] = float32(math.Inf(-1))
	w, err := tensor.FromFloat32("model.layers.3.self_attn.o_proj.weight", tensor.F32, []int{4, 64}, v)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = s.QuantizeTensor(context.Background(), w)
	if err == nil || !strings.Contains(err.Error(), "model.layers.3.self_attn.o_proj.weight") || !strings.Contains(err.Error(), "[3, 5]") {
		t.Fatalf("error %v", err)
	}
	s.cfg.Rules = []QuantRule{{Match: "*.o_proj.weight", QuantSpec: QuantSpec{NonFinite: "pass"}}}
	if _, rep, err := s.QuantizeTensor(context.Background(), w); err != nil || rep.NonFinite != 1 {
		t.Fatalf("pass-through: %v %+v", err, rep)
	}
}

// TestQuantizeSchemaInlinesRuleSettings: a rule's settings (embedded
// QuantSpec) must appear as its own properties in the generated schema.
func TestQuantizeSchemaInlinesRuleSettings(t *testing.T) {
	raw, err := pipeline.GenerateSchema(quantRegistry(t))
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Defs map[string]struct {
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	rule, ok := s.Defs["stages.QuantRule"]
	if !ok {
		t.Fatalf("no stages.QuantRule definition in schema")
	}
	for _, p := range []string{"match", "format", "group_size", "method", "scale_search", "actorder", "nonfinite"} {
		if _, ok := rule.Properties[p]; !ok {
			t.Errorf("rule schema lacks %q: %v", p, rule.Properties)
		}
	}
}

// TestQuantizeQwen3NanoThroughLoad runs load → quantize on qwen3-nano
// (MXFP4 default, routers/norms/embeddings as the rules say) and checks
// every quantized weight's report cosine (>= 0.99) and its round trip.
func TestQuantizeQwen3NanoThroughLoad(t *testing.T) {
	dir := assets.Model(t, "qwen3-nano")
	reg := pipeline.NewRegistry()
	for _, k := range []pipeline.Kind{LoadKind(), QuantizeKind()} {
		if err := reg.Register(k); err != nil {
			t.Fatal(err)
		}
	}
	doc := fmt.Sprintf(`version: 1
stages:
  - {id: load, kind: load, with: {path: %q}}
  - id: quant
    kind: quantize
    needs: [load]
    with:
      default: {format: mxfp4}
      rules:
        - {match: "model.embed_tokens.weight", format: bf16}
        - {match: "*.mlp.down_proj.weight", format: int4, group_size: 128}
      report: quant-report.json
`, dir)
	wd := t.TempDir()
	_, plan := mustPlanYAML(t, reg, wd, doc)
	st := mustRunPlan(t, plan, filepath.Join(wd, "run"), 2)
	var n int
	var sum float64
	formats := map[string]int{}
	for _, e := range st.Entries() {
		if e.Stage != "quant" {
			continue
		}
		o, err := st.Get(e)
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range o.Tensors {
			if !quant.IsPacked(tt) {
				continue
			}
			p, err := quant.FromTensors(tt.Name, o.Tensors)
			if err != nil {
				t.Fatalf("%s: %v", tt.Name, err)
			}
			formats[p.Format.Name]++
		}
		if o.Meta["quant.reports"] == "" {
			continue
		}
		var reps []quant.Report
		if err := json.Unmarshal([]byte(o.Meta["quant.reports"]), &reps); err != nil {
			t.Fatal(err)
		}
		for _, r := range reps {
			if r.Format != "bf16" && r.Cosine < 0.99 {
				t.Errorf("%s: cosine %.5f", r.Name, r.Cosine)
			}
			if strings.HasPrefix(r.Name, "model.layers.") {
				n++
				sum += r.Cosine
			}
		}
	}
	// qwen3-nano: 4 layers × (q,k,v,o,gate,up) MXFP4 + 4 down_proj INT4 + the BF16 embedding
	if formats["mxfp4"] != 24 || formats["int4"] != 4 || formats["bf16"] != 1 || n != 28 {
		t.Errorf("formats %v, %d layer weights", formats, n)
	}
	t.Logf("qwen3-nano through load+quantize: average cosine of %d layer weights %.6f", n, sum/float64(n))
	var rep QuantizeReport
	assets.ReadJSON(t, filepath.Join(st.OutDir(), "quant-report.json"), &rep)
	// 24 MXFP4 + 4 INT4 layer weights and the BF16 embedding, all [*, 256] or [256, 768]
	if rep.Summary.Tensors != 29 || len(rep.Tensors) != 29 || rep.Summary.BitsPerWeight <= 4.125 || rep.Summary.BitsPerWeight >= 16 {
		t.Errorf("summary %+v", rep.Summary)
	}
	t.Logf("summary: %d tensors, %.4f bits/weight, avg cosine %.6f, worst %s %.6f", rep.Summary.Tensors, rep.Summary.BitsPerWeight, rep.Summary.AvgCosine, rep.Summary.MinCosineTensor, rep.Summary.MinCosine)
}

// FuzzQuantizeConfig: arbitrary rule settings validate or fail cleanly, and
// a valid config resolves any tensor name without panicking.
func FuzzQuantizeConfig(f *testing.F) {
	f.Add("mxfp4", "*.gate.weight", "bf16", 64, "f32", "rtn", "pass", "model.layers.0.mlp.gate.weight")
	f.Add("int4", "[", "skip", -1, "e8m0", "gptq", "maybe", "x")
	f.Fuzz(func(t *testing.T, def, match, format string, gs int, scale, method, nonfinite, name string) {
		c := QuantizeConfig{
			Default: QuantSpec{Format: def, Method: method},
			Rules:   []QuantRule{{Match: match, QuantSpec: QuantSpec{Format: format, GroupSize: &gs, Scale: scale, NonFinite: nonfinite}}},
		}
		if err := c.Validate(); err != nil {
			return
		}
		if _, err := c.Resolve(name); err != nil {
			t.Fatalf("valid config failed to resolve %q: %v", name, err)
		}
	})
}

// TestQuantizeFormatDocListsEveryFormat: the `format` field's description
// and the `method` enum (schema and README) name every registered format
// and method.
func TestQuantizeFormatDocListsEveryFormat(t *testing.T) {
	r := &jsonschema.Reflector{FieldNameTag: "yaml", ExpandedStruct: true}
	for _, v := range []any{&QuantSpec{}, &QuantRule{}} {
		s := r.Reflect(v)
		f, ok := s.Properties.Get("format")
		if !ok {
			t.Fatalf("%T: no format property", v)
		}
		for _, n := range quant.Names() {
			if !strings.Contains(f.Description, " "+n+" ") && !strings.Contains(f.Description, "("+n+" ") && !strings.Contains(f.Description, " "+n+")") {
				t.Errorf("%T: format %q missing from the description %q", v, n, f.Description)
			}
		}
		m, ok := s.Properties.Get("method")
		if !ok {
			t.Fatalf("%T: no method property", v)
		}
		if want := quant.MethodNames(); fmt.Sprint(m.Enum) != fmt.Sprint(want) {
			t.Errorf("%T: method enum %v, want %v", v, m.Enum, want)
		}
	}
}

// TestQuantizeUnmatchedRuleWarns: at plan time, every rule whose glob
// matches no tensor is logged as a warning naming its index and glob;
// rules that match (even when an earlier rule wins) are not.
func TestQuantizeUnmatchedRuleWarns(t *testing.T) {
	reg, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		rules     string
		unmatched []int
	}{
		{`[{match: "b.*.w", format: bf16}]`, nil},
		{`[{match: "b.*.weight", format: bf16}]`, []int{0}},
		{`[{match: "emb", format: bf16}, {match: "b.1.w*", format: skip}, {match: "model.*", format: skip}, {match: "b.1.w", format: int4}]`, []int{2}},
	}
	for _, c := range cases {
		doc := `version: 1
stages:
  - {id: g, kind: synthetic, with: {layers: 2, tensors: [{name: "b.{layer}.w", shape: [8, 32]}, {name: emb, shape: [4, 32]}]}}
  - {id: q, kind: quantize, needs: [g], with: {default: {format: int4}, rules: ` + c.rules + `}}
`
		job, err := pipeline.LoadBytes("j.yaml", []byte(doc), reg, pipeline.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if _, err := pipeline.PlanJob(context.Background(), job, slog.New(slog.NewTextHandler(&buf, nil))); err != nil {
			t.Fatal(err)
		}
		var got []int
		for _, line := range strings.Split(buf.String(), "\n") {
			if !strings.Contains(line, "level=WARN") || !strings.Contains(line, "matches no tensor") {
				continue
			}
			var idx int
			if _, err := fmt.Sscanf(line[strings.Index(line, " rule=")+1:], "rule=%d", &idx); err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			got = append(got, idx)
		}
		if fmt.Sprint(got) != fmt.Sprint(c.unmatched) {
			t.Errorf("rules %s: warned about %v, want %v\n%s", c.rules, got, c.unmatched, buf.String())
		}
		for _, i := range c.unmatched {
			if !strings.Contains(buf.String(), fmt.Sprintf("rules[%d] matches no tensor", i)) {
				t.Errorf("rules %s: warning does not name rules[%d]:\n%s", c.rules, i, buf.String())
			}
		}
	}
}

// Stage-to-stage Meta (meta.go).

func TestCalibMetaRoundTrip(t *testing.T) {
	for _, c := range []calibMeta{
		{Inputs: []string{"load"}, Model: "/m", Sequential: true, TrueSequential: true, Precision: "f32", MinExpertTokens: 8, Samples: 128, SeqLen: 2048, TextBytes: 1 << 20},
		{Inputs: []string{"load"}, Model: "/m", Sequential: true, Precision: "f32"},
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

// TestGGMLRowFallback: a GGML format whose blocks do not divide a tensor's
// rows takes llama-quantize's fallback type, and the tensor says so.
func TestGGMLRowFallback(t *testing.T) {
	for _, tc := range []struct {
		format   string
		cols     int
		want     string
		fallback string
	}{
		{"q4_k", 256, "q4_k", ""},
		{"q4_k", 192, "q5_0", "q4_k"},
		{"q6_k", 96, "q8_0", "q6_k"},
	} {
		vals := make([]float32, 4*tc.cols)
		for i := range vals {
			vals[i] = float32(math.Sin(float64(i)))
		}
		w := f32Tensor(vals...)
		w.Name, w.Shape = "model.layers.0.mlp.down_proj.weight", []int{4, tc.cols}
		rq, err := resolve(QuantSpec{Format: tc.format}, QuantSpec{}, -1)
		if err != nil {
			t.Fatal(err)
		}
		ts, _, err := (&quantizeStage{}).quantizeResolved(context.Background(), w, nil, rq)
		if err != nil {
			t.Fatalf("%s/%d: %v", tc.format, tc.cols, err)
		}
		if got := ts[0].Meta[quant.MetaFormat]; !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s with rows of %d: format %q, want %s", tc.format, tc.cols, got, tc.want)
		}
		if got := ts[0].Meta[metaFormatFallback]; got != tc.fallback {
			t.Errorf("%s with rows of %d: fallback meta %q, want %q", tc.format, tc.cols, got, tc.fallback)
		}
	}
}
