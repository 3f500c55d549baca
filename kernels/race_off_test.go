//go:build !race

package kernels

// raceEnabled shrinks the slowest test tables under the race detector.
const raceEnabled = false
