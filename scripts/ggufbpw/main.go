// Command ggufbpw chooses per-tensor GGUF types for a target average bits
// per weight, minimising the predicted output error (quant/bpw: the
// importance-weighted quantization error Σ_c imatrix_c·Σ_r (W−Q)², the
// diagonal part of tr(ΔW H ΔWᵀ), by default relative to the tensor's
// output energy Σ_c imatrix_c·Σ_r W², so that tensors are compared by
// their signal-to-noise ratio), and prints the choice per tensor (to
// stderr) and quantize rules (to stdout, in ggufmix's format), for the
// quantize stage to run GPTQ with. Experts stacked into one GGUF tensor
// get one type. Tensors without an imatrix entry (embeddings, lm_head) get
// -fixed and count in the average.
//
//	go run ./scripts/ggufbpw -model DIR -imatrix imatrix.gguf -bpw 4.5
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/marlin-llm/marlin/export/llamacpp"
	"github.com/marlin-llm/marlin/model/gguf"
	"github.com/marlin-llm/marlin/model/safetensors"
	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/quant/bpw"
	"github.com/marlin-llm/marlin/tensor"
)

func main() {
	model := flag.String("model", "", "Hugging Face model directory")
	imx := flag.String("imatrix", "", "importance matrix GGUF (llama-imatrix's or marlin's quantize imatrix:)")
	target := flag.Float64("bpw", 4.5, "target average bits per weight over the 2-D tensors")
	types := flag.String("types", "q2_k,q3_k,iq4_xs,q4_k,q5_k,q6_k,q8_0,q4_0,q5_0,q5_1", "candidate formats")
	fixed := flag.String("fixed", "q6_k", "format of tensors without an imatrix entry (q8_0 where rows do not fill 256)")
	relative := flag.Bool("relative", true, "divide each tensor's predicted error by its predicted output energy Σ_c imatrix_c·Σ_r W²_rc (relative output error; false: absolute, which on qwen3-nano starves o_proj/down_proj and doubles the KLD)")
	flag.Parse()
	if err := run(*model, *imx, *target, strings.Split(*types, ","), *fixed, *relative); err != nil {
		fmt.Fprintln(os.Stderr, "ggufbpw:", err)
		os.Exit(1)
	}
}

type group struct {
	gguf    string
	members []string
	fixed   bool
	t       bpw.Tensor
}

func run(model, imx string, target float64, types []string, fixedName string, relative bool) error {
	ck, err := safetensors.Open(model)
	if err != nil {
		return err
	}
	defer ck.Close()
	im, err := gguf.Open(imx)
	if err != nil {
		return err
	}
	defer im.Close()
	var cands []quant.Format
	for _, n := range types {
		f, err := quant.Lookup(strings.TrimSpace(n))
		if err != nil {
			return err
		}
		cands = append(cands, f)
	}
	fixedF, err := quant.Lookup(fixedName)
	if err != nil {
		return err
	}
	q80, _ := quant.Lookup("q8_0")
	groups := map[string]*group{}
	var order []string
	for _, name := range ck.Names() {
		info, _ := ck.Info(name)
		if len(info.Shape) != 2 || strings.HasSuffix(name, "mlp.gate.weight") {
			continue // 1-D, routers: F32 in GGUF
		}
		gname, expert, ok := llamacpp.GGUFName(name)
		if !ok {
			continue // e.g. MLA kv_b_proj: re-encoded by pack
		}
		g := groups[gname]
		if g == nil {
			g = &group{gguf: gname, t: bpw.Tensor{Name: gname}}
			groups[gname] = g
			order = append(order, gname)
		}
		g.members = append(g.members, name)
		rows, cols := info.Shape[0], info.Shape[1]
		t, err := ck.Tensor(name)
		if err != nil {
			return err
		}
		w, err := tensor.ToFloat32(t)
		if err != nil {
			return err
		}
		g.t.Weights += int64(rows * cols)
		diag, ok, err := imatrixDiag(im, gname, expert, cols)
		if err != nil {
			return err
		}
		if !ok {
			g.fixed = true
			f := fixedF
			if cols%256 != 0 {
				f = q80
			}
			g.t.Options = []bpw.Option{{Format: f.Name, BPW: f.NominalBitsPerWeight()}}
			continue
		}
		norm := 1.0
		if relative {
			var e float64
			for r := 0; r < rows; r++ {
				for c := 0; c < cols; c++ {
					v := float64(w[r*cols+c])
					e += diag[c] * v * v
				}
			}
			if e > 0 {
				norm = 1 / e
			}
		}
		var opts []bpw.Option
		for _, f := range cands {
			if f.Elem == quant.ElemGGML && cols%f.GroupSize != 0 {
				continue
			}
			e, b, err := bpw.PredictError(context.Background(), w, rows, cols, f, diag)
			if err != nil {
				return fmt.Errorf("%s %s: %w", name, f.Name, err)
			}
			opts = append(opts, bpw.Option{Format: f.Name, BPW: b, Err: e * norm})
		}
		if len(g.t.Options) == 0 {
			g.t.Options = opts
		} else {
			for i := range g.t.Options {
				g.t.Options[i].Err += opts[i].Err
			}
		}
	}
	var ts []bpw.Tensor
	for _, n := range order {
		ts = append(ts, groups[n].t)
	}
	choice, err := bpw.Allocate(ts, target)
	if err != nil {
		return err
	}
	var bits, weights, errSum float64
	fmt.Fprintf(os.Stderr, "%-32s %-7s %7s %12s\n", "tensor", "type", "bpw", "pred. error")
	for i, c := range choice {
		fmt.Fprintf(os.Stderr, "%-32s %-7s %7.4f %12.5g\n", c.Name, c.Format, c.BPW, c.Err)
		bits += c.BPW * float64(ts[i].Weights)
		weights += float64(ts[i].Weights)
		errSum += c.Err
	}
	fmt.Fprintf(os.Stderr, "average %.4f bits per weight (target %.4f), predicted error %.5g\n", bits/weights, target, errSum)
	for _, c := range choice {
		globs, _, err := llamacpp.SourceGlobs(c.Name)
		if err != nil {
			return err
		}
		for _, g := range globs {
			fmt.Printf("quant: {match: %q, format: %s}\n", g, c.Format)
		}
	}
	return nil
}

// imatrixDiag returns the mean squared input per column of a GGUF tensor
// (row expert of a stacked entry).
func imatrixDiag(im *gguf.File, name string, expert, cols int) ([]float64, bool, error) {
	if _, ok := im.Info(name + ".in_sum2"); !ok {
		return nil, false, nil
	}
	s, err := im.Float32(name + ".in_sum2")
	if err != nil {
		return nil, false, err
	}
	c, err := im.Float32(name + ".counts")
	if err != nil {
		return nil, false, err
	}
	e := max(expert, 0)
	if len(s) < (e+1)*cols || len(c) <= e {
		return nil, false, fmt.Errorf("imatrix %s: %d values, %d counts for expert %d of %d columns", name, len(s), len(c), expert, cols)
	}
	d := make([]float64, cols)
	n := float64(c[e])
	if n <= 0 {
		n = 1
	}
	for i := range d {
		d[i] = float64(s[e*cols+i]) / n
	}
	return d, true, nil
}
