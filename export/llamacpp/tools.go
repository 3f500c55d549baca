package llamacpp

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
)

var pplRe = regexp.MustCompile(`Final estimate: PPL = ([0-9.]+)`)

// Perplexity runs llama.cpp's llama-perplexity (from binDir) on a GGUF file
// and a text file with windows of ctxLen tokens (-c), the first chunks
// windows, threads threads, and returns its final estimate. This build's
// asynchronous logger occasionally loses its last lines at exit, so the
// log also goes to a file and a run without an estimate is retried twice.
func Perplexity(ctx context.Context, binDir, model, text string, ctxLen, chunks, threads int) (float64, error) {
	tmp, err := os.MkdirTemp("", "llama-ppl-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(tmp)
	var out []byte
	for attempt := 0; attempt < 3; attempt++ {
		logFile := filepath.Join(tmp, fmt.Sprintf("ppl-%d.log", attempt))
		outFile := filepath.Join(tmp, fmt.Sprintf("out-%d.log", attempt))
		f, err := os.Create(outFile)
		if err != nil {
			return 0, err
		}
		cmd := exec.CommandContext(ctx, filepath.Join(binDir, "llama-perplexity"), "-m", model, "-f", text,
			"-c", strconv.Itoa(ctxLen), "--chunks", strconv.Itoa(chunks), "-t", strconv.Itoa(threads), "--log-file", logFile)
		cmd.Stdout, cmd.Stderr = f, f
		runErr := cmd.Run()
		f.Close()
		out, _ = os.ReadFile(outFile)
		if runErr != nil {
			return 0, fmt.Errorf("llama-perplexity %s: %w\n%s", model, runErr, tailBytes(out))
		}
		if lf, err := os.ReadFile(logFile); err == nil {
			out = append(out, lf...)
		}
		if m := pplRe.FindSubmatch(out); m != nil {
			return strconv.ParseFloat(string(m[1]), 64)
		}
	}
	return 0, fmt.Errorf("llama-perplexity %s: no estimate in output\n%s", model, tailBytes(out))
}

func tailBytes(b []byte) string {
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}
