package llamacpp

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/marlin-llm/marlin/model/gguf"
)

// llama.cpp token types (enum llama_token_type / gguf-py TokenType).
const (
	tokenNormal      int32 = 1
	tokenControl     int32 = 3
	tokenUserDefined int32 = 4
	tokenUnused      int32 = 5
)

// Known pre-tokenizer split patterns and llama.cpp's name for each
// (tokenizer.ggml.pre). llama.cpp's converter identifies the pre-tokenizer
// by hashing the tokenizer's output on a probe text; we identify it by the
// regex itself, which is what determines that output for byte-level BPE.
var preTokenizers = map[string]string{
	// Qwen2 / Qwen3 / GLM-4.7 nano.
	`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`: "qwen2",
	// Llama 3.
	`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`: "llama-bpe",
}

// tokenizerJSON is the part of tokenizer.json the GGUF vocabulary needs.
type tokenizerJSON struct {
	AddedTokens []struct {
		ID         int    `json:"id"`
		Content    string `json:"content"`
		Special    bool   `json:"special"`
		Normalized bool   `json:"normalized"`
	} `json:"added_tokens"`
	PreTokenizer json.RawMessage `json:"pre_tokenizer"`
	Model        struct {
		Type   string            `json:"type"`
		Vocab  map[string]int    `json:"vocab"`
		Merges []json.RawMessage `json:"merges"`
	} `json:"model"`
}

// Vocab is a tokenizer as llama.cpp's GGUF metadata stores it.
type Vocab struct {
	Model  string   // tokenizer.ggml.model ("gpt2")
	Pre    string   // tokenizer.ggml.pre ("qwen2")
	Tokens []string // one per id, padded to the model's vocabulary size
	Types  []int32  // llama token types
	Merges []string // "left right"
	// Special holds the special token ids in the order they are written
	// (tokenizer.ggml.<key>_token_id).
	Special []SpecialID
	// AddBOS / AddEOS are tokenizer_config.json's add_bos_token /
	// add_eos_token when present.
	AddBOS, AddEOS *bool
	// ChatTemplate is tokenizer_config.json's chat_template, if any.
	ChatTemplate string
}

// SpecialID is one special token id key ("eos", "padding", "bos", "eot",
// "unknown", "eom", ...).
type SpecialID struct {
	Key string
	ID  uint32
}

// LoadVocab reads tokenizer.json and tokenizer_config.json from dir for a
// model of vocabSize rows. cfgBOS/cfgEOS are config.json's bos/eos token ids
// (nil when absent). preOverride, when not empty, names the pre-tokenizer
// instead of recognising it from the split regex.
func LoadVocab(dir string, vocabSize int, cfgBOS *int, cfgEOS []int, modelType, preOverride string) (*Vocab, error) {
	b, err := os.ReadFile(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		return nil, fmt.Errorf("llamacpp: tokenizer: %w", err)
	}
	cb, err := os.ReadFile(filepath.Join(dir, "tokenizer_config.json"))
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("llamacpp: %w", err)
	}
	return ParseVocab(b, cb, vocabSize, cfgBOS, cfgEOS, modelType, preOverride)
}

// ParseVocab is LoadVocab on the bytes of tokenizer.json and
// tokenizer_config.json (nil when absent).
func ParseVocab(b, cb []byte, vocabSize int, cfgBOS *int, cfgEOS []int, modelType, preOverride string) (*Vocab, error) {
	var err error
	var tj tokenizerJSON
	if err := json.Unmarshal(b, &tj); err != nil {
		return nil, fmt.Errorf("llamacpp: tokenizer.json: %w", err)
	}
	if tj.Model.Type != "BPE" {
		return nil, fmt.Errorf("llamacpp: tokenizer.json model type %q: only byte-level BPE is supported", tj.Model.Type)
	}
	var tc map[string]any
	if cb != nil {
		if err := json.Unmarshal(cb, &tc); err != nil {
			return nil, fmt.Errorf("llamacpp: tokenizer_config.json: %w", err)
		}
	}

	v := &Vocab{Model: "gpt2"}
	if preOverride != "" {
		v.Pre = preOverride
	} else if v.Pre, err = recognisePre(tj.PreTokenizer); err != nil {
		return nil, err
	}

	// Reverse vocabulary: BPE entries then added tokens.
	n := vocabSize
	for _, id := range tj.Model.Vocab {
		if id >= n {
			n = id + 1
		}
	}
	for _, a := range tj.AddedTokens {
		if a.ID >= n {
			n = a.ID + 1
		}
	}
	if n > 1<<24 {
		return nil, fmt.Errorf("llamacpp: tokenizer has ids up to %d", n)
	}
	v.Tokens = make([]string, n)
	v.Types = make([]int32, n)
	set := make([]bool, n)
	for tok, id := range tj.Model.Vocab {
		if id < 0 {
			return nil, fmt.Errorf("llamacpp: tokenizer.json: negative id %d for %q", id, tok)
		}
		v.Tokens[id], v.Types[id], set[id] = tok, tokenNormal, true
	}
	for _, a := range tj.AddedTokens {
		if a.ID < 0 {
			return nil, fmt.Errorf("llamacpp: tokenizer.json: negative added id %d", a.ID)
		}
		typ := tokenUserDefined
		if a.Special || looksSpecial(a.Content) {
			typ = tokenControl
		}
		v.Tokens[a.ID], v.Types[a.ID], set[a.ID] = a.Content, typ, true
	}
	for i := range v.Tokens {
		if !set[i] {
			v.Tokens[i], v.Types[i] = fmt.Sprintf("[PAD%d]", i), tokenUnused
		}
	}
	for i, m := range tj.Model.Merges {
		var s string
		if err := json.Unmarshal(m, &s); err == nil {
			v.Merges = append(v.Merges, s)
			continue
		}
		var pair []string
		if err := json.Unmarshal(m, &pair); err != nil || len(pair) != 2 {
			return nil, fmt.Errorf("llamacpp: tokenizer.json: merge %d is neither \"a b\" nor [a, b]", i)
		}
		v.Merges = append(v.Merges, pair[0]+" "+pair[1])
	}

	// Special ids, in gguf-py SpecialVocab's order: tokenizer_config's
	// named tokens, then config.json's ids, then architecture extras.
	lookup := func(tok string) (int, bool) {
		for _, a := range tj.AddedTokens {
			if a.Content == tok {
				return a.ID, true
			}
		}
		id, ok := tj.Model.Vocab[tok]
		return id, ok
	}
	add := func(key string, id int) {
		if id < 0 || id >= n {
			return
		}
		for _, s := range v.Special {
			if s.Key == key {
				return
			}
		}
		v.Special = append(v.Special, SpecialID{key, uint32(id)})
	}
	for _, typ := range []struct{ cfg, key string }{{"bos", "bos"}, {"eos", "eos"}, {"unk", "unknown"}, {"sep", "seperator"}, {"pad", "padding"}, {"cls", "cls"}, {"mask", "mask"}} {
		if s := tokenString(tc[typ.cfg+"_token"]); s != "" {
			if id, ok := lookup(s); ok {
				add(typ.key, id)
			}
		}
	}
	if cfgBOS != nil {
		add("bos", *cfgBOS)
	}
	if len(cfgEOS) > 0 {
		add("eos", cfgEOS[0])
	}
	if modelType == "glm4_moe_lite" || modelType == "glm4_moe" {
		// GLM's chat format: <|user|> ends a turn, <|observation|> a tool
		// message; llama.cpp's converter sets these for the GLM family.
		for _, x := range []struct{ key, tok string }{{"eot", "<|user|>"}, {"unknown", "<|endoftext|>"}, {"eom", "<|observation|>"}} {
			if id, ok := lookup(x.tok); ok {
				add(x.key, id)
			}
		}
	}
	if b, ok := tc["add_bos_token"].(bool); ok {
		v.AddBOS = &b
	}
	if b, ok := tc["add_eos_token"].(bool); ok {
		v.AddEOS = &b
	}
	if s, ok := tc["chat_template"].(string); ok {
		v.ChatTemplate = s
	}
	return v, nil
}

// tokenString reads a tokenizer_config token entry: a string or an
// AddedToken object with "content".
func tokenString(x any) string {
	switch t := x.(type) {
	case string:
		return t
	case map[string]any:
		s, _ := t["content"].(string)
		return s
	}
	return ""
}

// looksSpecial is gguf-py's does_token_look_special.
func looksSpecial(s string) bool {
	switch s {
	case "<pad>", "<mask>", "<2mass>", "[@BOS@]":
		return true
	}
	return strings.HasPrefix(s, "<|") && strings.HasSuffix(s, "|>") ||
		strings.HasPrefix(s, "<｜") && strings.HasSuffix(s, "｜>") ||
		strings.HasPrefix(s, "<unused") && strings.HasSuffix(s, ">")
}

// recognisePre names the pre-tokenizer from tokenizer.json's Split regex.
func recognisePre(raw json.RawMessage) (string, error) {
	var pt struct {
		Type          string `json:"type"`
		Pretokenizers []struct {
			Type    string `json:"type"`
			Pattern struct {
				Regex string `json:"Regex"`
			} `json:"pattern"`
		} `json:"pretokenizers"`
	}
	if len(raw) == 0 || string(raw) == "null" {
		return "", fmt.Errorf("llamacpp: tokenizer.json has no pre_tokenizer; set tokenizer_pre")
	}
	if err := json.Unmarshal(raw, &pt); err != nil {
		return "", fmt.Errorf("llamacpp: tokenizer.json pre_tokenizer: %w", err)
	}
	for _, p := range pt.Pretokenizers {
		if p.Type == "Split" {
			if name, ok := preTokenizers[p.Pattern.Regex]; ok {
				return name, nil
			}
			return "", fmt.Errorf("llamacpp: unrecognised pre-tokenizer regex %q; set tokenizer_pre to llama.cpp's name for it", p.Pattern.Regex)
		}
	}
	return "", fmt.Errorf("llamacpp: tokenizer.json pre_tokenizer has no Split regex; set tokenizer_pre")
}

// KVs returns the tokenizer metadata in gguf-py's order.
func (v *Vocab) KVs() []gguf.KV {
	kv := []gguf.KV{
		str("tokenizer.ggml.model", v.Model),
		str("tokenizer.ggml.pre", v.Pre),
		{Key: "tokenizer.ggml.tokens", Value: gguf.Value{Type: gguf.ValueArray, Elem: gguf.ValueString, V: v.Tokens}},
		{Key: "tokenizer.ggml.token_type", Value: gguf.Value{Type: gguf.ValueArray, Elem: gguf.ValueInt32, V: v.Types}},
		{Key: "tokenizer.ggml.merges", Value: gguf.Value{Type: gguf.ValueArray, Elem: gguf.ValueString, V: v.Merges}},
	}
	for _, s := range v.Special {
		kv = append(kv, u32("tokenizer.ggml."+s.Key+"_token_id", s.ID))
	}
	if v.AddBOS != nil {
		kv = append(kv, boolean("tokenizer.ggml.add_bos_token", *v.AddBOS))
	}
	if v.AddEOS != nil {
		kv = append(kv, boolean("tokenizer.ggml.add_eos_token", *v.AddEOS))
	}
	if v.ChatTemplate != "" {
		kv = append(kv, str("tokenizer.chat_template", v.ChatTemplate))
	}
	return kv
}

func str(k, s string) gguf.KV {
	return gguf.KV{Key: k, Value: gguf.Value{Type: gguf.ValueString, V: s}}
}
func u32(k string, x uint32) gguf.KV {
	return gguf.KV{Key: k, Value: gguf.Value{Type: gguf.ValueUint32, V: x}}
}
func f32(k string, x float32) gguf.KV {
	return gguf.KV{Key: k, Value: gguf.Value{Type: gguf.ValueFloat32, V: x}}
}
func boolean(k string, b bool) gguf.KV {
	return gguf.KV{Key: k, Value: gguf.Value{Type: gguf.ValueBool, V: b}}
}
