package arch

import (
	"context"
	"fmt"
	"slices"
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

// TestDecodeMatchesForward decodes a sequence longer than a RoPE table
// block in uneven chunks (a prompt, single tokens, a block), twice on one
// cache (Reset in between, so the second pass reuses the scratch buffers
// and RoPE tables), and checks that both passes return bit-identical
// logits, that later calls leave earlier logits alone, and that the logits
// match Forward on the whole sequence.
func TestDecodeMatchesForward(t *testing.T) {
	const L = 80
	for _, name := range nanoModels {
		t.Run(name, func(t *testing.T) {
			m := loadNano(t, name)
			V := m.Vocab()
			ids := make([]int32, L)
			for i := range ids {
				ids[i] = int32((i*131 + 7) % V)
			}
			ctx := context.Background()
			want, err := m.Forward(ctx, ids, Batch{Seqs: 1, Len: L}, nil)
			if err != nil {
				t.Fatal(err)
			}
			c, err := m.NewCache(L + 3)
			if err != nil {
				t.Fatal(err)
			}
			var passes [2][]float32
			for p := range passes {
				c.Reset()
				var outs, copies [][]float32
				for pos := 0; pos < L; {
					n := 1
					switch {
					case pos == 0:
						n = 7
					case pos >= 70:
						n = L - pos
					}
					lg, err := m.Decode(ctx, c, ids[pos:pos+n])
					if err != nil {
						t.Fatal(err)
					}
					if len(lg) != n*V {
						t.Fatalf("decode returned %d logits for %d tokens", len(lg), n)
					}
					outs = append(outs, lg)
					copies = append(copies, append([]float32(nil), lg...))
					pos += n
				}
				for i := range outs {
					if !slices.Equal(outs[i], copies[i]) {
						t.Fatalf("pass %d: logits of call %d changed by later calls", p, i)
					}
					passes[p] = append(passes[p], outs[i]...)
				}
			}
			if !slices.Equal(passes[0], passes[1]) {
				t.Error("decoding the sequence again after Reset gave different logits")
			}
			d, r := relErr(passes[0], want)
			t.Logf("decode vs forward: max|diff| %.3g, max|logit| %.3g", d, r)
			if !(d <= 1e-4*r) {
				t.Errorf("decode vs forward: max|diff| %.3g exceeds 1e-4 × %.3g", d, r)
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

// BenchmarkDecodeStep times single-token KV-cached decode steps on
// qwen3-nano (F32 weights) after a one-token prefill; the cache is reset
// and re-prefilled every 128 tokens outside the timer.
func BenchmarkDecodeStep(b *testing.B) {
	m := loadNano(b, "qwen3-nano")
	const window = 128
	c, err := m.NewCache(window)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	id := func(i int) []int32 { return []int32{int32((i*37 + 11) % m.Vocab())} }
	prefill := func() {
		c.Reset()
		if _, err := m.Decode(ctx, c, id(0)); err != nil {
			b.Fatal(err)
		}
	}
	prefill()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if c.Len() == c.Cap() {
			b.StopTimer()
			prefill()
			b.StartTimer()
		}
		if _, err := m.Decode(ctx, c, id(i+1)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tok/s")
}
