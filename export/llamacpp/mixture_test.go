package llamacpp

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/internal/assets"
	"github.com/marlin-llm/marlin/model/gguf"
	"github.com/marlin-llm/marlin/model/hfconfig"
	"github.com/marlin-llm/marlin/model/safetensors"
)

// dryRunRe reads one tensor line of llama-quantize --dry-run:
// "[  19/  51] blk.1.attn_output.weight - [ 256, 256, 1, 1], type = f16, size = ... -> ... (q5_K)";
// a tensor kept as it is has no "->" part.
var dryRunRe = regexp.MustCompile(`^\[\s*\d+/\s*\d+\]\s+(\S+)\s+- \[[^\]]*\], type =\s+(\S+), size =[^(]*(?:\((\S+)\))?`)

// llamaQuantizeTypes runs llama-quantize --dry-run on an F16 GGUF for a
// file type and returns the type it chooses per tensor.
func llamaQuantizeTypes(t *testing.T, tools, f16, ftype string) map[string]gguf.GGMLType {
	t.Helper()
	out, err := exec.Command(filepath.Join(tools, "llama-quantize"), "--dry-run", f16, filepath.Join(t.TempDir(), "x.gguf"), ftype, "1").CombinedOutput()
	if err != nil {
		t.Fatalf("llama-quantize --dry-run %s: %v\n%s", ftype, err, tail(out))
	}
	types := map[string]gguf.GGMLType{}
	for _, line := range strings.Split(string(out), "\n") {
		m := dryRunRe.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		name := m[2]
		if m[3] != "" {
			name = m[3]
		}
		typ, err := gguf.ParseType(name)
		if err != nil {
			t.Fatalf("llama-quantize line %q: %v", line, err)
		}
		types[m[1]] = typ
	}
	if len(types) == 0 {
		t.Fatalf("llama-quantize --dry-run %s printed no tensor lines:\n%s", ftype, tail(out))
	}
	return types
}

// TestMixturesMatchLlamaQuantize checks every mixture recipe against
// llama-quantize itself: the type AssignTypes picks for each tensor of
// the three nano models equals the one llama-quantize --dry-run chooses
// for that file type on our F16 export of the same model (without an
// importance matrix, as the pack stage encodes).
func TestMixturesMatchLlamaQuantize(t *testing.T) {
	tools := llamaTools(t)
	dir := t.TempDir()
	for _, model := range []string{"qwen3-nano", "qwen3moe-nano", "glm47-nano"} {
		t.Run(model, func(t *testing.T) {
			f16 := export(t, model, "f16", nil, dir)
			md := assets.Model(t, model)
			cfg, err := hfconfig.Load(md)
			if err != nil {
				t.Fatal(err)
			}
			ck, err := safetensors.Open(md)
			if err != nil {
				t.Fatal(err)
			}
			defer ck.Close()
			for _, recipe := range Mixtures() {
				want := llamaQuantizeTypes(t, tools, f16, strings.ToUpper(recipe))
				p, err := NewPlan(cfg, md, ck.Names(), func(n string) []int { info, _ := ck.Info(n); return info.Shape }, Options{Recipe: recipe})
				if err != nil {
					t.Fatal(err)
				}
				if len(p.Tensors) != len(want) {
					t.Errorf("%s: %d tensors, llama-quantize lists %d", recipe, len(p.Tensors), len(want))
				}
				counts := map[gguf.GGMLType]int{}
				for i, ti := range p.Tensors {
					w, ok := want[ti.Name]
					if !ok {
						t.Errorf("%s: %s not in llama-quantize's output", recipe, ti.Name)
						continue
					}
					if p.Types[i] != w {
						t.Errorf("%s: %s is %s, llama-quantize chooses %s", recipe, ti.Name, p.Types[i], w)
					}
					counts[p.Types[i]]++
				}
				if ft, _ := FileType(recipe); ft == 0 {
					t.Errorf("%s: no file type", recipe)
				}
				t.Logf("%s %s: %v", model, recipe, counts)
			}
		})
	}
}

// TestMixtureCounters checks the parts of the port the nano models do not
// reach, on hand-made tensor lists: the attn_v counter in
// llama-quantize's order (by layer, so blk.10 after blk.9), use_more_bits
// and GQA, against the values of llama_tensor_get_type's formulas.
func TestMixtureCounters(t *testing.T) {
	mk := func(nLayer int) []*Tensor {
		var ts []*Tensor
		for l := nLayer - 1; l >= 0; l-- { // reversed: AssignTypes must order them
			for _, n := range []string{"attn_v.weight", "ffn_down.weight", "attn_output.weight"} {
				ts = append(ts, &Tensor{Name: "blk." + strconv.Itoa(l) + "." + n, Dims: []int{256, 256}, Layer: l, Role: RoleOther})
			}
		}
		return append(ts, &Tensor{Name: "token_embd.weight", Dims: []int{256, 1000}, Layer: -1, Role: RoleEmbed})
	}
	type want struct {
		name string
		typ  gguf.GGMLType
	}
	cases := []struct {
		recipe string
		hp     Hparams
		n      int
		want   []want
	}{
		// use_more_bits(i, 24): i < 3, i >= 21, (i-3)%3 == 2 → 0,1,2,5,8,...,20,21,22,23
		{"q4_k_m", Hparams{NGQA: 2}, 24, []want{{"blk.0.attn_v.weight", gguf.TypeQ6_K}, {"blk.3.attn_v.weight", gguf.TypeQ4_K},
			{"blk.5.attn_v.weight", gguf.TypeQ6_K}, {"blk.10.attn_v.weight", gguf.TypeQ4_K}, {"blk.11.attn_v.weight", gguf.TypeQ6_K},
			{"blk.11.ffn_down.weight", gguf.TypeQ6_K}, {"blk.12.ffn_down.weight", gguf.TypeQ4_K}, {"blk.23.attn_v.weight", gguf.TypeQ6_K},
			{"token_embd.weight", gguf.TypeQ6_K}}},
		{"q3_k_m", Hparams{NGQA: 2}, 24, []want{{"blk.0.attn_v.weight", gguf.TypeQ5_K}, {"blk.1.attn_v.weight", gguf.TypeQ5_K},
			{"blk.2.attn_v.weight", gguf.TypeQ4_K}, {"blk.0.ffn_down.weight", gguf.TypeQ5_K}, {"blk.1.ffn_down.weight", gguf.TypeQ4_K},
			{"blk.5.attn_output.weight", gguf.TypeQ4_K}}},
		{"q2_k", Hparams{NGQA: 4}, 8, []want{{"blk.0.attn_v.weight", gguf.TypeQ4_K}, {"blk.0.ffn_down.weight", gguf.TypeQ3_K},
			{"blk.0.attn_output.weight", gguf.TypeQ3_K}}},
		{"q2_k", Hparams{NGQA: 2, NExpert: 8}, 8, []want{{"blk.0.attn_v.weight", gguf.TypeQ8_0}, {"blk.0.attn_output.weight", gguf.TypeQ5_K}}},
		{"iq4_xs", Hparams{NGQA: 8}, 16, []want{{"blk.0.attn_v.weight", gguf.TypeQ5_K}, {"blk.1.ffn_down.weight", gguf.TypeQ5_K},
			{"blk.2.ffn_down.weight", gguf.TypeIQ4_XS}}},
		{"iq4_xs", Hparams{NGQA: 8, HasImatrix: true}, 16, []want{{"blk.1.ffn_down.weight", gguf.TypeIQ4_XS}}},
		{"q4_k_s", Hparams{NGQA: 2}, 16, []want{{"blk.3.attn_v.weight", gguf.TypeQ5_K}, {"blk.4.attn_v.weight", gguf.TypeQ4_K},
			{"blk.1.ffn_down.weight", gguf.TypeQ5_K}, {"blk.2.ffn_down.weight", gguf.TypeQ4_K}}},
	}
	for _, c := range cases {
		ts := mk(c.n)
		c.hp.NLayer = c.n
		types, err := AssignTypes(ts, c.recipe, c.hp, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]gguf.GGMLType{}
		for i, tt := range ts {
			got[tt.Name] = types[i]
		}
		for _, w := range c.want {
			if got[w.name] != w.typ {
				t.Errorf("%s %+v: %s is %s, want %s", c.recipe, c.hp, w.name, got[w.name], w.typ)
			}
		}
	}
}
