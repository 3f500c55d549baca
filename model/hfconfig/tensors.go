package hfconfig

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/marlin-llm/marlin/model/tensorname"
)

// LayerIndex returns N of a "model.layers.N.…" (or nemotron_h's
// "backbone.layers.N.…") tensor name, or -1.
func LayerIndex(name string) int { return DecoderLayer(tensorname.ParseModule(name)) }

// DecoderLayer returns the decoder layer of a parsed tensor or module name
// whose root is some family's TensorRoot, or -1 (other roots, such as
// nemotron_h's "mtp.layers.N." head, are not decoder layers).
func DecoderLayer(n tensorname.Name) int {
	if n.Layer >= 0 && slices.ContainsFunc(families, func(f Family) bool { return f.TensorRoot == n.Root }) {
		return n.Layer
	}
	return -1
}

// SpareTensor reports whether a checkpoint tensor may go unused by a model
// built from c without changing what it computes: rotary inv_freq buffers
// (recomputed from the rope settings), lm_head.weight when the embeddings
// are tied (the model multiplies by the embeddings, as transformers does),
// the num_nextn_predict_layers multi-token-prediction layers stored
// after the last decoder layer (GLM, DeepSeek: neither a forward pass nor
// llama.cpp's converter runs them), and nemotron_h's "mtp.*" head
// (transformers ignores it on load; llama.cpp's converter drops it by
// default).
func (c *Config) SpareTensor(name string) bool {
	switch {
	case strings.HasSuffix(name, "rotary_emb.inv_freq"):
		return true
	case name == "lm_head.weight":
		return c.TieWordEmbeddings
	case c.Hybrid != nil && strings.HasPrefix(name, "mtp."):
		return true
	}
	l := LayerIndex(name)
	return l >= c.NumLayers && l < c.NumLayers+c.NumNextNLayers
}

// UnusedTensorsError reports checkpoint tensors that a consumer (a model
// build, an exporter) did not use and SpareTensor does not excuse: a model
// or file built without them computes something else than the checkpoint
// (e.g. a config.json declaring fewer layers than the weights hold).
type UnusedTensorsError struct {
	// Config is the config.json the tensors were checked against ("" when
	// not read from a file).
	Config string
	// NumLayers and NumNextNLayers are the config's layer counts.
	NumLayers, NumNextNLayers int
	// Names are the unused tensors, sorted.
	Names []string
}

// maxListedUnused bounds the names an UnusedTensorsError lists.
const maxListedUnused = 8

func (e *UnusedTensorsError) Error() string {
	var b strings.Builder
	if e.Config != "" {
		b.WriteString(e.Config + ": ")
	}
	n := len(e.Names)
	if n == 1 {
		b.WriteString("1 checkpoint tensor is not used by the model this config describes")
	} else {
		fmt.Fprintf(&b, "%d checkpoint tensors are not used by the model this config describes", n)
	}
	lo, hi, beyond := -1, -1, 0
	for _, name := range e.Names {
		if l := LayerIndex(name); l >= e.NumLayers {
			beyond++
			if lo < 0 || l < lo {
				lo = l
			}
			hi = max(hi, l)
		}
	}
	if beyond > 0 {
		layers := fmt.Sprintf("layer %d", lo)
		if hi > lo {
			layers = fmt.Sprintf("layers %d-%d", lo, hi)
		}
		if beyond == n {
			fmt.Fprintf(&b, " (all in %s, but num_hidden_layers is %d", layers, e.NumLayers)
		} else {
			fmt.Fprintf(&b, " (%d of them in %s, but num_hidden_layers is %d", beyond, layers, e.NumLayers)
		}
		if e.NumNextNLayers > 0 {
			fmt.Fprintf(&b, " and num_nextn_predict_layers %d", e.NumNextNLayers)
		}
		b.WriteString(")")
	}
	b.WriteString(": ")
	for i, name := range e.Names {
		if i == maxListedUnused {
			fmt.Fprintf(&b, " and %d more", n-i)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(name)
	}
	return b.String()
}

// CheckUsed returns an *UnusedTensorsError naming the tensors of names
// that used rejects and SpareTensor does not excuse, or nil.
func (c *Config) CheckUsed(names []string, used func(name string) bool) error {
	var unused []string
	for _, n := range names {
		if !used(n) && !c.SpareTensor(n) {
			unused = append(unused, n)
		}
	}
	if len(unused) == 0 {
		return nil
	}
	sort.Slice(unused, func(i, j int) bool { return tensorLess(unused[i], unused[j]) })
	return &UnusedTensorsError{Config: c.Path, NumLayers: c.NumLayers, NumNextNLayers: c.NumNextNLayers, Names: unused}
}

// tensorLess orders names by layer index, then by name.
func tensorLess(a, b string) bool {
	la, lb := LayerIndex(a), LayerIndex(b)
	if la != lb {
		return la < lb
	}
	return a < b
}

// CheckLayers is CheckUsed for a consumer that uses every tensor outside
// the decoder layers' range: it refuses tensors of layers past
// num_hidden_layers (and the next-n layers), the mistake a config.json
// declaring fewer layers than the checkpoint holds makes.
func (c *Config) CheckLayers(names []string) error {
	return c.CheckUsed(names, func(n string) bool { return LayerIndex(n) < c.NumLayers })
}

// EmbedName is the checkpoint name of the token embeddings
// ("model.embed_tokens.weight"; nemotron_h: "backbone.embeddings.weight").
func (c *Config) EmbedName() string {
	root, embed, _ := c.tensorNames()
	return root + "." + embed + ".weight"
}

// FinalNormName is the checkpoint name of the final RMSNorm's weight
// ("model.norm.weight"; nemotron_h: "backbone.norm_f.weight").
func (c *Config) FinalNormName() string {
	root, _, norm := c.tensorNames()
	return root + "." + norm + ".weight"
}

// LayerPrefix is the name prefix of decoder layer l's tensors
// ("model.layers.3."; nemotron_h: "backbone.layers.3.").
func (c *Config) LayerPrefix(l int) string {
	root, _, _ := c.tensorNames()
	return root + ".layers." + strconv.Itoa(l) + "."
}
