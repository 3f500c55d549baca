package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/marlin-llm/marlin/model/gguf"
	"github.com/marlin-llm/marlin/model/hfconfig"
	"github.com/marlin-llm/marlin/model/safetensors"
)

// inspectTensor is one row of `marlin-run inspect`.
type inspectTensor struct {
	Name  string `json:"name"`
	DType string `json:"dtype"`
	Shape []int  `json:"shape"`
	Bytes int64  `json:"bytes"`
	File  string `json:"file,omitempty"`
}

// inspectReport is what `marlin-run inspect --json` prints.
type inspectReport struct {
	Path     string            `json:"path"`
	Format   string            `json:"format"`
	Config   *hfconfig.Config  `json:"config,omitempty"`
	Metadata map[string]any    `json:"metadata,omitempty"`
	Header   map[string]string `json:"header_metadata,omitempty"`
	Tensors  []inspectTensor   `json:"tensors"`
	Total    int64             `json:"total_bytes"`
}

func inspectCommand() *command {
	var (
		match  string
		asJSON bool
	)
	return &command{
		Name:    "inspect",
		Usage:   "PATH",
		Summary: "list the tensors (name, dtype, shape, bytes) and config summary of a safetensors file/dir or a GGUF file",
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&match, "match", "", "only tensors whose names match this `glob`")
			fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
		},
		Run: func(ctx context.Context, a *app, args []string) error {
			if len(args) != 1 {
				return usagef("want one path (model directory, .safetensors or .gguf file)")
			}
			if match != "" {
				if _, err := path.Match(match, ""); err != nil {
					return usagef("--match: bad glob %q: %v", match, err)
				}
			}
			rep, err := inspectPath(args[0], match)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(a.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			return rep.writeText(a.Stdout)
		},
	}
}

func inspectPath(p, match string) (*inspectReport, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	rep := &inspectReport{Path: p}
	keep := func(name string) bool {
		ok, _ := path.Match(match, name)
		return match == "" || ok
	}
	if !st.IsDir() && gguf.IsFile(p) {
		f, err := gguf.Open(p)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		rep.Format = fmt.Sprintf("gguf v%d (alignment %d)", f.Version, f.Alignment)
		rep.Metadata = map[string]any{}
		for _, kv := range f.KVs {
			rep.Metadata[kv.Key] = summarizeValue(kv.Value)
		}
		for _, ti := range f.Tensors {
			if keep(ti.Name) {
				rep.Tensors = append(rep.Tensors, inspectTensor{Name: ti.Name, DType: ti.Type.String(), Shape: ti.Shape(), Bytes: int64(ti.Size)})
				rep.Total += int64(ti.Size)
			}
		}
		return rep, nil
	}
	ck, err := safetensors.Open(p)
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	rep.Format = fmt.Sprintf("safetensors (%d file(s))", len(ck.Files()))
	rep.Header = ck.Metadata()
	multi := len(ck.Files()) > 1
	for _, n := range ck.Names() {
		if !keep(n) {
			continue
		}
		ti, _ := ck.Info(n)
		row := inspectTensor{Name: n, DType: ti.DType.String(), Shape: ti.Shape, Bytes: ti.Size()}
		if multi {
			row.File = filepath.Base(ti.File)
		}
		rep.Tensors = append(rep.Tensors, row)
		rep.Total += ti.Size()
	}
	if _, err := os.Stat(filepath.Join(ck.Dir(), "config.json")); err == nil {
		cfg, err := hfconfig.Load(ck.Dir())
		if err != nil {
			return nil, err
		}
		cfg.Raw = nil
		rep.Config = cfg
	}
	return rep, nil
}

// summarizeValue shortens arrays to their length and first elements.
func summarizeValue(v gguf.Value) any {
	if v.Type != gguf.ValueArray {
		return v.V
	}
	rv := reflect.ValueOf(v.V)
	first := make([]any, 0, 8)
	for i := 0; i < rv.Len() && i < 8; i++ {
		first = append(first, rv.Index(i).Interface())
	}
	return map[string]any{"type": "array of " + v.Elem.String(), "len": rv.Len(), "first": first}
}

func (r *inspectReport) writeText(w io.Writer) error {
	fmt.Fprintf(w, "%s: %s\n", r.Path, r.Format)
	if c := r.Config; c != nil {
		fmt.Fprintf(w, "config: %s %v: hidden %d, layers %d, heads %d/%d kv, head_dim %d, ffn %d, vocab %d, rope θ %g, eps %g, tied %v\n",
			c.ModelType, c.Architectures, c.HiddenSize, c.NumLayers, c.NumHeads, c.NumKVHeads, c.HeadDim, c.IntermediateSize,
			c.VocabSize, c.Rope.Theta, c.RMSNormEps, c.TieWordEmbeddings)
		if m := c.MoE; m.NumExperts > 0 {
			fmt.Fprintf(w, "moe: %d experts (top %d, %d shared), moe_ffn %d, scoring %s, norm_topk %v, routed scale %g\n",
				m.NumExperts, m.NumExpertsPerTok, m.NumSharedExperts, m.IntermediateSize, m.ScoringFunc, m.NormTopKProb, m.RoutedScalingFactor)
		}
		if m := c.MLA; m != nil {
			fmt.Fprintf(w, "mla: q_lora %d, kv_lora %d, qk_nope %d, qk_rope %d, v %d\n", m.QLoRARank, m.KVLoRARank, m.QKNopeHeadDim, m.QKRopeHeadDim, m.VHeadDim)
		}
	}
	for k, v := range r.Header {
		fmt.Fprintf(w, "metadata %s = %s\n", k, v)
	}
	if len(r.Metadata) > 0 {
		keys := make([]string, 0, len(r.Metadata))
		for k := range r.Metadata {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "%s = %v\n", k, r.Metadata[k])
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tDTYPE\tSHAPE\tBYTES\tFILE")
	for _, t := range r.Tensors {
		s := make([]string, len(t.Shape))
		for i, d := range t.Shape {
			s[i] = fmt.Sprint(d)
		}
		fmt.Fprintf(tw, "%s\t%s\t[%s]\t%d\t%s\n", t.Name, t.DType, strings.Join(s, ", "), t.Bytes, t.File)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d tensors, %d bytes\n", len(r.Tensors), r.Total)
	return err
}
