package pipeline

import "os"

// machineMemory reads MemTotal from /proc/meminfo (0 when unreadable).
func machineMemory() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	n, err := parseMemTotal(f)
	if err != nil {
		return 0
	}
	return n
}
