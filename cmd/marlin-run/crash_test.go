package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// crashJob is big enough that a run takes a noticeable time (many blobs,
// each fsynced) and ends with an exported artifact (stats.json).
const crashJob = `version: 1
name: crash
resources: {workers: 2, memory: 64MiB}
stages:
  - id: w
    kind: synthetic
    with:
      seed: 7
      dtype: BF16
      layers: 12
      tensors:
        - {name: "l.{layer}.a", shape: [256, 512]}
        - {name: "l.{layer}.b", shape: [512, 128]}
  - id: s
    kind: stats
    needs: [w]
    with: {out: report/stats.json}
`

func buildCLI(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not in PATH")
	}
	bin := filepath.Join(t.TempDir(), "marlin-run")
	cmd := exec.Command(goBin, "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestCrashResumeByteIdentical runs the CLI as a subprocess, SIGKILLs it at
// random points, resumes, and checks that the final checkpoints and outputs
// are byte-identical to an uninterrupted run's.
func TestCrashResumeByteIdentical(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the CLI and runs it several times")
	}
	bin := buildCLI(t)
	dir := t.TempDir()
	job := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(job, []byte(crashJob), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(workdir string) *exec.Cmd {
		c := exec.Command(bin, "run", "--log-format", "json", "--workdir", workdir, job)
		c.Stdout, c.Stderr = &bytes.Buffer{}, &bytes.Buffer{}
		return c
	}
	ref := filepath.Join(dir, "ref")
	c := run(ref)
	start := time.Now()
	if err := c.Run(); err != nil {
		t.Fatalf("reference run: %v\n%s", err, c.Stderr)
	}
	d := time.Since(start)
	t.Logf("uninterrupted run: %v", d)

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	wd := filepath.Join(dir, "crashy")
	// Kill at random points of progress (after the k-th finished task plus
	// a random delay of up to 3ms, so kills also land inside blob and
	// journal writes); measuring progress instead of wall time keeps the
	// test independent of machine speed.
	const total = 49
	kills := 0
	for cycle := 0; cycle < 5; cycle++ {
		j, _ := os.ReadFile(filepath.Join(wd, "journal.jsonl"))
		remaining := total - bytes.Count(j, []byte("\n"))
		if remaining < 4 {
			break
		}
		k := 1 + rng.IntN(remaining/2)
		c := exec.Command(bin, "run", "--log-format", "json", "--workdir", wd, job)
		stdout, err := c.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		done := 0
		for done < k && sc.Scan() {
			if strings.Contains(sc.Text(), `"event":"done"`) {
				done++
			}
		}
		time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond)
		c.Process.Signal(syscall.SIGKILL)
		io.Copy(io.Discard, stdout)
		c.Wait()
		ws, ok := c.ProcessState.Sys().(syscall.WaitStatus)
		if !ok || !ws.Signaled() {
			t.Fatalf("cycle %d: run was not killed (exit %v)", cycle, c.ProcessState)
		}
		kills++
		j, _ = os.ReadFile(filepath.Join(wd, "journal.jsonl"))
		t.Logf("kill %d after %d done events: %d tasks journaled", kills, done, bytes.Count(j, []byte("\n")))
	}
	if kills < 2 {
		t.Fatalf("only %d kills", kills)
	}
	// Ctrl-C (SIGINT) mid-run stops cleanly: exit 1, "interrupted", no
	// temporary files left behind.
	{
		j, _ := os.ReadFile(filepath.Join(wd, "journal.jsonl"))
		if bytes.Count(j, []byte("\n")) < total-2 {
			c := exec.Command(bin, "run", "--log-format", "json", "--workdir", wd, job)
			var errb bytes.Buffer
			c.Stderr = &errb
			stdout, _ := c.StdoutPipe()
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				if strings.Contains(sc.Text(), `"event":"done"`) {
					break
				}
			}
			c.Process.Signal(os.Interrupt)
			io.Copy(io.Discard, stdout)
			err := c.Wait()
			if c.ProcessState.ExitCode() != 1 || !strings.Contains(errb.String(), "interrupted") {
				t.Errorf("SIGINT: %v, stderr %q", err, errb.String())
			}
			tree(t, wd) // fails on temporary files
		}
	}
	c = run(wd)
	if err := c.Run(); err != nil {
		t.Fatalf("resumed run: %v\n%s", err, c.Stderr)
	}
	events := c.Stdout.(*bytes.Buffer).String()
	t.Logf("after %d kills the resumed run skipped %d and ran %d tasks", kills, strings.Count(events, `"event":"skipped"`), strings.Count(events, `"event":"done"`))

	for _, sub := range []string{"out", "blobs"} {
		a, b := tree(t, filepath.Join(ref, sub)), tree(t, filepath.Join(wd, sub))
		if len(a) == 0 {
			t.Fatalf("reference %s is empty", sub)
		}
		if len(a) != len(b) {
			t.Errorf("%s: %d files vs %d after crashes", sub, len(a), len(b))
		}
		for name, data := range a {
			if !bytes.Equal(data, b[name]) {
				t.Errorf("%s/%s differs after crash and resume", sub, name)
			}
		}
	}
	// status agrees that everything is done
	var out bytes.Buffer
	st := exec.Command(bin, "status", "--workdir", wd, job)
	st.Stdout = &out
	if err := st.Run(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "49/49 tasks done") {
		t.Errorf("status after resume:\n%s", out.String())
	}
}

// tree maps relative paths to contents; temp files are an error.
func tree(t *testing.T, root string) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if strings.Contains(d.Name(), ".tmp-") {
			return fmt.Errorf("temporary file left: %s", p)
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(root, p)
		m[rel] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}
