// Command ggufbpw chooses per-tensor GGUF types for a target average bits
// per weight from a model and an importance-matrix file (the quantize
// stage's target_bpw does the same inside a job, from its own
// calibration), minimising the predicted output error (quant/bpw: the
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
	"github.com/marlin-llm/marlin/quant/bpw"
	"github.com/marlin-llm/marlin/tensor"
)

func main() {
	model := flag.String("model", "", "Hugging Face model directory")
	imx := flag.String("imatrix", "", "importance matrix GGUF (llama-imatrix's or marlin's quantize imatrix:)")
	target := flag.Float64("bpw", 4.5, "target average bits per weight over the 2-D tensors")
	types := flag.String("types", strings.Join(bpw.DefaultCandidates(), ","), "candidate formats")
	fixed := flag.String("fixed", "q6_k", "format of tensors without an imatrix entry (q8_0 where rows do not fill 256)")
	relative := flag.Bool("relative", true, "divide each tensor's predicted error by its predicted output energy Σ_c imatrix_c·Σ_r W²_rc (relative output error; false: absolute, which on qwen3-nano starves o_proj/down_proj and doubles the KLD)")
	flag.Parse()
	if err := run(*model, *imx, *target, strings.Split(*types, ","), *fixed, *relative); err != nil {
		fmt.Fprintln(os.Stderr, "ggufbpw:", err)
		os.Exit(1)
	}
}

func run(model, imx string, target float64, types []string, fixedName string, relative bool) error {
	ctx := context.Background()
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
	pl, err := bpw.NewPlanner(bpw.PlannerOptions{Candidates: types, Fixed: fixedName, Absolute: !relative})
	if err != nil {
		return err
	}
	for _, name := range ck.Names() {
		info, _ := ck.Info(name)
		if len(info.Shape) != 2 || strings.HasSuffix(name, "mlp.gate.weight") {
			continue // 1-D, routers: F32 in GGUF
		}
		gname, expert, ok := llamacpp.GGUFName(name)
		if !ok {
			continue // e.g. MLA kv_b_proj: re-encoded by pack
		}
		rows, cols := info.Shape[0], info.Shape[1]
		t, err := ck.Tensor(name)
		if err != nil {
			return err
		}
		w, err := tensor.ToFloat32(t)
		if err != nil {
			return err
		}
		diag, ok, err := imatrixDiag(im, gname, expert, cols)
		if err != nil {
			return err
		}
		if !ok {
			diag = nil
		}
		if err := pl.Add(ctx, name, gname, w, rows, cols, diag); err != nil {
			return err
		}
	}
	res, err := pl.Allocate(target)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "%-32s %-7s %7s %12s\n", "tensor", "type", "bpw", "pred. error")
	for _, c := range res.Groups {
		fmt.Fprintf(os.Stderr, "%-32s %-7s %7.4f %12.5g\n", c.Name, c.Format, c.BPW, c.Err)
	}
	fmt.Fprintf(os.Stderr, "average %.4f bits per weight (target %.4f), predicted error %.5g\n", res.BPW, target, res.Err)
	for _, c := range res.Groups {
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
