package gptq

// Scale is one group's quantization parameters for one output row.
type Scale struct {
	// Mul is the dequantization multiplier: w ≈ Mul·(level(code) − Zero).
	Mul float64
	// Zero is the zero point in level units (0 for symmetric formats).
	Zero float64
	// Enc is the format's encoding of the scale (FP16 bits, E8M0 byte, E4M3
	// byte, ...), what a packer stores.
	Enc uint32
}

// ClipInvariant is implemented by grids whose Fit returns the same scale
// for every clip ratio below 1 (power-of-two scales search their own
// exponent neighbourhood instead of clipping): Quantize then tries one
// ratio below 1 instead of the whole list, with identical results.
type ClipInvariant interface {
	ClipInvariant() bool
}

// Grid is a number format as GPTQ sees it: groups of GroupSize consecutive
// input columns of one row share a Scale; Fit chooses the scale of a group
// from its values (clipped to clip·absmax, clip in (0,1]) and Round maps one
// value to a code and its dequantized value under that scale. A Grid is
// built per tensor (formats with a tensor-level scale, such as NVFP4, fix it
// from the original weights when the grid is built) and must be safe for
// concurrent use by Fit/Round (it is read-only).
type Grid interface {
	// GroupSize is the number of columns sharing a scale (0: whole row).
	GroupSize() int
	// Fit returns the scale for vals (one row's values of one group)
	// clipped at clip·absmax.
	Fit(vals []float64, clip float64) Scale
	// Round returns the code of v under s and its dequantized value.
	Round(v float64, s Scale) (code uint8, deq float64)
}
