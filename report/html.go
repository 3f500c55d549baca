package report

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"html/template"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// figure is one embedded plot.
type figure struct {
	Title string
	URI   template.URL
}

var page = template.Must(template.New("report").Funcs(funcs).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>marlin report: {{.Doc.Name}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:8px 0} td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3} td.l,th.l{text-align:left} .fail{color:#b00;font-weight:bold} .pass{color:#070}
.figs{display:flex;flex-wrap:wrap;gap:12px} figure{margin:0} figcaption{font-size:13px;color:#555}
img{border:1px solid #ddd}
</style></head><body>
<h1>marlin report: {{.Doc.Name}}</h1>
<p>generated {{.Doc.Generated.Format "2006-01-02 15:04:05 MST"}}</p>
{{with .Doc.Summary}}<p>{{.Tensors}} quantized tensors, {{.Weights}} weights, average <b>{{printf "%.3f" .BitsPerWeight}}</b> bits per weight;
average cosine {{printf "%.5f" .AvgCosine}}, worst {{printf "%.5f" .MinCosine}} ({{.MinTensor}})</p>{{end}}
<div class="figs">{{range .Figs}}<figure><img alt="{{.Title}}" src="{{.URI}}" width="560" height="320"><figcaption>{{.Title}}</figcaption></figure>{{end}}</div>
{{with .Doc.Validation}}<h2>Validation</h2>
<p>{{.Packed}} against {{.Model}} on {{.Text}}: {{.Windows}} windows of {{.Window}} tokens ({{.Tokens}} scored), quantized model run from packed weights through the {{.Backend}} backend's dequant kernels.</p>
{{range .Warnings}}<p class="fail">warning: {{.}}</p>
{{end}}
<table><tr><th class="l">metric</th><th>value</th></tr>
{{if .Method}}<tr><td class="l">quantization</td><td>{{.Method}}</td></tr>{{end}}
<tr><td class="l">perplexity (unquantized)</td><td>{{printf "%.4f" .RefPPL}}</td></tr>
<tr><td class="l">perplexity (quantized)</td><td>{{printf "%.4f" .QuantPPL}}</td></tr>
<tr><td class="l">perplexity increase</td><td>{{printf "%+.3f%%" (pct .PPLIncrease)}}</td></tr>
<tr><td class="l">KL(ref ‖ quant), mean / max (nats)</td><td>{{printf "%.5f" .KL}} / {{printf "%.4f" .MaxKL}}</td></tr>
<tr><td class="l">top-1 agreement</td><td>{{printf "%.4f" .Top1}}</td></tr></table>
{{if .Checks}}<table><tr><th class="l">threshold</th><th>value</th><th>limit</th><th class="l">result</th></tr>
{{range .Checks}}<tr><td class="l">{{.Metric}}</td><td>{{printf "%.5g" .Value}}</td><td>{{if .Max}}≤{{else}}≥{{end}} {{printf "%.5g" .Limit}}</td><td class="l {{if .Pass}}pass{{else}}fail{{end}}">{{.Message}}</td></tr>
{{end}}</table>{{end}}{{end}}
{{with .Doc.Benchmark}}<h2>Benchmark</h2><p>backend {{.Backend}}, {{.Threads}} threads. {{.Note}}</p>
<table><tr><th class="l">model</th><th>prompt</th><th>prefill tok/s</th><th>decode tok/s</th><th>weight MB</th></tr>
{{range .E2E}}<tr><td class="l">{{.Format}} ({{.Backend}})</td><td>{{.PromptTokens}}</td><td>{{printf "%.1f" .PrefillTokS}}</td><td>{{printf "%.1f" .DecodeTokS}}</td><td>{{printf "%.2f" (mb .WeightBytes)}}</td></tr>
{{end}}</table>
<table><tr><th class="l">kernel</th><th class="l">format</th><th>rows×out×in</th><th>µs</th><th>GFLOP/s</th><th>weight GB/s</th></tr>
{{range .Kernels}}<tr><td class="l">{{.Op}} ({{.Backend}})</td><td class="l">{{.Format}}</td><td>{{.Rows}}×{{.Out}}×{{.In}}</td><td>{{printf "%.1f" (us .Seconds)}}</td><td>{{printf "%.2f" .GFLOPs}}</td><td>{{printf "%.2f" .GBs}}</td></tr>
{{end}}</table>{{end}}
{{if .Doc.Tensors}}<h2>Per-tensor weight error</h2>
<table><tr><th class="l">tensor</th><th class="l">format</th><th>bpw</th><th>MSE</th><th>max |err|</th><th>cosine</th><th>SQNR dB</th></tr>
{{range .Doc.Tensors}}<tr><td class="l">{{.Name}}</td><td class="l">{{.Format}}</td><td>{{printf "%.3f" .BitsPerWeight}}</td><td>{{printf "%.3e" .MSE}}</td><td>{{printf "%.3e" .MaxAbsErr}}</td><td>{{printf "%.5f" .Cosine}}</td><td>{{printf "%.2f" .SQNRdB}}</td></tr>
{{end}}</table>{{end}}
</body></html>
`))

var funcs = template.FuncMap{
	"pct": func(v float64) float64 { return 100 * v },
	"mb":  func(b int64) float64 { return float64(b) / (1 << 20) },
	"us":  func(s float64) float64 { return 1e6 * s },
}

// HTML renders the report page with its plots embedded.
func HTML(d *Doc) ([]byte, error) {
	figs, err := figures(d)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := page.Execute(&buf, struct {
		Doc  *Doc
		Figs []figure
	}{d, figs}); err != nil {
		return nil, fmt.Errorf("report: html: %w", err)
	}
	return buf.Bytes(), nil
}

func png(p *plot.Plot) (template.URL, error) {
	w, err := p.WriterTo(7*vg.Inch, 4*vg.Inch, "png")
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		return "", err
	}
	return template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(buf.Bytes())), nil
}

// bars draws named groups of bars: series[i] has one value per label.
func bars(title, ylabel string, labels []string, names []string, series [][]float64) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = ylabel
	w := vg.Points(float64(min(40, 320/max(1, len(labels)*len(series)))))
	for i, s := range series {
		bc, err := plotter.NewBarChart(plotter.Values(s), w)
		if err != nil {
			return nil, err
		}
		bc.Color = plotutil.Color(i)
		bc.LineStyle.Width = 0
		bc.Offset = vg.Length(float64(i)-float64(len(series)-1)/2) * w
		p.Add(bc)
		if len(series) > 1 {
			p.Legend.Add(names[i], bc)
		}
	}
	p.Legend.Top = true
	p.NominalX(labels...)
	// Room on both sides for the outer bars, and above them for the legend.
	p.X.Min, p.X.Max = -0.6, float64(len(labels))-0.4
	top := 0.0
	for _, s := range series {
		for _, v := range s {
			top = max(top, v)
		}
	}
	p.Y.Min = min(0, p.Y.Min)
	if top > 0 {
		p.Y.Max = 1.2 * top
	}
	p.Add(plotter.NewGrid())
	return p, nil
}

// figures draws the report's plots from whatever parts it has.
func figures(d *Doc) ([]figure, error) {
	var figs []figure
	add := func(title string, p *plot.Plot, err error) error {
		if err != nil {
			return fmt.Errorf("report: plot %q: %w", title, err)
		}
		uri, err := png(p)
		if err != nil {
			return fmt.Errorf("report: plot %q: %w", title, err)
		}
		figs = append(figs, figure{Title: title, URI: uri})
		return nil
	}
	if len(d.Tensors) > 0 {
		// Per-layer error: mean and worst SQNR of each decoder layer.
		type acc struct {
			sum, min float64
			n        int
		}
		layers := map[int]*acc{}
		for _, t := range d.Tensors {
			a := layers[t.Layer]
			if a == nil {
				a = &acc{min: t.SQNRdB}
				layers[t.Layer] = a
			}
			a.sum += t.SQNRdB
			a.min = min(a.min, t.SQNRdB)
			a.n++
		}
		var idx []int
		for l := range layers {
			idx = append(idx, l)
		}
		sort.Ints(idx)
		var labels []string
		mean, worst := make([]float64, len(idx)), make([]float64, len(idx))
		for i, l := range idx {
			if l < 0 {
				labels = append(labels, "other")
			} else {
				labels = append(labels, fmt.Sprint(l))
			}
			mean[i] = layers[l].sum / float64(layers[l].n)
			worst[i] = layers[l].min
		}
		p, err := bars("Per-layer weight error (SQNR, higher is better)", "SQNR dB", labels, []string{"mean", "worst tensor"}, [][]float64{mean, worst})
		if err == nil {
			p.X.Label.Text = "decoder layer"
		}
		if err := add("per-layer error", p, err); err != nil {
			return nil, err
		}
		// Bits per weight: each format's share of the weights and bits.
		wByF, bByF := map[string]float64{}, map[string]float64{}
		var tw, tb float64
		for _, t := range d.Tensors {
			wByF[t.Format] += float64(t.Weights)
			bByF[t.Format] += float64(t.Weights) * t.BitsPerWeight
			tw += float64(t.Weights)
			tb += float64(t.Weights) * t.BitsPerWeight
		}
		var fl []string
		for f := range wByF {
			fl = append(fl, f)
		}
		sort.Strings(fl)
		ws, bs := make([]float64, len(fl)), make([]float64, len(fl))
		for i, f := range fl {
			ws[i] = 100 * wByF[f] / tw
			bs[i] = 100 * bByF[f] / max(tb, 1e-300)
		}
		title := fmt.Sprintf("Bits-per-weight breakdown (average %.3f bpw)", tb/max(tw, 1))
		p, err = bars(title, "% of total", fl, []string{"weights", "bits"}, [][]float64{ws, bs})
		if err := add("bits-per-weight breakdown", p, err); err != nil {
			return nil, err
		}
	}
	if v := d.Validation; v != nil {
		method := v.Method
		if method == "" {
			method = "quantized"
		}
		p, err := bars(fmt.Sprintf("Perplexity by method (KL %.4f, top-1 %.3f)", v.KL, v.Top1), "perplexity",
			[]string{"unquantized", method}, []string{"ppl"}, [][]float64{{v.RefPPL, v.QuantPPL}})
		if err := add("perplexity by method", p, err); err != nil {
			return nil, err
		}
	}
	if b := d.Benchmark; b != nil && len(b.E2E) > 0 {
		var labels []string
		pre, dec := make([]float64, len(b.E2E)), make([]float64, len(b.E2E))
		for i, e := range b.E2E {
			labels = append(labels, e.Format)
			pre[i], dec[i] = e.PrefillTokS, e.DecodeTokS
		}
		p, err := bars("Throughput by format ("+b.Backend+")", "tokens/s", labels, []string{"prefill", "decode"}, [][]float64{pre, dec})
		if err := add("throughput by format", p, err); err != nil {
			return nil, err
		}
	}
	if b := d.Benchmark; b != nil && len(b.Kernels) > 0 {
		var labels []string
		var gbs []float64
		for _, k := range b.Kernels {
			labels = append(labels, fmt.Sprintf("%s %s\n%d×%d", k.Format, k.Op, k.Out, k.In))
			gbs = append(gbs, k.GFLOPs)
		}
		p, err := bars("Kernel throughput", "GFLOP/s", labels, []string{"GFLOP/s"}, [][]float64{gbs})
		if err := add("kernel throughput", p, err); err != nil {
			return nil, err
		}
	}
	return figs, nil
}
