package stages

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/export/llamacpp"
	"github.com/marlin-llm/marlin/internal/assets"
)

// TestPackGPTQBeatsRTNInLlamaCpp quantizes qwen3-nano to INT4 (groups of
// 32, symmetric, F16 scales) with RTN and with GPTQ, packs both as GGUF
// (the INT4 weights become Q4_0 blocks without re-quantization) and has
// llama.cpp score them: GPTQ's perplexity must be lower. MARLIN_SLOW=1.
func TestPackGPTQBeatsRTNInLlamaCpp(t *testing.T) {
	if os.Getenv("MARLIN_SLOW") != "1" {
		t.Skip("set MARLIN_SLOW=1 to run GPTQ calibration and llama-perplexity (minutes)")
	}
	out, err := exec.Command("sh", assets.Shared(t, "..", "tools", "llama.cpp", "bin.sh")).Output()
	if err != nil {
		t.Skipf("llama.cpp tools unavailable: %v", err)
	}
	bin := strings.TrimSpace(string(out))
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
