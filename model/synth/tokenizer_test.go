package synth

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/model/hfconfig"
	"github.com/marlin-llm/marlin/model/tokenizer"
)

// TestWriteTokenizer writes a small synthetic GLM with the bundled
// tokenizer and loads the directory as the calibrate stage does: config.json
// through hfconfig, tokenizer.json through model/tokenizer; every id the
// encoder produces on mixed text indexes the embedding.
func TestWriteTokenizer(t *testing.T) {
	dir := t.TempDir()
	cfg := GLM47Flash(64, 2)
	ts, err := GLMTensors(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Write(context.Background(), dir, cfg, ts, 1, 0); err != nil {
		t.Fatal(err)
	}
	maxID, err := WriteTokenizer(dir, "", cfg["vocab_size"].(int))
	if err != nil {
		t.Fatal(err)
	}
	hc, err := hfconfig.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if maxID >= hc.VocabSize {
		t.Fatalf("max id %d >= vocab_size %d", maxID, hc.VocabSize)
	}
	tok, err := tokenizer.Load(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != maxID+1 {
		t.Errorf("tokenizer VocabSize %d, max id %d", tok.VocabSize(), maxID)
	}
	ids, err := tok.Encode("The quick brown fox, 1234 — naïve café 日本語 <|endoftext|>\n\tx")
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) == 0 {
		t.Fatal("no tokens")
	}
	for _, id := range ids {
		if id < 0 || int(id) >= hc.VocabSize {
			t.Fatalf("id %d outside vocab_size %d", id, hc.VocabSize)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "tokenizer_config.json")); err != nil {
		t.Error(err)
	}
}

// TestWriteTokenizerTooLarge: a vocabulary the synthetic embedding cannot
// index is refused, and a -tokenizer directory is copied.
func TestWriteTokenizerTooLarge(t *testing.T) {
	dir := t.TempDir()
	if _, err := WriteTokenizer(dir, "", 1210); err == nil || !strings.Contains(err.Error(), "vocab_size 1210") {
		t.Fatalf("err = %v, want a vocab_size error", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "tokenizer.json")); !os.IsNotExist(err) {
		t.Fatalf("tokenizer.json written despite the error: %v", err)
	}
	src := t.TempDir()
	if _, err := WriteTokenizer(src, "", 4096); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(src, "tokenizer_config.json"))
	if _, err := WriteTokenizer(dir, src, 4096); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "tokenizer_config.json")); !os.IsNotExist(err) {
		t.Errorf("tokenizer_config.json: %v (src had none)", err)
	}
	if _, err := WriteTokenizer(dir, t.TempDir(), 4096); err == nil {
		t.Error("a directory without tokenizer.json was accepted")
	}
}
