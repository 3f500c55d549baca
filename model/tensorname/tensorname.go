// Package tensorname parses Hugging Face tensor and module names
// ("model.layers.3.mlp.experts.7.down_proj.weight",
// "backbone.layers.0.mixer.in_proj") into the parts marlin reads: the
// layer, the block, a routed expert's index, the projection and the
// parameter. It is the one place that knows the grammar; report,
// export/llamacpp, quant/rotate, quant/calib and hfconfig ask it instead of
// matching names themselves.
package tensorname

import (
	"strconv"
	"strings"
)

// Name is a parsed tensor or module name.
type Name struct {
	// Full is the name as given.
	Full string
	// Layer is N of the leftmost "layers.N." element (at the start of the
	// name or after a dot), or -1 when there is none or N overflows an int.
	Layer int
	// Root is what precedes ".layers.N." ("model", nemotron_h's
	// "backbone", "mtp", "" when the name starts with "layers."); "" when
	// Layer is -1.
	Root string
	// Prefix is the name up to and including "layers.N."
	// ("model.layers.3."; N as written); "" when Layer is -1.
	Prefix string
	// Rest is the name after Prefix (the whole name when Layer is -1).
	Rest string
	// Block is Rest's first element ("self_attn", "mlp", "mixer",
	// "input_layernorm", ...).
	Block string
	// Expert is E of a routed expert's projection, a module of the form
	// "<ExpertBlock>.experts.E.<Proj>", or -1.
	Expert int
	// ExpertBlock is the MoE block owning the expert
	// ("model.layers.3.mlp"); "" when Expert is -1.
	ExpertBlock string
	// Proj is the module's last element ("q_proj", "gate", "down_proj").
	Proj string
	// Param is "weight" or "bias" when a tensor name (Parse) ends with it;
	// "" otherwise and for module names (ParseModule).
	Param string
	// Pattern is Rest with a routed expert's index replaced by "*"
	// ("mlp.experts.*.down_proj.weight"): the name's role within its layer.
	Pattern string
}

// Parse parses a tensor name: a module name followed by a parameter
// ("weight" or "bias"; a name ending otherwise is all module).
func Parse(s string) Name {
	if i := strings.LastIndexByte(s, '.'); i >= 0 && (s[i+1:] == "weight" || s[i+1:] == "bias") {
		return parse(s, i)
	}
	return parse(s, len(s))
}

// ParseModule parses a module name (no trailing parameter).
func ParseModule(s string) Name { return parse(s, len(s)) }

// parse parses s whose module part is s[:end] (the rest: "." + Param).
func parse(s string, end int) Name {
	n := Name{Full: s, Layer: -1, Expert: -1, Rest: s}
	if end < len(s) {
		n.Param = s[end+1:]
	}
	if i, j, ok := findLayer(s); ok {
		if l, err := strconv.Atoi(s[i+len("layers.") : j]); err == nil {
			n.Layer, n.Prefix, n.Rest = l, s[:j+1], s[j+1:]
			if i > 0 {
				n.Root = s[:i-1]
			}
		}
	}
	n.Block, _, _ = strings.Cut(n.Rest, ".")
	mod := s[:end]
	n.Proj = mod[strings.LastIndexByte(mod, '.')+1:]
	n.Pattern = n.Rest
	// <ExpertBlock>.experts.<E>.<Proj>
	head := mod[:max(len(mod)-len(n.Proj)-1, 0)]
	if d := strings.LastIndexByte(head, '.'); d >= 0 && allDigits(head[d+1:]) {
		if blk, ok := strings.CutSuffix(head[:d], ".experts"); ok {
			if e, err := strconv.Atoi(head[d+1:]); err == nil {
				n.Expert, n.ExpertBlock = e, blk
				if start := len(s) - len(n.Rest); d+1 >= start {
					n.Pattern = s[start:d+1] + "*" + s[len(head):]
				}
			}
		}
	}
	return n
}

// findLayer returns the leftmost "layers.<digits>." at the start of s or
// after a dot: i indexes "layers", j the dot after the digits.
func findLayer(s string) (i, j int, ok bool) {
	for off := 0; ; {
		k := strings.Index(s[off:], "layers.")
		if k < 0 {
			return 0, 0, false
		}
		i = off + k
		if i == 0 || s[i-1] == '.' {
			j = i + len("layers.")
			for j < len(s) && s[j] >= '0' && s[j] <= '9' {
				j++
			}
			if j > i+len("layers.") && j < len(s) && s[j] == '.' {
				return i, j, true
			}
		}
		off = i + 1
	}
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Is reports whether the name's Pattern is one of patterns. A pattern
// with "experts.*." matches routed experts' names only.
func (n Name) Is(patterns ...string) bool {
	for _, p := range patterns {
		if p == n.Pattern && (n.Expert >= 0 || !strings.Contains(p, "experts.*.")) {
			return true
		}
	}
	return false
}

// moeBlocks are the names a decoder layer's MoE block goes by (Qwen3-MoE,
// GLM and DeepSeek: "mlp"; nemotron_h: "mixer").
var moeBlocks = []string{"mlp", "mixer"}

// MoEPatterns returns, for every name an MoE block goes by, the pattern
// (Name.Is) block + "." + suffix of each suffix ("experts.*.down_proj" →
// "mlp.experts.*.down_proj", "mixer.experts.*.down_proj").
func MoEPatterns(suffixes ...string) []string {
	var out []string
	for _, b := range moeBlocks {
		for _, s := range suffixes {
			out = append(out, b+"."+s)
		}
	}
	return out
}

// ExpertProj reports whether the name is a routed expert's gate, up or down
// projection in an MoE block ("….mlp.experts.E.up_proj",
// "….mixer.experts.E.down_proj").
func (n Name) ExpertProj() bool {
	if n.Expert < 0 || !hasBlockSuffix(n.ExpertBlock, "") {
		return false
	}
	return n.Proj == "gate_proj" || n.Proj == "up_proj" || n.Proj == "down_proj"
}

// Router reports whether a module name is an MoE block's router
// ("….mlp.gate", "….mixer.gate").
func (n Name) Router() bool { return n.Param == "" && hasBlockSuffix(n.Full, ".gate") }

// hasBlockSuffix reports whether s ends with "." + an MoE block name +
// suffix.
func hasBlockSuffix(s, suffix string) bool {
	for _, b := range moeBlocks {
		if strings.HasSuffix(s, "."+b+suffix) {
			return true
		}
	}
	return false
}
