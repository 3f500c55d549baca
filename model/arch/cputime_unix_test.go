//go:build unix

package arch

import "syscall"

// cpuSeconds is the CPU time (user + system) this process has used; with
// it benchmarks report throughput per CPU-second, which a machine shared
// with other jobs distorts less than wall time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}
