// Shared assembly fragments of the kernels' AVX routines.

// HSUM_Y0 adds the eight float32 lanes of Y0 into the low lane of X0
// (high half onto low half, then two horizontal adds) and clears the upper
// YMM state before returning to Go code.
#define HSUM_Y0 \
	VEXTRACTF128 $1, Y0, X1; VADDPS X1, X0, X0 \
	VHADDPS X0, X0, X0; VHADDPS X0, X0, X0 \
	VZEROUPPER
