package pipeline

import "testing"

func TestMachineMemoryLinux(t *testing.T) {
	if m := MachineMemory(); m < 1<<20 {
		t.Errorf("MachineMemory() = %d on Linux, want MemTotal of /proc/meminfo", m)
	}
}
