package tokenizer

import (
	"fmt"
	"unicode"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
)

// qwen2Pattern is the split regex of Qwen2/Qwen3/GLM-4 tokenizers (also
// cl100k's shape with single digits). splitQwen2 implements it by hand.
const qwen2Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`

// gpt2Pattern is what a ByteLevel pre-tokenizer with use_regex splits on.
const gpt2Pattern = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`

// splitter cuts normalized text into pre-tokens; fn receives consecutive
// pieces covering s.
type splitter interface {
	split(s string, fn func(piece string)) error
}

// regexSplitter is the generic Split pre-tokenizer with "Isolated"
// behaviour: matches and the gaps between them both become pieces. It uses
// regexp2 because the patterns need lookahead, which Go's regexp lacks.
type regexSplitter struct{ re *regexp2.Regexp }

func newRegexSplitter(pattern string) (*regexSplitter, error) {
	re, err := regexp2.Compile(pattern, regexp2.Unicode)
	if err != nil {
		// regexp2.Unicode rejects some .NET-only syntax; retry in plain mode.
		re, err = regexp2.Compile(pattern, regexp2.None)
		if err != nil {
			return nil, fmt.Errorf("compile split regex %q: %w", pattern, err)
		}
	}
	return &regexSplitter{re: re}, nil
}

func (rs *regexSplitter) split(s string, fn func(string)) error {
	if s == "" {
		return nil
	}
	// regexp2 works on runes; keep a rune→byte offset table.
	runes := []rune(s)
	off := make([]int, len(runes)+1)
	b := 0
	for i, r := range runes {
		off[i] = b
		b += utf8.RuneLen(r)
	}
	off[len(runes)] = b
	last := 0
	m, err := rs.re.FindRunesMatch(runes)
	for ; m != nil && err == nil; m, err = rs.re.FindNextMatch(m) {
		if m.Index > last {
			fn(s[off[last]:off[m.Index]])
		}
		if m.Length > 0 {
			fn(s[off[m.Index]:off[m.Index+m.Length]])
		}
		last = m.Index + m.Length
	}
	if err != nil {
		return fmt.Errorf("split regex: %w", err)
	}
	if last < len(runes) {
		fn(s[off[last]:])
	}
	return nil
}

// qwen2Splitter is a hand-written equivalent of qwen2Pattern: a single
// forward scan with ASCII fast paths, over 20× faster than the backtracking
// regexp2 engine (see BenchmarkSplit). The tests check it
// against regexp2 on the goldens and by fuzzing.
type qwen2Splitter struct{}

func (qwen2Splitter) split(s string, fn func(string)) error {
	for i := 0; i < len(s); {
		n := matchQwen2(s, i)
		fn(s[i : i+n])
		i += n
	}
	return nil
}

// Character classes of the ASCII range, precomputed.
const (
	clsLetter = 1 << iota
	clsNumber
	clsSpace
)

var asciiClass = func() (t [128]uint8) {
	for c := 0; c < 128; c++ {
		r := rune(c)
		switch {
		case unicode.IsLetter(r):
			t[c] = clsLetter
		case unicode.IsNumber(r):
			t[c] = clsNumber
		case unicode.IsSpace(r):
			t[c] = clsSpace
		}
	}
	return t
}()

func class(r rune) uint8 {
	if r < 128 {
		return asciiClass[r]
	}
	switch {
	case unicode.IsLetter(r):
		return clsLetter
	case unicode.IsNumber(r):
		return clsNumber
	case unicode.IsSpace(r):
		return clsSpace
	}
	return 0
}

func decodeAt(s string, i int) (rune, int) {
	if c := s[i]; c < utf8.RuneSelf {
		return rune(c), 1
	}
	return utf8.DecodeRuneInString(s[i:])
}

// matchQwen2 returns the length in bytes (≥1) of the qwen2Pattern match that
// starts at s[i], trying the alternatives in order as a backtracking engine
// would.
func matchQwen2(s string, i int) int {
	r, w := decodeAt(s, i)
	c := class(r)
	// 1. (?i:'s|'t|'re|'ve|'m|'ll|'d)
	if r == '\'' {
		if n := contraction(s[i+1:]); n > 0 {
			return 1 + n
		}
	}
	// 2. [^\r\n\p{L}\p{N}]?\p{L}+
	if c == clsLetter {
		return letterRunEnd(s, i) - i
	}
	if c != clsNumber && r != '\r' && r != '\n' && i+w < len(s) {
		if r2, _ := decodeAt(s, i+w); class(r2) == clsLetter {
			return letterRunEnd(s, i+w) - i
		}
	}
	// 3. \p{N}
	if c == clsNumber {
		return w
	}
	// 4. ` ?[^\s\p{L}\p{N}]+[\r\n]*`
	j := i
	if r == ' ' {
		j++
	}
	if k := punctRunEnd(s, j); k > j {
		for k < len(s) && (s[k] == '\r' || s[k] == '\n') {
			k++
		}
		return k - i
	}
	if c != clsSpace {
		return w // not reachable for valid text: every rune is matched above
	}
	// Whitespace run [i, end) and the start of its last rune.
	end, lastCRLF, lastStart := i, -1, i
	for end < len(s) {
		r2, w2 := decodeAt(s, end)
		if class(r2) != clsSpace {
			break
		}
		if r2 == '\r' || r2 == '\n' {
			lastCRLF = end
		}
		lastStart = end
		end += w2
	}
	// 5. \s*[\r\n]+
	if lastCRLF >= 0 {
		return lastCRLF + 1 - i
	}
	// 6. \s+(?!\S): the whole run at the end of text, else all but its last rune.
	if end == len(s) {
		return end - i
	}
	if lastStart > i {
		return lastStart - i
	}
	// 7. \s+
	return end - i
}

func letterRunEnd(s string, i int) int {
	for i < len(s) {
		r, w := decodeAt(s, i)
		if class(r) != clsLetter {
			break
		}
		i += w
	}
	return i
}

// punctRunEnd is the end of the [^\s\p{L}\p{N}]+ run starting at i.
func punctRunEnd(s string, i int) int {
	for i < len(s) {
		r, w := decodeAt(s, i)
		if class(r) != 0 {
			break
		}
		i += w
	}
	return i
}

// contraction matches s|t|re|ve|m|ll|d case-insensitively at the start of s
// (after the apostrophe) and returns its length, or 0. Like Rust's regex and
// Oniguruma, case folding maps U+017F (long s) to s.
func contraction(s string) int {
	if s == "" {
		return 0
	}
	lower := func(b byte) byte { return b | 0x20 }
	switch lower(s[0]) {
	case 's', 't', 'm', 'd':
		return 1
	case 'r', 'v':
		if len(s) > 1 && lower(s[1]) == 'e' {
			return 2
		}
	case 'l':
		if len(s) > 1 && lower(s[1]) == 'l' {
			return 2
		}
	}
	if len(s) >= 2 && s[0] == 0xC5 && s[1] == 0xBF { // ſ
		return 2
	}
	return 0
}
