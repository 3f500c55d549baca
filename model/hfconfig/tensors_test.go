package hfconfig

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestCheckUsed(t *testing.T) {
	qwen := func(layers int, tied bool, nextn int) *Config {
		return &Config{ModelType: "qwen3", NumLayers: layers, TieWordEmbeddings: tied, NumNextNLayers: nextn, Path: "m/config.json"}
	}
	layer := func(l int, suffix string) string { return fmt.Sprintf("model.layers.%d.%s", l, suffix) }
	var many []string
	for l := 2; l < 6; l++ {
		for _, s := range []string{"mlp.up_proj.weight", "mlp.down_proj.weight", "input_layernorm.weight"} {
			many = append(many, layer(l, s))
		}
	}
	cases := []struct {
		name  string
		cfg   *Config
		names []string
		used  func(string) bool
		want  []string // substrings of the error; nil: no error
	}{
		{"all used", qwen(2, false, 0), []string{"a", layer(0, "x"), layer(1, "x")}, func(string) bool { return true }, nil},
		{"spare tensors", qwen(2, true, 1),
			[]string{"lm_head.weight", layer(0, "self_attn.rotary_emb.inv_freq"), layer(2, "eh_proj.weight"), layer(2, "mlp.experts.0.up_proj.weight")},
			func(string) bool { return false }, nil},
		{"untied lm_head", qwen(2, false, 0), []string{"lm_head.weight"}, func(string) bool { return false },
			[]string{"m/config.json: 1 checkpoint tensor is not used by the model this config describes: lm_head.weight"}},
		{"layers past num_hidden_layers", qwen(2, false, 0), []string{layer(0, "a"), layer(3, "b"), layer(2, "a")}, func(n string) bool { return LayerIndex(n) < 2 },
			[]string{"2 checkpoint tensors", "(all in layers 2-3, but num_hidden_layers is 2): model.layers.2.a, model.layers.3.b"}},
		{"past the next-n layers", qwen(2, false, 1), []string{layer(2, "a"), layer(3, "b")}, func(n string) bool { return LayerIndex(n) < 2 },
			[]string{"1 checkpoint tensor", "(all in layer 3, but num_hidden_layers is 2 and num_nextn_predict_layers 1): model.layers.3.b"}},
		{"mixed", qwen(2, false, 0), []string{"model.visual.w", layer(4, "b")}, func(string) bool { return false },
			[]string{"(1 of them in layer 4", "model.visual.w, model.layers.4.b"}},
		{"summarised", qwen(2, false, 0), many, func(string) bool { return false },
			[]string{"12 checkpoint tensors", "layers 2-5", "model.layers.2.input_layernorm.weight, model.layers.2.mlp.down_proj.weight", "and 4 more"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.CheckUsed(c.names, c.used)
			if c.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ue *UnusedTensorsError
			if !errors.As(err, &ue) {
				t.Fatalf("got %v, want an UnusedTensorsError", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q lacks %q", err, w)
				}
			}
		})
	}
}

func TestCheckLayers(t *testing.T) {
	c := &Config{NumLayers: 2, NumNextNLayers: 1}
	names := []string{"model.embed_tokens.weight", "model.layers.0.a", "model.layers.1.a", "model.layers.2.a", "lm_head.weight"}
	if err := c.CheckLayers(names); err != nil {
		t.Errorf("next-n layer refused: %v", err)
	}
	if err := c.CheckLayers(append(names, "model.layers.3.a")); err == nil || !strings.Contains(err.Error(), "model.layers.3.a") {
		t.Errorf("layer 3 of 2+1: %v", err)
	}
}

func TestLayerCountConsistency(t *testing.T) {
	base := `"model_type":"qwen3","hidden_size":8,"num_attention_heads":2,"intermediate_size":8,"vocab_size":8`
	for _, tc := range []struct{ json, want string }{
		{`{` + base + `,"num_hidden_layers":2,"layer_types":["full_attention","full_attention","full_attention","full_attention"]}`, "layer_types has 4 entries for num_hidden_layers 2"},
		{`{` + base + `,"num_hidden_layers":2,"num_nextn_predict_layers":-1}`, "num_nextn_predict_layers must be in"},
		{`{` + base + `,"num_hidden_layers":2,"layer_types":["full_attention","full_attention"],"num_nextn_predict_layers":1}`, ""},
	} {
		c, err := Parse([]byte(tc.json))
		if tc.want == "" {
			if err != nil || c.NumNextNLayers != 1 {
				t.Errorf("Parse(%s) = %+v, %v", tc.json, c, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%s) = %v, want error containing %q", tc.json, err, tc.want)
		}
	}
}

// oldLayerIndex is the regexp LayerIndex used before model/tensorname.
var oldLayerIndex = regexp.MustCompile(`^(?:model|backbone)\.layers\.(\d+)\.`)

func checkLayerIndex(t *testing.T, s string) {
	if regexp.MustCompile(`\d{19}`).MatchString(s) { // indices beyond int: the parser reads no index
		return
	}
	want := -1
	if g := oldLayerIndex.FindStringSubmatch(s); g != nil {
		if n, err := strconv.Atoi(g[1]); err == nil {
			want = n
		}
	}
	if got := LayerIndex(s); got != want {
		t.Errorf("LayerIndex(%q) = %d, regexp %d", s, got, want)
	}
}

var layerIndexSeeds = []string{
	"model.layers.3.self_attn.q_proj.weight", "backbone.layers.0.mixer.in_proj.weight", "mtp.layers.0.norm.weight",
	"model.layers.x.layers.5.w", "layers.2.x", "model.layers.2", "model.norm.weight", "x.model.layers.1.a", "",
}

// FuzzLayerIndex compares LayerIndex with its old regexp (plain go test
// runs the seeds).
func FuzzLayerIndex(f *testing.F) {
	for _, s := range layerIndexSeeds {
		f.Add(s)
	}
	f.Fuzz(checkLayerIndex)
}
