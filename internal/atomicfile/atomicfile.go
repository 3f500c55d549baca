// Package atomicfile writes files atomically: data goes to a temporary file
// in the destination directory, which is fsynced, made world-readable and
// renamed over the destination, after which the directory is fsynced.
// Readers (and a resumed run) see either the old file or the complete new
// one, never a torn one.
//
// It is the one implementation behind pipeline.CreateAtomic and
// pipeline.WriteFileAtomic, the safetensors and GGUF writers, the native
// exporter, report and everything else that publishes files.
// It is hand-written because the standard library has no atomic writer and
// the few lines do not justify a dependency.
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// TempMarker is part of every temporary file name (".<base>.tmp-<random>");
// files containing it are leftovers of a killed writer and may be removed.
const TempMarker = ".tmp-"

// File is a file being written under a temporary name. Commit publishes it;
// Abort discards it.
type File struct {
	*os.File
	path string
	done bool
}

// Create starts writing path atomically. The directory must exist. Call
// Commit to publish or Abort to discard; Abort after Commit is a no-op, so
// `defer f.Abort()` is the idiom.
func Create(path string) (*File, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+TempMarker+"*")
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	return &File{File: f, path: path}, nil
}

// Path returns the destination path.
func (f *File) Path() string { return f.path }

// Commit fsyncs the data, closes the file, makes it mode 0644 (CreateTemp
// makes 0600; outputs are shared files), renames it into place and fsyncs
// the directory. On error the temporary file is removed.
func (f *File) Commit() error {
	if f.done {
		return fmt.Errorf("commit %s: already finished", f.path)
	}
	f.done = true
	tmp := f.File.Name()
	fail := func(op string, err error) error {
		os.Remove(tmp)
		return fmt.Errorf("%s %s: %w", op, f.path, err)
	}
	if err := f.File.Sync(); err != nil {
		f.File.Close()
		return fail("sync", err)
	}
	if err := f.File.Close(); err != nil {
		return fail("close", err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return fail("chmod", err)
	}
	if err := os.Rename(tmp, f.path); err != nil {
		return fail("rename", err)
	}
	return SyncDir(filepath.Dir(f.path))
}

// Abort closes and removes the temporary file unless Commit already ran.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.File.Close()
	os.Remove(f.File.Name())
}

// WriteFile writes data to path atomically (the atomic counterpart of
// os.WriteFile, with mode 0644), creating its directory (mode 0755) if it
// is missing. Packages below pipeline (exporters, report, synth) use it
// directly; pipeline.WriteFileAtomic is the same function for stages.
func WriteFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	f, err := Create(path)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Commit()
}

// SyncDir fsyncs a directory so that a rename in it is durable. File
// systems that cannot sync directories (EINVAL, ENOTSUP) are tolerated.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTSUP) && !errors.Is(err, errors.ErrUnsupported) {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}
