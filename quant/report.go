package quant

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"github.com/marlin-llm/marlin/tensor"
)

// Report measures how well a Packed tensor reproduces the original weights.
type Report struct {
	Name   string
	Format string
	Rows   int
	Cols   int
	// MSE is the mean squared error, MaxAbsErr the largest |w − ŵ|.
	MSE       float64
	MaxAbsErr float64
	// Cosine is the cosine similarity of the flattened tensors (1 when both
	// are zero).
	Cosine float64
	// SQNRdB is 10·log10(Σw² / Σ(w−ŵ)²) (+Inf when exact).
	SQNRdB float64
	// BitsPerWeight is the storage cost including scales (Format.BitsPerWeight).
	BitsPerWeight float64
	// NonFinite counts NaN/Inf originals (excluded from the metrics).
	NonFinite int
}

// Measure compares the original row-major weights w with p's dequantized
// values, row by row (no full dequantized copy). Sums run in float64.
func Measure(name string, w []float32, p *Packed) (Report, error) {
	if len(w) != p.Rows*p.Cols {
		return Report{}, fmt.Errorf("quant: report %q: %d weights for [%d, %d]", name, len(w), p.Rows, p.Cols)
	}
	return measure(name, p, func(r int, dst []float32) error {
		copy(dst, w[r*p.Cols:(r+1)*p.Cols])
		return nil
	})
}

// MeasureTensor is Measure for the original tensor (BF16/F16/F32, shape
// flattened to [Rows, Cols]), decoded one row at a time so that no float32
// copy of the whole tensor is made.
func MeasureTensor(t *tensor.Tensor, p *Packed) (Report, error) {
	if err := t.Validate(); err != nil {
		return Report{}, fmt.Errorf("quant: report: %w", err)
	}
	if t.NumElements() != p.Rows*p.Cols {
		return Report{}, fmt.Errorf("quant: report %q: %d elements for [%d, %d]", t.Name, t.NumElements(), p.Rows, p.Cols)
	}
	es := t.DType.Size()
	return measure(t.Name, p, func(r int, dst []float32) error {
		return tensor.DecodeFloat32(dst, t.DType, t.Data[r*p.Cols*es:(r+1)*p.Cols*es])
	})
}

// measure accumulates the report; orig fills one original row.
func measure(name string, p *Packed, orig func(r int, dst []float32) error) (Report, error) {
	rep := Report{Name: name, Format: p.Format.String(), Rows: p.Rows, Cols: p.Cols, BitsPerWeight: p.Format.BitsPerWeight(p.Rows, p.Cols)}
	var se, ww, qq, wq float64
	n := 0
	row := make([]float32, p.Cols)
	w := make([]float32, p.Cols)
	for r := 0; r < p.Rows; r++ {
		if err := orig(r, w); err != nil {
			return Report{}, fmt.Errorf("quant: report %q: %w", name, err)
		}
		p.DequantizeRow(r, row)
		for c, d := range row {
			x := w[c]
			if x-x != 0 {
				rep.NonFinite++
				continue
			}
			a, b := float64(x), float64(d)
			e := a - b
			se += e * e
			ww += a * a
			qq += b * b
			wq += a * b
			rep.MaxAbsErr = math.Max(rep.MaxAbsErr, math.Abs(e))
			n++
		}
	}
	if n > 0 {
		rep.MSE = se / float64(n)
	}
	switch {
	case ww == 0 && qq == 0:
		rep.Cosine = 1
	case ww == 0 || qq == 0:
		rep.Cosine = 0
	default:
		rep.Cosine = wq / math.Sqrt(ww*qq)
	}
	if se == 0 {
		rep.SQNRdB = math.Inf(1)
	} else {
		rep.SQNRdB = 10 * math.Log10(ww/se)
	}
	return rep, nil
}

// Meta renders the report as string metadata (keys "report.mse", ...),
// for a task Output's Meta.
func (r Report) Meta() map[string]string {
	g := func(v float64) string { return strconv.FormatFloat(v, 'g', 8, 64) }
	return map[string]string{
		"report.format":          r.Format,
		"report.mse":             g(r.MSE),
		"report.max_abs_err":     g(r.MaxAbsErr),
		"report.cosine":          g(r.Cosine),
		"report.sqnr_db":         g(r.SQNRdB),
		"report.bits_per_weight": g(r.BitsPerWeight),
		"report.nonfinite":       strconv.Itoa(r.NonFinite),
		"report.rows":            strconv.Itoa(r.Rows),
		"report.cols":            strconv.Itoa(r.Cols),
	}
}

// String is a one-line summary.
func (r Report) String() string {
	return fmt.Sprintf("%s %s [%d,%d]: cos %.6f sqnr %.2f dB mse %.3g maxerr %.3g %.3f bpw", r.Name, r.Format, r.Rows, r.Cols, r.Cosine, r.SQNRdB, r.MSE, r.MaxAbsErr, r.BitsPerWeight)
}

// reportJSON is Report with SQNRdB as a string, since JSON has no +Inf
// (an exact quantization has SQNR +Inf, written "+Inf").
type reportJSON struct {
	Name          string  `json:"name"`
	Format        string  `json:"format"`
	Rows          int     `json:"rows"`
	Cols          int     `json:"cols"`
	MSE           float64 `json:"mse"`
	MaxAbsErr     float64 `json:"max_abs_err"`
	Cosine        float64 `json:"cosine"`
	SQNRdB        string  `json:"sqnr_db"`
	BitsPerWeight float64 `json:"bits_per_weight"`
	NonFinite     int     `json:"nonfinite"`
}

// MarshalJSON writes the report with snake_case keys; SQNR is a string
// ("+Inf" when exact).
func (r Report) MarshalJSON() ([]byte, error) {
	return json.Marshal(reportJSON{r.Name, r.Format, r.Rows, r.Cols, r.MSE, r.MaxAbsErr, r.Cosine,
		strconv.FormatFloat(r.SQNRdB, 'g', 8, 64), r.BitsPerWeight, r.NonFinite})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (r *Report) UnmarshalJSON(b []byte) error {
	var j reportJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	sq, err := strconv.ParseFloat(j.SQNRdB, 64)
	if err != nil {
		return fmt.Errorf("report sqnr_db: %w", err)
	}
	*r = Report{j.Name, j.Format, j.Rows, j.Cols, j.MSE, j.MaxAbsErr, j.Cosine, sq, j.BitsPerWeight, j.NonFinite}
	return nil
}

// Summary aggregates the reports of a model's tensors.
type Summary struct {
	// Tensors and Weights count the reported tensors and their elements.
	Tensors int
	Weights int64
	// AvgCosine is the unweighted mean of the per-tensor cosines;
	// MinCosine and MinCosineTensor the worst one.
	AvgCosine       float64
	MinCosine       float64
	MinCosineTensor string
	// BitsPerWeight is the storage cost averaged over all weights (each
	// tensor weighted by its element count).
	BitsPerWeight float64
	// Formats counts tensors per format string.
	Formats map[string]int
}

// Summarize aggregates reports (for the model's average bits per weight
// and the per-format choice counts of mixed-precision rules).
func Summarize(reps []Report) Summary {
	s := Summary{MinCosine: math.Inf(1), Formats: map[string]int{}}
	var bits float64
	for _, r := range reps {
		n := int64(r.Rows) * int64(r.Cols)
		s.Tensors++
		s.Weights += n
		s.AvgCosine += r.Cosine
		bits += r.BitsPerWeight * float64(n)
		s.Formats[r.Format]++
		if r.Cosine < s.MinCosine {
			s.MinCosine, s.MinCosineTensor = r.Cosine, r.Name
		}
	}
	if s.Tensors == 0 {
		s.MinCosine = 0
		return s
	}
	s.AvgCosine /= float64(s.Tensors)
	if s.Weights > 0 {
		s.BitsPerWeight = bits / float64(s.Weights)
	}
	return s
}
