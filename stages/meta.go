package stages

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/marlin-llm/marlin/pipeline"
	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/quant/calib"
)

// This file is the one list of the Meta keys that stages pass to each
// other, with the helpers that read and write them. Keys that describe a
// quantized tensor itself (quant.format, quant.shape, ...) and the rotation
// keys belong to quant and quant/hadamard; report's own keys to report.
//
// Task Meta (pipeline.Task.Meta) is planner-visible and part of a task's
// identity, so a change to a key or to a value's format re-runs every task
// that carries it. Output Meta (pipeline.Output.Meta) is stored with a
// finished task's blob.

// Task Meta keys of tensor tasks. The load stage (and synthetic) set them;
// rotate and quantize copy them from their upstream task. Single-tensor
// tasks carry dtype, shape and bytes of their tensor; group tasks carry
// "tensors" (comma-separated names) and their total bytes. GGUF tensors of
// block-quantized types also carry "ggml_type".
const (
	MetaDType = "dtype"
	// MetaShape is the tensor's shape as quant.FormatShape writes it
	// ("768,256", "" for a scalar): the key and the format of the packed
	// tensors' quant.shape, so that one parser (quant.ParseShape) reads both.
	MetaShape    = quant.MetaShape
	MetaBytes    = "bytes"
	MetaTensors  = "tensors"
	MetaGGMLType = "ggml_type"
	MetaModel    = "model_type"
	// MetaInternal marks tasks that carry no model tensors (a calibration
	// run, layer activations, a report): tensor-per-task stages skip them.
	MetaInternal = "stage.internal"
	// MetaHasHessian marks an upstream task whose output carries a Hessian
	// for its weight ("true"), or that has none by design ("none": not a
	// Linear, so RTN).
	MetaHasHessian = "calib.hessian"
	// metaLayer is the decoder layer of a layer-mode task (layerwise.go).
	metaLayer = "layer.index"
	// metaRotationRole and metaRotationSpec describe a rotate task: the
	// tensor's rotate.Role and the rotation ("hadamard:block=N:seed=S").
	metaRotationRole = "rotation.role"
	metaRotationSpec = "rotation.spec"
)

// Task Meta keys of the calibration task, read by the quantize stage's
// planner (calibMeta encodes and decodes them).
const (
	metaCalibInputs     = "calib.inputs"     // upstream stage ids holding the weights
	metaCalibModel      = "calib.model"      // model dir (config.json)
	metaCalibSequential = "calib.sequential" // "true" or "false"
	metaCalibTrueSeq    = "calib.true_sequential"
	metaCalibPrecision  = "calib.precision"
	metaCalibAllExperts = "calib.all_experts"
	metaCalibMinTokens  = "calib.min_expert_tokens"
	metaCalibShrink     = "calib.shrink_experts"
	metaCalibSamples    = "calib.samples"
	metaCalibSeqLen     = "calib.seq_len"
	metaCalibTextBytes  = "calib.text_bytes"
)

// Output Meta keys.
const (
	// metaQuantReports is the JSON list of a task's quant.Report (quantize
	// tasks), read by the quantize report, validate and the run report.
	metaQuantReports = "quant.reports"
	// metaExperts is the JSON list of a layer's routed-expert coverage
	// (calib.ExpertCoverage) in a layer task's output Meta.
	metaExperts = "calib.experts"
	// metaRouterCounts is the JSON of a layer's router token counts.
	metaRouterCounts = "calib.router_counts"
	// metaCalibReport is the calibration task's JSON summary.
	metaCalibReport = "calib.report"
)

// Tensor Meta keys set by stages, beside quant's and hadamard's.
const (
	// metaFormatFallback names the GGML format a tensor was asked for when
	// its rows did not fill that format's blocks (quant.RowFallback).
	metaFormatFallback = "quant.format_fallback"
	// metaCalibFallback records that a Hessian method fell back ("rtn").
	metaCalibFallback = "calib.fallback"
	// metaSourceDType is the dtype of the tensor a quantized one came from.
	metaSourceDType = "quant.source_dtype"
	// metaScaleSearch marks RTN with a clipping-ratio search.
	metaScaleSearch = "quant.scale_search"
	// metaUntiedFrom names the tensor an untied copy (lm_head) came from.
	metaUntiedFrom = "rotation.untied_from"
)

// isInternal reports whether a task carries no model tensors.
func isInternal(m map[string]string) bool { return m[MetaInternal] == "true" }

// groupNames returns the tensor names of a group task (MetaTensors), or nil
// for a single-tensor task.
func groupNames(m map[string]string) []string {
	if l := m[MetaTensors]; l != "" {
		return strings.Split(l, ",")
	}
	return nil
}

// taskTensors returns the names of the tensors a task's output holds: its
// group's names, or its key.
func taskTensors(t *pipeline.Task) []string {
	if names := groupNames(t.Meta); names != nil {
		return names
	}
	return []string{t.Key}
}

// taskBytes returns a task's MetaBytes; 0 when it is missing or malformed.
func taskBytes(m map[string]string) int64 {
	b, err := strconv.ParseInt(m[MetaBytes], 10, 64)
	if err != nil {
		return 0
	}
	return b
}

// taskShape returns a single-tensor task's MetaShape; ok is false when it
// is missing or malformed.
func taskShape(m map[string]string) (shape []int, ok bool) {
	s, ok := m[MetaShape]
	if !ok {
		return nil, false
	}
	shape, err := quant.ParseShape(s)
	return shape, err == nil
}

// calibMeta is the calibration task's Meta, typed.
type calibMeta struct {
	Inputs          []string // upstream stage ids holding the weights
	Model           string   // model dir (config.json)
	Sequential      bool
	TrueSequential  bool // one calibration pass per projection group
	Precision       string
	AllExperts      bool
	MinExpertTokens int
	ShrinkExperts   bool
	Samples         int
	SeqLen          int
	TextBytes       int64
}

// encode renders c as task Meta (internal: the task holds no model
// tensors).
func (c calibMeta) encode() map[string]string {
	return map[string]string{
		MetaInternal:        "true",
		metaCalibInputs:     strings.Join(c.Inputs, ","),
		metaCalibModel:      c.Model,
		metaCalibSequential: strconv.FormatBool(c.Sequential),
		metaCalibTrueSeq:    strconv.FormatBool(c.TrueSequential),
		metaCalibPrecision:  c.Precision,
		metaCalibAllExperts: strconv.FormatBool(c.AllExperts),
		metaCalibMinTokens:  strconv.Itoa(c.MinExpertTokens),
		metaCalibShrink:     strconv.FormatBool(c.ShrinkExperts),
		metaCalibSamples:    strconv.Itoa(c.Samples),
		metaCalibSeqLen:     strconv.Itoa(c.SeqLen),
		metaCalibTextBytes:  strconv.FormatInt(c.TextBytes, 10),
	}
}

// decodeCalibMeta reads a calibration task's Meta; ok is false when m is
// not one. Sequential is true unless it says "false"; malformed numbers
// read as 0.
func decodeCalibMeta(m map[string]string) (c calibMeta, ok bool) {
	if m[metaCalibInputs] == "" {
		return calibMeta{}, false
	}
	c = calibMeta{
		Inputs:     strings.Split(m[metaCalibInputs], ","),
		Model:      m[metaCalibModel],
		Sequential: m[metaCalibSequential] != "false",
		Precision:  m[metaCalibPrecision],
		AllExperts: m[metaCalibAllExperts] == "true",
	}
	c.TrueSequential = c.Sequential && m[metaCalibTrueSeq] != "false"
	c.MinExpertTokens, _ = strconv.Atoi(m[metaCalibMinTokens])
	c.ShrinkExperts = m[metaCalibShrink] == "true"
	c.Samples, _ = strconv.Atoi(m[metaCalibSamples])
	c.SeqLen, _ = strconv.Atoi(m[metaCalibSeqLen])
	c.TextBytes, _ = strconv.ParseInt(m[metaCalibTextBytes], 10, 64)
	return c, true
}

// setReports records a task's tensor reports in its output Meta
// (metaQuantReports, and a single report's fields too).
func setReports(out *pipeline.Output, reports []quant.Report) error {
	if len(reports) == 1 {
		for k, v := range reports[0].Meta() {
			out.Meta[k] = v
		}
	}
	if len(reports) == 0 {
		return nil
	}
	b, err := json.Marshal(reports)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	out.Meta[metaQuantReports] = string(b)
	return nil
}

// reportsOf returns the tensor reports in an output's Meta (nil when it
// has none); the error is the JSON decoder's.
func reportsOf(meta map[string]string) ([]quant.Report, error) {
	js := meta[metaQuantReports]
	if js == "" {
		return nil, nil
	}
	var reps []quant.Report
	if err := json.Unmarshal([]byte(js), &reps); err != nil {
		return nil, err
	}
	return reps, nil
}

// expertsOf returns the routed-expert coverage in a layer task's output
// Meta (nil when it has none); the error is the JSON decoder's.
func expertsOf(meta map[string]string) ([]calib.ExpertCoverage, error) {
	js := meta[metaExperts]
	if js == "" || js == "null" {
		return nil, nil
	}
	var cov []calib.ExpertCoverage
	if err := json.Unmarshal([]byte(js), &cov); err != nil {
		return nil, err
	}
	return cov, nil
}
