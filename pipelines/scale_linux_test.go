//go:build linux

package pipelines_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/marlin-llm/marlin/model/safetensors"
)

// Scale test parameters (overridable: SCALE_WIDTH_DIV, SCALE_LAYERS,
// SCALE_MEM_MIB). The defaults make a 1.29GiB synthetic GLM-4.7-Flash
// (largest tensor: the 151MiB embedding) and a 256MiB budget.
func scaleParam(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestScaleSyntheticGLM47 generates a synthetic GLM-4.7-Flash with
// cmd/marlin-synth (the real tensor names and layout, widths divided,
// sharded), quantizes and packs it with pipelines/glm47-synth-scale.yaml
// under resources.memory smaller than the model, in a child marlin-run
// process, and checks the child's peak RSS (getrusage ru_maxrss, the
// kernel's high-water mark of its resident set) against budget + largest
// tensor.
func TestScaleSyntheticGLM47(t *testing.T) {
	if os.Getenv("MARLIN_SLOW") == "" {
		t.Skip("scale test: set MARLIN_SLOW=1 (generates a ~1.3GB model; `make scale-test`)")
	}
	widthDiv := scaleParam("SCALE_WIDTH_DIV", 2)
	layers := scaleParam("SCALE_LAYERS", 4)
	budget := int64(scaleParam("SCALE_MEM_MIB", 256)) << 20

	dir := t.TempDir()
	bin, model := buildSynthetic(t, dir, widthDiv, layers, 256)

	ck, err := safetensors.Open(model)
	if err != nil {
		t.Fatal(err)
	}
	var total, largest int64
	var largestName string
	for _, n := range ck.Names() {
		ti, _ := ck.Info(n)
		total += ti.Size()
		if ti.Size() > largest {
			largest, largestName = ti.Size(), n
		}
	}
	ck.Close()
	if total <= budget {
		t.Fatalf("model %d bytes is not larger than the budget %d: nothing to show", total, budget)
	}

	// The largest tasks' estimates (quantize: 3× the embedding) exceed
	// the budget: this test measures how far past the budget the
	// process goes when they run anyway, each alone.
	run := exec.Command(filepath.Join(bin, "marlin-run"), "run", "--log-format", "json", "--allow-over-budget", "glm47-synth-scale.yaml")
	run.Env = append(filteredEnv("GOMEMLIMIT", "MODEL", "MEM", "WORKDIR"),
		"MODEL="+model, "MEM="+strconv.FormatInt(budget>>20, 10)+"MiB", "WORKDIR="+filepath.Join(dir, "work"))
	start := time.Now()
	out, err := run.CombinedOutput()
	wall := time.Since(start)
	if err != nil {
		tail := out
		if len(tail) > 4000 {
			tail = tail[len(tail)-4000:]
		}
		t.Fatalf("marlin-run: %v\n%s", err, tail)
	}
	// The run's own peak (VmHWM, logged at the end): getrusage's maxrss
	// of a child includes this test process's peak, since os/exec starts
	// children with vfork.
	m := regexp.MustCompile(`"peak_rss_bytes":(\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("marlin-run logged no peak_rss_bytes:\n%s", out[max(0, len(out)-2000):])
	}
	peak, err := strconv.ParseInt(string(m[1]), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	limit := budget + largest
	mib := func(b int64) string { return fmt.Sprintf("%.1fMiB", float64(b)/(1<<20)) }
	t.Logf("model %s (%d tensors, width-div %d, %d layers); budget %s; largest tensor %s (%s)",
		mib(total), len(ck.Names()), widthDiv, layers, mib(budget), largestName, mib(largest))
	t.Logf("marlin-run: wall %.1fs, peak RSS %s, limit budget+largest %s (%.0f%% of the model)",
		wall.Seconds(), mib(peak), mib(limit), 100*float64(peak)/float64(total))
	if peak > limit {
		t.Errorf("peak RSS %s > budget + largest tensor %s", mib(peak), mib(limit))
	}
	for _, f := range []string{"glm47-synth-mxfp4/model.safetensors.index.json", "quant-report.json"} {
		if _, err := os.Stat(filepath.Join(dir, "work", "out", f)); err != nil {
			t.Errorf("output: %v", err)
		}
	}
}

// filteredEnv is os.Environ without the named variables.
func filteredEnv(drop ...string) []string {
	var env []string
next:
	for _, kv := range os.Environ() {
		for _, d := range drop {
			if len(kv) > len(d) && kv[:len(d)+1] == d+"=" {
				continue next
			}
		}
		env = append(env, kv)
	}
	return env
}

// buildSynthetic builds marlin-run and marlin-synth into dir/bin and writes
// a synthetic GLM-4.7-Flash (shards of shardMiB) to dir/glm47-synth.
func buildSynthetic(t *testing.T, dir string, widthDiv, layers, shardMiB int) (bin, model string) {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("scale test needs the go command: %v", err)
	}
	bin = filepath.Join(dir, "bin")
	for _, cmd := range []string{"marlin-run", "marlin-synth"} {
		build := exec.Command(goBin, "build", "-o", filepath.Join(bin, cmd), "../cmd/"+cmd)
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", cmd, err, out)
		}
	}
	model = filepath.Join(dir, "glm47-synth")
	synth := exec.Command(filepath.Join(bin, "marlin-synth"), "-out", model,
		"-width-div", strconv.Itoa(widthDiv), "-layers", strconv.Itoa(layers), "-shard-mb", strconv.Itoa(shardMiB))
	out, err := synth.CombinedOutput()
	if err != nil {
		t.Fatalf("marlin-synth: %v\n%s", err, out)
	}
	t.Logf("%s", bytes.TrimSpace(out))
	return bin, model
}
