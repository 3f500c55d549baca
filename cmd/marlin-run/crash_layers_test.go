package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// layerCrashJob streams the bundled qwen3-nano through rotate, calibrate
// and MR-GPTQ layer by layer, then packs it.
func layerCrashJob(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	model := filepath.Join(root, "demo", "qwen3-nano")
	return `version: 1
name: layer-crash
resources: {workers: 2, memory: 1GiB}
stages:
  - {id: load, kind: load, with: {path: "` + model + `"}}
  - {id: rotate, kind: rotate, needs: [load], with: {block: 32}}
  - {id: calib, kind: calibrate, needs: [rotate], with: {model: "` + model + `", text: "` + filepath.Join(root, "demo", "calib.txt") + `", samples: 8, seq_len: 128}}
  - id: quant
    kind: quantize
    needs: [calib]
    with:
      default: {format: mxfp4, method: mr-gptq}
      rules: [{match: "model.embed_tokens.weight", format: bf16}]
  - {id: native, kind: pack, needs: [quant], with: {format: native, out: q, model: "` + model + `"}}
`
}

// TestLayerCrashResume (issue 17): kill -9 at random points while layers
// are calibrated and quantized; each resume re-does at most the layer in
// flight (its layer task, or the activation task after it), and the final
// outputs and checkpoints are byte-identical to an uninterrupted run's.
func TestLayerCrashResume(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the CLI and runs it several times")
	}
	bin := buildCLI(t)
	dir := t.TempDir()
	job := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(job, []byte(layerCrashJob(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	ref := filepath.Join(dir, "ref")
	c := exec.Command(bin, "run", "--log-format", "json", "--workdir", ref, job)
	var refOut, refErr bytes.Buffer
	c.Stdout, c.Stderr = &refOut, &refErr
	if err := c.Run(); err != nil {
		t.Fatalf("reference run: %v\n%s", err, refErr.String())
	}
	// 4 layer tasks and 5 activation tasks (act.4 feeds the GPTQ of the
	// lm_head the rotation unties).
	perRun := streamStarts(refOut.String())
	if perRun != 9 {
		t.Fatalf("reference started %d layer/activation tasks, want 9:\n%s", perRun, refOut.String())
	}

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	wd := filepath.Join(dir, "crashy")
	// started counts layer and activation tasks started over all runs: with
	// sequential layers one of them is in flight at a time, so each kill
	// loses at most one.
	started := 0
	kills := 0
	for cycle := 0; cycle < 6 && kills < 3; cycle++ {
		c := exec.Command(bin, "run", "--log-format", "json", "--workdir", wd, job)
		stdout, err := c.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill after the k-th start of a layer or activation task, after a
		// random delay, so kills land inside GPTQ and inside blob writes.
		k := 1 + rng.IntN(2)
		seen := 0
		sc := bufio.NewScanner(stdout)
		finished := false
		for sc.Scan() {
			var ev struct{ Event, Stage, Key string }
			if json.Unmarshal(sc.Bytes(), &ev) != nil {
				continue
			}
			if ev.Stage == "quant" && ev.Event == "started" && (strings.HasPrefix(ev.Key, "layer.") || strings.HasPrefix(ev.Key, "act.")) {
				started++
				seen++
				if seen == k {
					break
				}
			}
		}
		if seen < k {
			finished = true
		} else {
			time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond)
			c.Process.Signal(syscall.SIGKILL)
		}
		rest, _ := io.ReadAll(stdout) // tasks started before the kill landed
		started += streamStarts(string(rest))
		c.Wait()
		if finished {
			break
		}
		if ws, ok := c.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			kills++
		}
	}
	c = exec.Command(bin, "run", "--log-format", "json", "--workdir", wd, job)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	if err := c.Run(); err != nil {
		t.Fatalf("resumed run: %v\n%s", err, errb.String())
	}
	started += streamStarts(out.String())
	if redone := started - perRun; redone > kills {
		t.Errorf("%d kills re-did %d layer/activation tasks (at most one per kill)", kills, redone)
	}
	t.Logf("%d kills, %d layer/activation tasks started in all (%d without kills)", kills, started, perRun)
	if kills == 0 {
		t.Fatal("no run was killed")
	}
	for _, sub := range []string{"out", "blobs"} {
		a, b := tree(t, filepath.Join(ref, sub)), tree(t, filepath.Join(wd, sub))
		if len(a) != len(b) {
			t.Errorf("%s: %d files vs %d after crashes", sub, len(a), len(b))
		}
		for name, data := range a {
			if !bytes.Equal(data, b[name]) {
				t.Errorf("%s/%s differs after crash and resume", sub, name)
			}
		}
	}
}

// streamStarts counts the layer and activation tasks a run's JSON events
// started.
func streamStarts(events string) int {
	n := 0
	for _, line := range strings.Split(events, "\n") {
		var ev struct{ Event, Stage, Key string }
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Event == "started" && ev.Stage == "quant" &&
			(strings.HasPrefix(ev.Key, "layer.") || strings.HasPrefix(ev.Key, "act.")) {
			n++
		}
	}
	return n
}
