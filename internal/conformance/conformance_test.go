package conformance

import (
	"context"
	"math"
	"slices"
	"testing"

	"github.com/marlin-llm/marlin/export/llamacpp"
	"github.com/marlin-llm/marlin/internal/assets"
	"github.com/marlin-llm/marlin/kernels"
	"github.com/marlin-llm/marlin/model/arch"
	"github.com/marlin-llm/marlin/model/hfconfig"
	"github.com/marlin-llm/marlin/model/safetensors"
	"github.com/marlin-llm/marlin/model/synth"
	"github.com/marlin-llm/marlin/model/tensorname"
)

// TestForwardOrExportOnly: arch's forward passes are exactly the families
// the registry marks Forward; the others are export only.
func TestForwardOrExportOnly(t *testing.T) {
	if got, want := arch.Builders(), hfconfig.WithForward(); !slices.Equal(got, want) {
		t.Errorf("arch builds %v, registry's Forward families are %v", got, want)
	}
	if got, want := arch.Supported(), hfconfig.WithForward(); !slices.Equal(got, want) {
		t.Errorf("arch.Supported %v, want %v", got, want)
	}
	fams := hfconfig.Families()
	for i, f := range fams {
		if f.ModelType == "" || f.Doc == "" || f.LlamaCpp == "" || f.TensorRoot == "" {
			t.Errorf("family %d (%q): ModelType, Doc, LlamaCpp and TensorRoot are required", i, f.ModelType)
		}
		if i > 0 && fams[i-1].ModelType >= f.ModelType {
			t.Errorf("families not sorted by model_type at %q", f.ModelType)
		}
		if n := tensorname.Parse(f.TensorRoot + ".layers.0.mlp.up_proj.weight"); n.Root != f.TensorRoot || hfconfig.DecoderLayer(n) != 0 {
			t.Errorf("%s: tensor root %q does not parse as a decoder root (%+v)", f.ModelType, f.TensorRoot, n)
		}
		if f.Nano != "" && !f.Forward {
			t.Errorf("%s: a nano checkpoint but no forward pass to test it with", f.ModelType)
		}
	}
	if got, want := hfconfig.Supported(), modelTypes(fams); !slices.Equal(got, want) {
		t.Errorf("hfconfig.Supported %v, want %v", got, want)
	}
}

func modelTypes(fams []hfconfig.Family) []string {
	var out []string
	for _, f := range fams {
		out = append(out, f.ModelType)
	}
	return out
}

// TestSynthPresets: every preset is some family's, and a family's preset
// writes a checkpoint of that family.
func TestSynthPresets(t *testing.T) {
	claimed := map[string]string{}
	for _, f := range hfconfig.Families() {
		if f.Synth != "" {
			claimed[f.Synth] = f.ModelType
		}
	}
	for _, p := range synth.Presets() {
		mt, ok := claimed[p.Name]
		if !ok {
			t.Errorf("synth preset %q belongs to no family (set Family.Synth)", p.Name)
			continue
		}
		if got := p.Config(1, 0)["model_type"]; got != mt {
			t.Errorf("synth preset %q writes model_type %v, family says %s", p.Name, got, mt)
		}
		delete(claimed, p.Name)
	}
	for name, mt := range claimed {
		t.Errorf("%s: no synth preset %q", mt, name)
	}
}

// checkpoint is one checkpoint of a family to run the per-checkpoint
// checks on.
type checkpoint struct {
	family hfconfig.Family
	label  string // "nano" or "synth"
	dir    string
}

// borrowed names, for a family with neither a nano checkpoint nor a synth
// preset, the preset of a family whose config fields and tensor names it
// shares: its synthetic checkpoint is that preset's with model_type
// replaced.
var borrowed = map[string]string{"deepseek_v3": "glm47"}

// checkpoints returns the nano checkpoint of every family that has one and
// a small synthetic checkpoint of every family with a synth preset (its
// own or borrowed). Every family gets at least one.
func checkpoints(t *testing.T) []checkpoint {
	var out []checkpoint
	for _, f := range hfconfig.Families() {
		if f.Nano != "" {
			out = append(out, checkpoint{f, "nano", assets.Model(t, f.Nano)})
		}
		preset := f.Synth
		if preset == "" {
			preset = borrowed[f.ModelType]
		}
		if preset == "" {
			if f.Nano == "" {
				t.Errorf("%s: no checkpoint to test (no Nano, no Synth, nothing borrowed)", f.ModelType)
			}
			continue
		}
		p, err := synth.PresetOf(preset)
		if err != nil {
			t.Fatal(err)
		}
		// Widths / 16 and the first 6 layers: every layer kind of both
		// presets.
		cfg := p.Config(16, 6)
		cfg["model_type"] = f.ModelType
		ts, err := p.Tensors(cfg)
		if err != nil {
			t.Fatalf("%s: synth %s: %v", f.ModelType, preset, err)
		}
		dir := t.TempDir()
		if _, err := synth.Write(context.Background(), dir, cfg, ts, 1, 1<<30); err != nil {
			t.Fatalf("%s: synth %s: %v", f.ModelType, preset, err)
		}
		out = append(out, checkpoint{f, "synth", dir})
	}
	return out
}

// TestCheckpoints runs, on every family's checkpoints: config parsing to
// the family, the llama.cpp mapping of every tensor, the tensor-name
// parser on every decoder tensor, and (Forward families) a model build and
// one forward pass with finite logits.
func TestCheckpoints(t *testing.T) {
	for _, c := range checkpoints(t) {
		t.Run(c.family.ModelType+"/"+c.label, func(t *testing.T) {
			cfg, err := hfconfig.Load(c.dir)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.ModelType != c.family.ModelType || cfg.Family().ModelType != c.family.ModelType {
				t.Fatalf("config model_type %q, family %q", cfg.ModelType, c.family.ModelType)
			}
			ck, err := safetensors.Open(c.dir)
			if err != nil {
				t.Fatal(err)
			}
			defer ck.Close()
			names := ck.Names()
			for _, n := range names {
				tn := tensorname.Parse(n)
				if hfconfig.LayerIndex(n) >= 0 && tn.Root != c.family.TensorRoot {
					t.Errorf("%s: root %q, family's tensor root %q", n, tn.Root, c.family.TensorRoot)
				}
			}
			shape := func(n string) []int { ti, _ := ck.Info(n); return ti.Shape }
			if ts, err := llamacpp.Map(cfg, names, shape); err != nil {
				t.Errorf("llama.cpp mapping: %v", err)
			} else if _, err := llamacpp.ArchKVs(cfg, ts, llamacpp.Info{}); err != nil {
				t.Errorf("llama.cpp metadata: %v", err)
			}
			if a, err := llamacpp.ArchName(cfg); err != nil || (a != c.family.LlamaCpp && a != c.family.LlamaCppMoE) {
				t.Errorf("llama.cpp arch %q (%v), family says %q/%q", a, err, c.family.LlamaCpp, c.family.LlamaCppMoE)
			}
			if !c.family.Forward {
				return
			}
			b, err := kernels.Open("cpu", kernels.Options{})
			if err != nil {
				t.Fatal(err)
			}
			m, err := arch.Build(cfg, ck, arch.Options{Backend: b})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range m.Projs() {
				tn := tensorname.ParseModule(p.Name())
				if p.Layer() >= 0 && (tn.Layer != p.Layer() || hfconfig.DecoderLayer(tn) != p.Layer()) {
					t.Errorf("projection %s of layer %d: parser reads layer %d (decoder layer %d)", p.Name(), p.Layer(), tn.Layer, hfconfig.DecoderLayer(tn))
				}
				if tn.Expert != p.Expert() {
					t.Errorf("projection %s of expert %d: parser reads expert %d", p.Name(), p.Expert(), tn.Expert)
				}
			}
			ids := []int32{1, 2, 3, 4, 5, 6, 7, 8}
			logits, err := m.Forward(context.Background(), ids, arch.Batch{Seqs: 1, Len: len(ids)}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(logits) != len(ids)*m.Vocab() {
				t.Fatalf("%d logits, want %d", len(logits), len(ids)*m.Vocab())
			}
			for i, v := range logits {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					t.Fatalf("logit %d is %v", i, v)
				}
			}
		})
	}
}

// TestExportOnlyRefused: a family without a forward pass is refused by
// arch with a message naming the ones it builds.
func TestExportOnlyRefused(t *testing.T) {
	for _, f := range hfconfig.Families() {
		if f.Forward {
			continue
		}
		cfg := &hfconfig.Config{ModelType: f.ModelType}
		if _, err := arch.Build(cfg, nil, arch.Options{}); err == nil {
			t.Errorf("%s: arch.Build succeeded for an export-only family", f.ModelType)
		}
	}
}
