package tokenizer

import "container/heap"

// merge is the result of merging a pair of token ids.
type merge struct {
	rank int32 // position in the merges list: lower merges first
	id   int32 // id of the merged token
}

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// symbol is one node of the doubly linked list of a word's current tokens.
type symbol struct {
	id         int32
	prev, next int32 // indices into the list, -1 at the ends
	len        int32 // 0 once merged into its left neighbour
}

// candidate is a possible merge of symbol pos with its right neighbour.
type candidate struct {
	pos, rank int32
	left      int32 // id of the left symbol when queued (staleness check)
	right     int32 // id of the right symbol when queued
}

type candHeap []candidate

func (h candHeap) Len() int { return len(h) }
func (h candHeap) Less(i, j int) bool {
	if h[i].rank != h[j].rank {
		return h[i].rank < h[j].rank
	}
	return h[i].pos < h[j].pos
}
func (h candHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *candHeap) Push(x any)   { *h = append(*h, x.(candidate)) }
func (h *candHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// bpeWord applies the merges to a word given as initial token ids, lowest
// rank first and leftmost first among equal ranks (as the Rust tokenizers
// library does), in O(n log n).
func (t *Tokenizer) bpeWord(ids []int32, dst []int32) []int32 {
	switch len(ids) {
	case 0:
		return dst
	case 1:
		return append(dst, ids[0])
	}
	syms := make([]symbol, len(ids))
	for i, id := range ids {
		syms[i] = symbol{id: id, prev: int32(i - 1), next: int32(i + 1), len: 1}
	}
	syms[len(ids)-1].next = -1
	h := make(candHeap, 0, len(ids))
	for i := 0; i+1 < len(ids); i++ {
		if m, ok := t.merges[pairKey(ids[i], ids[i+1])]; ok {
			h = append(h, candidate{pos: int32(i), rank: m.rank, left: ids[i], right: ids[i+1]})
		}
	}
	heap.Init(&h)
	for h.Len() > 0 {
		c := heap.Pop(&h).(candidate)
		s := &syms[c.pos]
		if s.len == 0 || s.next < 0 || s.id != c.left || syms[s.next].id != c.right {
			continue // stale
		}
		m := t.merges[pairKey(c.left, c.right)]
		right := &syms[s.next]
		s.id = m.id
		s.len += right.len
		right.len = 0
		s.next = right.next
		if s.next >= 0 {
			syms[s.next].prev = c.pos
		}
		if s.prev >= 0 {
			p := syms[s.prev]
			if pm, ok := t.merges[pairKey(p.id, s.id)]; ok {
				heap.Push(&h, candidate{pos: s.prev, rank: pm.rank, left: p.id, right: s.id})
			}
		}
		if s.next >= 0 {
			n := syms[s.next]
			if nm, ok := t.merges[pairKey(s.id, n.id)]; ok {
				heap.Push(&h, candidate{pos: c.pos, rank: nm.rank, left: s.id, right: n.id})
			}
		}
	}
	for i := int32(0); i >= 0; i = syms[i].next {
		dst = append(dst, syms[i].id)
	}
	return dst
}
