package stages

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/export/llamacpp"
	"github.com/marlin-llm/marlin/internal/assets"
)

// slowLlamaTools skips the test unless MARLIN_SLOW=1 and the llama.cpp
// tools are there, and returns their directory.
func slowLlamaTools(t *testing.T) string {
	t.Helper()
	if os.Getenv("MARLIN_SLOW") != "1" {
		t.Skip("set MARLIN_SLOW=1 to run GPTQ calibration and llama-perplexity (minutes)")
	}
	out, err := exec.Command("sh", assets.Shared(t, "..", "tools", "llama.cpp", "bin.sh")).Output()
	if err != nil {
		t.Skipf("llama.cpp tools unavailable: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// TestPackGPTQBeatsRTNInLlamaCpp quantizes qwen3-nano to INT4 (groups of
// 32, symmetric, F16 scales) with RTN and with GPTQ, packs both as GGUF
// (the INT4 weights become Q4_0 blocks without re-quantization) and has
// llama.cpp score them: GPTQ's perplexity must be lower. MARLIN_SLOW=1.
func TestPackGPTQBeatsRTNInLlamaCpp(t *testing.T) {
	bin := slowLlamaTools(t)
	model := assets.Model(t, "qwen3-nano")
	calib := assets.Shared(t, "corpus", "calib.txt")
	ppl := map[string]float64{}
	for _, method := range []string{"rtn", "gptq"} {
		src := "load"
		stagesYAML := "  - {id: load, kind: load, with: {path: " + model + "}}\n"
		if method == "gptq" {
			stagesYAML += "  - {id: calib, kind: calibrate, needs: [load], with: {model: " + model + ", text: " + calib + ", samples: 64, seq_len: 256}}\n"
			src = "calib"
		}
		stagesYAML += fmt.Sprintf(`  - id: quant
    kind: quantize
    needs: [%s]
    with:
      default: {format: int4, group_size: 32, method: %s}
      rules:
        - {match: "*embed_tokens*", format: skip}
  - {id: pack, kind: pack, needs: [quant], with: {format: gguf, out: m.gguf, model: %s, gguf_type: q8_0}}
`, src, method, model)
		outDir, _ := runPackJob(t, t.TempDir(), stagesYAML)
		p, err := llamacpp.Perplexity(context.Background(), bin, filepath.Join(outDir, "m.gguf"), assets.Shared(t, "corpus", "valid.txt"), 256, 64, 2)
		if err != nil {
			t.Fatal(err)
		}
		ppl[method] = p
	}
	t.Logf("qwen3-nano INT4 g32 → Q4_0 GGUF, llama-perplexity 64×256: RTN %.4f, GPTQ %.4f", ppl["rtn"], ppl["gptq"])
	if ppl["gptq"] >= ppl["rtn"] {
		t.Errorf("GPTQ perplexity %.4f is not lower than RTN %.4f", ppl["gptq"], ppl["rtn"])
	}
}

// TestPackMRGPTQExpertsBeatMXFP4MOE is issue 9's comparison made like for
// like: llama-quantize's MXFP4_MOE recipe quantizes the routed experts to
// MXFP4 and the rest to Q8_0, so here the experts of qwen3moe-nano are
// quantized to MXFP4 (RTN, and MR-GPTQ after a block-32 Hadamard rotation
// and calibration on 32×256 tokens of calib.txt) and everything else goes
// to Q8_0 through the GGUF packer. llama.cpp scores both on the reference
// protocol: RTN must land within 0.2% of llama.cpp's own MXFP4_MOE score
// (the same grid), and MR-GPTQ below it. MARLIN_SLOW=1.
func TestPackMRGPTQExpertsBeatMXFP4MOE(t *testing.T) {
	bin := slowLlamaTools(t)
	js, err := os.ReadFile(assets.Shared(t, "gguf", "llama-perplexity.json"))
	if err != nil {
		t.Fatal(err)
	}
	var refs map[string]any
	if err := json.Unmarshal(js, &refs); err != nil {
		t.Fatal(err)
	}
	ref, ok := refs["qwen3moe-nano"].(map[string]any)["MXFP4_MOE"].(float64)
	if !ok {
		t.Fatal("no qwen3moe-nano MXFP4_MOE reference score")
	}
	model := assets.Model(t, "qwen3moe-nano")
	calib := assets.Shared(t, "corpus", "calib.txt")
	ppl := map[string]float64{}
	for _, method := range []string{"rtn", "mr-gptq"} {
		y := "  - {id: load, kind: load, with: {path: " + model + "}}\n"
		src, spec := "load", "format: mxfp4"
		if method == "mr-gptq" {
			y += "  - {id: rotate, kind: rotate, needs: [load], with: {method: hadamard, block: 32}}\n" +
				"  - {id: calib, kind: calibrate, needs: [rotate], with: {model: " + model + ", text: " + calib + ", samples: 32, seq_len: 256}}\n"
			src, spec = "calib", "format: mxfp4, method: mr-gptq, actorder: true, scale_search: true"
		}
		y += fmt.Sprintf(`  - id: quant
    kind: quantize
    needs: [%s]
    with:
      default: {format: skip}
      rules:
        - {match: "*.mlp.experts.*", %s}
  - {id: pack, kind: pack, needs: [quant], with: {format: gguf, out: m.gguf, model: %s, gguf_type: q8_0}}
`, src, spec, model)
		outDir, _ := runPackJob(t, t.TempDir(), y)
		p, err := llamacpp.Perplexity(context.Background(), bin, filepath.Join(outDir, "m.gguf"), assets.Shared(t, "corpus", "valid.txt"), 256, 64, 2)
		if err != nil {
			t.Fatal(err)
		}
		ppl[method] = p
	}
	t.Logf("qwen3moe-nano, experts MXFP4 + rest Q8_0, llama-perplexity 64×256: llama-quantize MXFP4_MOE %.4f, marlin RTN %.4f, MR-GPTQ %.4f",
		ref, ppl["rtn"], ppl["mr-gptq"])
	if d := math.Abs(ppl["rtn"]-ref) / ref; d > 2e-3 {
		t.Errorf("RTN experts %.4f differ from llama.cpp's MXFP4_MOE %.4f by %.3f%%", ppl["rtn"], ref, 100*d)
	}
	if ppl["mr-gptq"] >= ref {
		t.Errorf("MR-GPTQ experts %.4f do not beat MXFP4_MOE %.4f", ppl["mr-gptq"], ref)
	}
}
