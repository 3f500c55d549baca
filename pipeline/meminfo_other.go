//go:build !linux

package pipeline

// machineMemory is unknown outside Linux: tasks are checked against the
// budget only.
func machineMemory() int64 { return 0 }
