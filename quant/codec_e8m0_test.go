package quant

import (
	"math"
	"testing"
)

// TestDecodeE8M0EqualsLdexp checks the bit-built scales against 2^(code-127)
// computed by math.Ldexp for every non-NaN code.
func TestDecodeE8M0EqualsLdexp(t *testing.T) {
	for c := 0; c < 255; c++ {
		want := float32(math.Ldexp(1, c-127))
		if got := DecodeE8M0(uint8(c)); math.Float32bits(got) != math.Float32bits(want) {
			t.Fatalf("%d: %g want %g", c, got, want)
		}
	}
}
