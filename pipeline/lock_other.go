//go:build !unix

package pipeline

import (
	"fmt"
	"os"
	"strconv"
)

// workdirLock on non-unix systems is an O_EXCL lock file holding the pid.
// A lock left by a killed process must be removed by hand (the error says
// so); marlin's supported platforms (Linux, macOS) use flock instead.
type workdirLock struct{ path string }

func lockWorkdir(path string) (*workdirLock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		b, _ := os.ReadFile(path)
		return nil, fmt.Errorf("workdir is locked by pid %s (%s); remove the file if that process is gone", string(b), path)
	}
	f.WriteString(strconv.Itoa(os.Getpid()))
	f.Close()
	return &workdirLock{path: path}, nil
}

func (l *workdirLock) unlock() error {
	if l == nil {
		return nil
	}
	return os.Remove(l.path)
}
