package arch

import (
	"context"
	"fmt"
	"testing"
)

// TestDecodeMatchesGolden feeds the golden input_ids through the KV-cached
// decode path in uneven chunks (a prompt, then one token at a time, then a
// block) and compares every position's logits with transformers' full
// prefill logits (same tolerance as TestGolden), for the GQA models.
func TestDecodeMatchesGolden(t *testing.T) {
	for _, name := range nanoModels {
		t.Run(name, func(t *testing.T) {
			m := loadNano(t, name)
			g := loadGoldenOut(t, name)
			c, err := m.NewCache(len(g.ids))
			if err != nil {
				t.Fatal(err)
			}
			V := m.Vocab()
			var got []float32
			chunks := []int{5, 1, 1, 1}
			for pos := 0; pos < len(g.ids); {
				n := len(g.ids) - pos
				if len(chunks) > 0 {
					n, chunks = min(n, chunks[0]), chunks[1:]
				}
				lg, err := m.Decode(context.Background(), c, g.ids[pos:pos+n])
				if err != nil {
					t.Fatal(err)
				}
				if len(lg) != n*V {
					t.Fatalf("decode returned %d logits for %d tokens", len(lg), n)
				}
				got = append(got, lg...)
				pos += n
			}
			if c.Len() != len(g.ids) {
				t.Fatalf("cache holds %d tokens, want %d", c.Len(), len(g.ids))
			}
			d, r := relErr(got, g.logits)
			t.Logf("decode logits: max|diff| %.3g, max|golden| %.3g", d, r)
			if !(d <= 1e-3*r) {
				t.Errorf("decode logits: max|diff| %.3g exceeds 1e-3 × %.3g", d, r)
			}
			// The cache is full: one more token is an error, not a panic.
			if _, err := m.Decode(context.Background(), c, g.ids[:1]); err == nil {
				t.Error("decoding past the cache capacity succeeded")
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	m := loadNano(t, "qwen3-nano")
	if _, err := m.NewCache(0); err == nil {
		t.Error("NewCache(0) succeeded")
	}
	c, err := m.NewCache(4)
	if err != nil {
		t.Fatal(err)
	}
	for i, ids := range [][]int32{nil, {int32(m.Vocab())}, {1, 2, 3, 4, 5}} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			if _, err := m.Decode(context.Background(), c, ids); err == nil {
				t.Errorf("Decode(%v) succeeded", ids)
			}
		})
	}
	if c.Len() != 0 {
		t.Errorf("failed decodes advanced the cache to %d", c.Len())
	}
	if _, err := m.Decode(context.Background(), nil, []int32{1}); err == nil {
		t.Error("nil cache accepted")
	}
}
