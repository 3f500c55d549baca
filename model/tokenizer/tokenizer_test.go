package tokenizer

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"os"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/marlin-llm/marlin/internal/assets"
	"golang.org/x/text/unicode/norm"
)

type golden struct {
	Strings []struct {
		Text    string  `json:"text"`
		IDs     []int32 `json:"ids"`
		Decoded string  `json:"decoded"`
	} `json:"strings"`
	Valid struct {
		Tokens   int     `json:"tokens"`
		SHA256   string  `json:"ids_sha256_int32le"`
		First256 []int32 `json:"first_256"`
	} `json:"valid"`
}

func loadGolden(t testing.TB) (*Tokenizer, *golden) {
	t.Helper()
	dir := assets.Shared(t, "tokenizer")
	tok, err := Load(dir + "/tokenizer.json")
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	assets.ReadJSON(t, dir+"/golden.json", &g)
	return tok, &g
}

func TestGoldenStrings(t *testing.T) {
	tok, g := loadGolden(t)
	if len(g.Strings) < 30 {
		t.Fatalf("golden has only %d strings", len(g.Strings))
	}
	for _, s := range g.Strings {
		ids, err := tok.Encode(s.Text)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ids, s.IDs) && !(len(ids) == 0 && len(s.IDs) == 0) {
			t.Errorf("Encode(%q)\n got %v\nwant %v", s.Text, ids, s.IDs)
		}
		dec, err := tok.Decode(s.IDs)
		if err != nil {
			t.Fatal(err)
		}
		if dec != s.Decoded {
			t.Errorf("Decode(%v) = %q, want %q", s.IDs, dec, s.Decoded)
		}
	}
}

func TestGoldenValid(t *testing.T) {
	tok, g := loadGolden(t)
	text, err := os.ReadFile(assets.Shared(t, "corpus", "valid.txt"))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := tok.Encode(string(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != g.Valid.Tokens {
		t.Errorf("valid.txt: %d tokens, want %d", len(ids), g.Valid.Tokens)
	}
	if !slices.Equal(ids[:256], g.Valid.First256) {
		t.Errorf("first 256 ids differ:\n got %v\nwant %v", ids[:256], g.Valid.First256)
	}
	buf := make([]byte, 4*len(ids))
	for i, id := range ids {
		binary.LittleEndian.PutUint32(buf[4*i:], uint32(id))
	}
	sum := sha256.Sum256(buf)
	if got := hex.EncodeToString(sum[:]); got != g.Valid.SHA256 {
		t.Errorf("sha256 of ids = %s, want %s", got, g.Valid.SHA256)
	}
	dec, err := tok.Decode(ids)
	if err != nil {
		t.Fatal(err)
	}
	if want := norm.NFC.String(string(text)); dec != want {
		t.Errorf("decode(encode(valid.txt)) differs from the NFC text")
	}
}

// TestOtherModelTokenizers checks that the GLM tokenizer (same BPE, GLM
// special tokens) loads and treats its own specials atomically.
func TestOtherModelTokenizers(t *testing.T) {
	tok, err := Load(assets.Model(t, "glm47-nano") + "/tokenizer.json")
	if err != nil {
		t.Fatal(err)
	}
	ids, err := tok.Encode("[gMASK]<sop><|user|>\nhi<|assistant|>")
	if err != nil {
		t.Fatal(err)
	}
	want := []int32{2047, 2049, 2052}
	if !slices.Equal(ids[:3], want) || ids[len(ids)-1] != 2053 {
		t.Errorf("GLM specials: got %v", ids)
	}
	if s, _ := tok.Decode(ids); s != "[gMASK]<sop><|user|>\nhi<|assistant|>" {
		t.Errorf("GLM decode: %q", s)
	}
	if s, _ := tok.DecodeSkipSpecial(ids); s != "\nhi" {
		t.Errorf("GLM decode skipping specials: %q", s)
	}
}

var splitCases = []string{
	"", " ", "  ", "\n", "\r\n", "\t\t x", "Hello world", " Hello  world ",
	"hello\n\nworld\n", "I'M HERE, you're there; they'LL go. We'd", "'", "''s", "x'",
	"12345 + 6.78e-9 = 0x1F", "   \n\n   \n", " \u00a0x", "a\u3000\u3000b", "?!\r\n\r\nx",
	" ?!\n", "   ", "a  ", "\u00a0", "\r", " \r \r x", "don't", "'Ve'LL'D'S",
	"emoji 😀👍🏽 family 👨\u200d👩\u200d👧", "tabs\tand\vvertical\fform feed",
	"中文分词测试，标点符号。", "x\u0301y", "\u0085x", " \u0085x", "\xff\xfe x",
}

// regexPieces splits with regexp2 running the original pattern.
func regexPieces(t testing.TB, s string) []string {
	rs, err := newRegexSplitter(qwen2Pattern)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	if err := rs.split(s, func(p string) { out = append(out, p) }); err != nil {
		t.Fatal(err)
	}
	return out
}

func handPieces(s string) []string {
	var out []string
	_ = qwen2Splitter{}.split(s, func(p string) { out = append(out, p) })
	return out
}

func TestSplitMatchesRegexp2(t *testing.T) {
	_, g := loadGolden(t)
	cases := slices.Clone(splitCases)
	for _, s := range g.Strings {
		cases = append(cases, s.Text)
	}
	for _, s := range cases {
		s = strings.ToValidUTF8(s, "\uFFFD")
		if got, want := handPieces(s), regexPieces(t, s); !slices.Equal(got, want) {
			t.Errorf("split(%q)\n got %q\nwant %q", s, got, want)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	tok, _ := loadGolden(t)
	for _, s := range append(slices.Clone(splitCases), strings.Repeat("ab ", 5000), strings.Repeat("a", 20000)) {
		if !utf8.ValidString(s) {
			continue
		}
		ids, err := tok.Encode(s)
		if err != nil {
			t.Fatal(err)
		}
		dec, err := tok.Decode(ids)
		if err != nil {
			t.Fatal(err)
		}
		if want := norm.NFC.String(s); dec != want {
			t.Errorf("round trip of %q gave %q", s, dec)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	tok, _ := loadGolden(t)
	for _, ids := range [][]int32{{-1}, {1 << 20}, {2100}} {
		if _, err := tok.Decode(ids); err == nil {
			t.Errorf("Decode(%v): no error", ids)
		}
	}
	// A lone continuation byte (token 'Ĭ' = 0x80... ) decodes to U+FFFD like Rust's from_utf8_lossy.
	id := tok.byteID[0x80]
	if s, _ := tok.Decode([]int32{id, tok.byteID['a']}); s != "\uFFFDa" {
		t.Errorf("lossy decode: %q", s)
	}
}

func TestLossyUTF8(t *testing.T) {
	cases := []struct{ in, want string }{
		{"abc", "abc"},
		{"\xe2\x82", "\ufffd"},
		{"\xe2\x82a", "\ufffda"},
		{"\x80\x80", "\ufffd\ufffd"},
		{"\xf0\x9f\x98", "\ufffd"},
		{"\xed\xa0\x80", "\ufffd\ufffd\ufffd"}, // surrogate: E D then A0 is out of range
		{"\xc0\xaf", "\ufffd\ufffd"},
		{"\xf4\x90\x80\x80", "\ufffd\ufffd\ufffd\ufffd"},
	}
	for _, c := range cases {
		if got := lossyUTF8([]byte(c.in)); got != c.want {
			t.Errorf("lossyUTF8(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	good, err := os.ReadFile(assets.Shared(t, "tokenizer", "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"not json":     `{`,
		"wordpiece":    `{"model":{"type":"WordPiece","vocab":{"a":0}}}`,
		"empty vocab":  `{"model":{"type":"BPE","vocab":{}}}`,
		"negative id":  `{"model":{"type":"BPE","vocab":{"a":-1}},"pre_tokenizer":{"type":"ByteLevel"}}`,
		"bad merge":    `{"model":{"type":"BPE","vocab":{"a":0},"merges":["a b"]},"pre_tokenizer":{"type":"ByteLevel"}}`,
		"no pretok":    `{"model":{"type":"BPE","vocab":{"a":0}}}`,
		"bad regex":    `{"model":{"type":"BPE","vocab":{"a":0}},"pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"("},"behavior":"Isolated"},{"type":"ByteLevel","use_regex":false}]}}`,
		"dup id":       `{"model":{"type":"BPE","vocab":{"a":0,"b":0}},"pre_tokenizer":{"type":"ByteLevel"}}`,
		"normalizer":   `{"normalizer":{"type":"Lowercase"},"model":{"type":"BPE","vocab":{"a":0}},"pre_tokenizer":{"type":"ByteLevel"}}`,
		"byte fallbck": `{"model":{"type":"BPE","vocab":{"a":0},"byte_fallback":true},"pre_tokenizer":{"type":"ByteLevel"}}`,
	}
	for name, in := range cases {
		if _, err := Parse([]byte(in)); err == nil {
			t.Errorf("%s: Parse succeeded", name)
		}
	}
	if _, err := Parse(good); err != nil {
		t.Fatal(err)
	}
}

func FuzzSplit(f *testing.F) {
	for _, s := range splitCases {
		f.Add(s)
	}
	rs, err := newRegexSplitter(qwen2Pattern)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		s = strings.ToValidUTF8(s, "\uFFFD")
		if strings.ContainsRune(s, 'ſ') { // Unicode case folding: regexp2 differs from Rust here
			return
		}
		var want []string
		if err := rs.split(s, func(p string) { want = append(want, p) }); err != nil {
			t.Fatal(err)
		}
		if got := handPieces(s); !slices.Equal(got, want) {
			t.Errorf("split(%q)\n got %q\nwant %q", s, got, want)
		}
	})
}

func FuzzEncode(f *testing.F) {
	data, err := os.ReadFile(assets.Shared(f, "tokenizer", "tokenizer.json"))
	if err != nil {
		f.Fatal(err)
	}
	tok, err := Parse(data)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range splitCases {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ids, err := tok.Encode(s)
		if err != nil {
			t.Fatal(err)
		}
		dec, err := tok.Decode(ids)
		if err != nil {
			t.Fatal(err)
		}
		want := norm.NFC.String(strings.ToValidUTF8(s, "\uFFFD"))
		if dec != want && utf8.ValidString(s) {
			t.Errorf("round trip of %q gave %q", s, dec)
		}
	})
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]},"pre_tokenizer":{"type":"ByteLevel"}}`))
	f.Add([]byte(`{"added_tokens":[{"id":3,"content":"<s>","special":true}],"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":[["a","b"]]},"pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"\\s+"},"behavior":"Isolated"},{"type":"ByteLevel","use_regex":false}]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := Parse(data)
		if err != nil {
			return
		}
		ids, err := tok.Encode("ab <s> ab")
		if err != nil {
			return
		}
		_, _ = tok.Decode(ids)
	})
}

func BenchmarkEncodeValid(b *testing.B) {
	tok, _ := loadGolden(b)
	text, err := os.ReadFile(assets.Shared(b, "corpus", "valid.txt"))
	if err != nil {
		b.Fatal(err)
	}
	s := string(text)
	b.SetBytes(int64(len(s)))
	b.ResetTimer()
	cpu0 := cpuSeconds()
	for b.Loop() {
		tok.mu.Lock()
		clear(tok.cache) // measure cold-cache encoding of the whole file each time
		tok.mu.Unlock()
		if _, err := tok.Encode(s); err != nil {
			b.Fatal(err)
		}
	}
	if cpu := cpuSeconds() - cpu0; cpu > 0 {
		b.ReportMetric(float64(len(s))*float64(b.N)/cpu/1e6, "MB/cpu-s")
	}
}

func BenchmarkSplit(b *testing.B) {
	text, err := os.ReadFile(assets.Shared(b, "corpus", "valid.txt"))
	if err != nil {
		b.Fatal(err)
	}
	s := string(text[:100000])
	rs, err := newRegexSplitter(qwen2Pattern)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		sp   splitter
	}{{"hand", qwen2Splitter{}}, {"regexp2", rs}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(s)))
			for b.Loop() {
				n := 0
				_ = c.sp.split(s, func(string) { n++ })
			}
		})
	}
}

func TestParseRejectsSparseIDs(t *testing.T) {
	// Two entries, one with id 2^24: accepted ids, but the id tables would
	// take hundreds of MB; Parse must refuse instead of allocating.
	const js = `{"model":{"type":"BPE","vocab":{"a":0,"b":16777216},"merges":[]}}`
	if _, err := Parse([]byte(js)); err == nil || !strings.Contains(err.Error(), "far beyond") {
		t.Fatalf("Parse = %v, want a sparse-id error", err)
	}
}
