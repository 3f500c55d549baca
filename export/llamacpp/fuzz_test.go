package llamacpp

import "testing"

// FuzzLoadVocab feeds arbitrary tokenizer.json / tokenizer_config.json
// bytes to the vocabulary loader: it must return a Vocab or an error,
// never panic or allocate without bound.
func FuzzLoadVocab(f *testing.F) {
	f.Add([]byte(`{"added_tokens":[{"id":3,"content":"<|x|>","special":true}],"pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}}]},"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]}}`),
		[]byte(`{"eos_token":"<|x|>","add_bos_token":false}`))
	f.Add([]byte(`{"model":{"type":"BPE","vocab":{"a":99999999},"merges":[["a","b"],["c"]]}}`), []byte(`{}`))
	f.Add([]byte(`{"model":{"type":"BPE","vocab":{"a":-1}}}`), []byte(`null`))
	f.Fuzz(func(t *testing.T, tok, cfg []byte) {
		bos := 1
		v, err := ParseVocab(tok, cfg, 8, &bos, []int{2}, "glm4_moe_lite", "")
		if err != nil {
			return
		}
		if len(v.Tokens) != len(v.Types) || len(v.Tokens) < 8 {
			t.Fatalf("%d tokens, %d types", len(v.Tokens), len(v.Types))
		}
		_ = v.KVs()
	})
}
