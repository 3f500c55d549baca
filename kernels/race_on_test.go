//go:build race

package kernels

// raceEnabled shrinks the slowest test tables under the race detector,
// whose instrumentation makes the naive references ~10x slower.
const raceEnabled = true
