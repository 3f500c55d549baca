//go:build !unix

package kernels

// processCPU is unavailable here: the GB/cpu-s metric is left out.
func processCPU() (float64, bool) { return 0, false }
