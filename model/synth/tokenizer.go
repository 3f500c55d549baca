package synth

import (
	"embed"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/marlin-llm/marlin/internal/atomicfile"
	"github.com/marlin-llm/marlin/model/tokenizer"
)

// The bundled tokenizer is demo/qwen3-nano's: a byte-level BPE tokenizer
// (Qwen2 pre-tokenizer, 2045 BPE tokens + 3 special tokens, ids < 2048)
// trained on WikiText-2 and Tiny Shakespeare. It lets a synthetic checkpoint
// run the jobs that tokenize text (calibrate, validate) and the GGUF export,
// which stores the vocabulary. Its ids say nothing about GLM's real
// tokenizer; only the vocabulary size matters (every id must index the
// embedding).
//
//go:embed tokenizer/tokenizer.json tokenizer/tokenizer_config.json
var bundled embed.FS

// TokenizerFiles are the files WriteTokenizer writes (the second is
// optional when copying from a directory).
var TokenizerFiles = []string{"tokenizer.json", "tokenizer_config.json"}

// WriteTokenizer writes a tokenizer next to a synthetic checkpoint in dir:
// the bundled one when src is "", else tokenizer.json (required) and
// tokenizer_config.json (when present) copied from the directory src. It
// fails when the tokenizer can produce an id >= vocabSize (the rows of the
// synthetic embedding and lm_head), or when model/tokenizer cannot load it.
// It returns the largest id the tokenizer can produce.
func WriteTokenizer(dir, src string, vocabSize int) (int, error) {
	files := map[string][]byte{}
	for _, f := range TokenizerFiles {
		var b []byte
		var err error
		if src == "" {
			b, err = bundled.ReadFile("tokenizer/" + f)
		} else {
			b, err = os.ReadFile(filepath.Join(src, f))
			if err != nil && os.IsNotExist(err) && f != "tokenizer.json" {
				continue
			}
		}
		if err != nil {
			return 0, fmt.Errorf("synth: tokenizer: %w", err)
		}
		files[f] = b
	}
	maxID, err := TokenizerMaxID(files["tokenizer.json"])
	if err != nil {
		return 0, err
	}
	if maxID >= vocabSize {
		from := "the bundled tokenizer"
		if src != "" {
			from = filepath.Join(src, "tokenizer.json")
		}
		return 0, fmt.Errorf("synth: %s has token ids up to %d, not below the synthetic vocab_size %d (use a smaller -width-div, or a tokenizer with a smaller vocabulary)", from, maxID, vocabSize)
	}
	if _, err := tokenizer.Parse(files["tokenizer.json"]); err != nil {
		return 0, fmt.Errorf("synth: %w", err)
	}
	for _, f := range TokenizerFiles {
		if b, ok := files[f]; ok {
			if err := atomicfile.WriteFile(filepath.Join(dir, f), b); err != nil {
				return 0, fmt.Errorf("synth: %w", err)
			}
		}
	}
	return maxID, nil
}

// TokenizerMaxID is the largest id of a tokenizer.json's BPE vocabulary and
// added tokens: the largest id its encoder can produce.
func TokenizerMaxID(tokenizerJSON []byte) (int, error) {
	var tj struct {
		AddedTokens []struct {
			ID int `json:"id"`
		} `json:"added_tokens"`
		Model struct {
			Vocab map[string]int `json:"vocab"`
		} `json:"model"`
	}
	if err := json.Unmarshal(tokenizerJSON, &tj); err != nil {
		return 0, fmt.Errorf("synth: tokenizer.json: %w", err)
	}
	if len(tj.Model.Vocab) == 0 {
		return 0, fmt.Errorf("synth: tokenizer.json has no model.vocab")
	}
	m := -1
	for _, id := range tj.Model.Vocab {
		m = max(m, id)
	}
	for _, a := range tj.AddedTokens {
		m = max(m, a.ID)
	}
	return m, nil
}
