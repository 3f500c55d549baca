//go:build linux

package pipelines_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marlin-llm/marlin/model/safetensors"
)

// TestScaleSyntheticGLM47MRGPTQ runs the flagship job's shape
// (pipelines/glm47-synth-mrgptq.yaml: load → Hadamard rotate → calibrate →
// layer-streamed MR-GPTQ MXFP4 → GGUF + native) on a synthetic
// GLM-4.7-Flash from cmd/marlin-synth (random weights, bundled tokenizer)
// under a memory budget below the model's F32 size, in a child marlin-run.
//
// Parameters (environment): SCALE_WIDTH_DIV (8), SCALE_LAYERS (6),
// SCALE_MEM_MIB (192), SCALE_SAMPLES (8), SCALE_SEQ_LEN (256). About 10
// minutes on 2 cores (GPTQ of each layer's o_proj, 5120 input columns at
// any -width-div, dominates), hence MARLIN_SLOW=1 (`make scale-mrgptq-test`).
//
// --allow-over-budget: the layer.L tasks estimate ~1GiB at width-div 8 on
// 2 cores (stages/layerwise.go layerMemory: per worker the GPTQ working set
// of the widest Linear, o_proj's 5120² float64 Hessian and Cholesky
// factor, whatever the width), more than the whole model in F32
// (~280MiB), so run refuses them under any budget below the model's size. The test prints `marlin-run plan`'s list of refused tasks,
// runs anyway (each over-budget task alone) and asserts
//
//	peak RSS <= max(budget, largest admitted estimate) + largest tensor (F32)
//
// It also prints budget + largest tensor (the bound a budget above every
// estimate would give) and whether the peak stayed under it.
//
// Workdir: it polls the workdir size during the run and prints blobs by
// stage (load, rotate, quant, act.* snapshots), out/ and the journal; it
// asserts that no act.* snapshot is left at the end, that the peak workdir
// is at most the final one plus two activation snapshots (the transient
// act.L are deleted once layer.L and act.L+1 are done), and that the
// quantize stage's blobs are at most 1.5× the native output.
func TestScaleSyntheticGLM47MRGPTQ(t *testing.T) {
	if os.Getenv("MARLIN_SLOW") == "" {
		t.Skip("scale test: set MARLIN_SLOW=1 (~10 minutes on 2 cores; `make scale-mrgptq-test`)")
	}
	widthDiv := scaleParam("SCALE_WIDTH_DIV", 8)
	layers := scaleParam("SCALE_LAYERS", 6)
	budget := int64(scaleParam("SCALE_MEM_MIB", 192)) << 20
	samples := scaleParam("SCALE_SAMPLES", 8)
	seqLen := scaleParam("SCALE_SEQ_LEN", 256)
	mib := func(b int64) string { return fmt.Sprintf("%.1fMiB", float64(b)/(1<<20)) }

	dir := t.TempDir()
	bin, model := buildSynthetic(t, dir, widthDiv, layers, 64)
	ck, err := safetensors.Open(model)
	if err != nil {
		t.Fatal(err)
	}
	var totalBF16, largestF32 int64
	var largestName string
	for _, n := range ck.Names() {
		ti, _ := ck.Info(n)
		totalBF16 += ti.Size()
		if f := 2 * ti.Size(); f > largestF32 { // BF16 → F32
			largestF32, largestName = f, n
		}
	}
	ck.Close()
	if 2*totalBF16 <= budget {
		t.Fatalf("model F32 %s is not larger than the budget %s: nothing to show", mib(2*totalBF16), mib(budget))
	}

	work := filepath.Join(dir, "work")
	env := append(filteredEnv("GOMEMLIMIT", "MODEL", "MEM", "WORKDIR", "SAMPLES", "SEQ_LEN", "CALIB_TEXT", "SHARD", "WORKERS", "BACKEND"),
		"MODEL="+model, "MEM="+strconv.FormatInt(budget>>20, 10)+"MiB", "WORKDIR="+work,
		"SAMPLES="+strconv.Itoa(samples), "SEQ_LEN="+strconv.Itoa(seqLen), "SHARD=32MiB", "BACKEND=cpu")

	// Which tasks the estimates refuse under the budget.
	plan := exec.Command(filepath.Join(bin, "marlin-run"), "plan", "glm47-synth-mrgptq.yaml")
	plan.Env = env
	pout, perr := plan.CombinedOutput()
	t.Logf("marlin-run plan (exit %v):\n%s", perr, bytes.TrimSpace(pout))

	run := exec.Command(filepath.Join(bin, "marlin-run"), "run", "--log-format", "json", "--allow-over-budget", "glm47-synth-mrgptq.yaml")
	run.Env = env
	var out bytes.Buffer
	run.Stdout, run.Stderr = &out, &out
	var peakWork int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			peakWork = max(peakWork, dirSize(work))
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	start := time.Now()
	err = run.Run()
	wall := time.Since(start)
	close(stop)
	wg.Wait()
	if err != nil {
		b := out.Bytes()
		t.Fatalf("marlin-run: %v\n%s", err, b[max(0, len(b)-4000):])
	}

	// Peak RSS and the largest estimate admitted (started events carry it).
	m := regexp.MustCompile(`"peak_rss_bytes":(\d+)`).FindSubmatch(out.Bytes())
	if m == nil {
		t.Fatalf("marlin-run logged no peak_rss_bytes")
	}
	peak, _ := strconv.ParseInt(string(m[1]), 10, 64)
	var maxEst int64
	var maxEstTask string
	var over []string
	layerSecs := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(out.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e struct {
			Event, Stage, Key string
			Bytes             int64
			Seconds           float64
		}
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		switch e.Event {
		case "started":
			if e.Bytes > maxEst {
				maxEst, maxEstTask = e.Bytes, e.Stage+"/"+e.Key
			}
			if e.Bytes > budget {
				over = append(over, fmt.Sprintf("%s/%s (%s)", e.Stage, e.Key, mib(e.Bytes)))
			}
		case "done":
			if e.Stage == "quant" && (strings.HasPrefix(e.Key, "layer.") || strings.HasPrefix(e.Key, "act.")) {
				layerSecs[e.Key] = e.Seconds
			}
		}
	}
	keys := make([]string, 0, len(layerSecs))
	for k := range layerSecs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var secs []string
	for _, k := range keys {
		secs = append(secs, fmt.Sprintf("%s %.1fs", k, layerSecs[k]))
	}
	t.Logf("model BF16 %s, F32 %s (width-div %d, %d layers); budget %s; largest tensor %s F32 %s; calibration %d x %d",
		mib(totalBF16), mib(2*totalBF16), widthDiv, layers, mib(budget), largestName, mib(largestF32), samples, seqLen)
	t.Logf("tasks run over the budget (--allow-over-budget, each alone): %s", strings.Join(over, ", "))
	t.Logf("marlin-run: wall %.1fs; %s", wall.Seconds(), strings.Join(secs, ", "))
	limit := max(budget, maxEst) + largestF32
	t.Logf("peak RSS %s; largest admitted estimate %s (%s); limit max(budget, estimate) + largest tensor %s; budget + largest tensor %s: %s",
		mib(peak), mib(maxEst), maxEstTask, mib(limit), mib(budget+largestF32),
		map[bool]string{true: "within", false: "EXCEEDED (the layer tasks need more than the budget)"}[peak <= budget+largestF32])
	if peak > limit {
		t.Errorf("peak RSS %s > max(budget, largest estimate) + largest tensor %s: an estimate undercounts", mib(peak), mib(limit))
	}

	// Workdir components.
	stageOf := map[string]string{}
	jb, err := os.ReadFile(filepath.Join(work, "journal.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range bytes.Split(jb, []byte("\n")) {
		var e struct{ ID, Stage, Key string }
		if json.Unmarshal(l, &e) == nil && e.ID != "" {
			s := e.Stage
			if strings.HasPrefix(e.Key, "act.") {
				s = "quant act.*"
			}
			stageOf[e.ID] = s
		}
	}
	blobs := map[string]int64{}
	var blobTotal int64
	filepath.WalkDir(filepath.Join(work, "blobs"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		s := stageOf[strings.TrimSuffix(d.Name(), ".arrow")]
		if s == "" {
			s = "unreferenced"
		}
		blobs[s] += fi.Size()
		blobTotal += fi.Size()
		return nil
	})
	outDir := filepath.Join(work, "out")
	outTotal := dirSize(outDir)
	native := dirSize(filepath.Join(outDir, "glm47-synth-mxfp4"))
	gguf := dirSize(filepath.Join(outDir, "glm47-synth-mxfp4.gguf"))
	final := dirSize(work)
	actSnap := int64(samples) * int64(seqLen) * int64(2048/widthDiv) * 4
	var parts []string
	for _, s := range []string{"load", "rotate", "calib", "quant", "quant act.*", "gguf", "native", "unreferenced"} {
		parts = append(parts, fmt.Sprintf("%s %s", s, mib(blobs[s])))
	}
	t.Logf("workdir final %s (peak during the run %s): blobs %s [%s]; out %s (native %s, gguf %s); journal %s; one activation snapshot %s",
		mib(final), mib(peakWork), mib(blobTotal), strings.Join(parts, ", "), mib(outTotal), mib(native), mib(gguf), mib(int64(len(jb))), mib(actSnap))
	if blobs["quant act.*"] != 0 {
		t.Errorf("%s of act.* snapshots left in the workdir (transient)", mib(blobs["quant act.*"]))
	}
	if bound := final + 2*actSnap + 8<<20; peakWork > bound {
		t.Errorf("peak workdir %s > final %s + 2 activation snapshots + 8MiB", mib(peakWork), mib(final))
	}
	if blobs["quant"] > native*3/2 {
		t.Errorf("quant blobs %s > 1.5 × native output %s", mib(blobs["quant"]), mib(native))
	}
	for _, f := range []string{"glm47-synth-mxfp4/model.safetensors.index.json", "glm47-synth-mxfp4.gguf", "quant-report.json"} {
		if _, err := os.Stat(filepath.Join(outDir, f)); err != nil {
			t.Errorf("output: %v", err)
		}
	}
}

// dirSize is the total size of the regular files under p (0 if absent).
func dirSize(p string) int64 {
	var n int64
	filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil && fi.Mode().IsRegular() {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
