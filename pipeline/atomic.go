package pipeline

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/marlin-llm/marlin/internal/atomicfile"
)

// AtomicFile is a file written under a temporary name in its final
// directory and renamed into place by Commit, so readers (and a resumed
// run) see either the old file or the complete new one, never a torn one.
// It is internal/atomicfile's File; CreateAtomic also creates the directory.
type AtomicFile = atomicfile.File

// tempMarker is part of every temporary file name; files containing it are
// leftovers of a killed run and are removed when the store opens.
const tempMarker = atomicfile.TempMarker

// CreateAtomic starts writing path atomically (creating its directory).
// Call Commit to publish or Abort to discard; Abort after Commit is a no-op,
// so `defer f.Abort()` is the idiom.
func CreateAtomic(path string) (*AtomicFile, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	return atomicfile.Create(path)
}

// WriteFileAtomic writes data to path via a temporary file, fsync and
// rename (the atomic counterpart of os.WriteFile), creating its directory.
// Stages write final artifacts into TaskEnv.OutDir through
// TaskEnv.WriteArtifact, or with it (or CreateAtomic) on a path from
// TaskEnv.ArtifactPath, so that the file is recorded.
//
// It is internal/atomicfile.WriteFile, which packages below pipeline
// (exporters, report, model/synth) call directly so that they do not
// link the pipeline package.
func WriteFileAtomic(path string, data []byte) error {
	return atomicfile.WriteFile(path, data)
}

// HashFile returns the hex SHA-256 and size of a file.
func HashFile(path string) (digest string, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// ArtifactMetaPrefix prefixes Output.Meta keys that record final artifacts:
// "artifact:<path relative to OutDir>" = hex SHA-256 of the file. When a
// finished task is found in the journal on resume, the runner re-hashes its
// artifacts and re-runs the task if one is missing or differs; a task that
// exports a file therefore resumes correctly whether it was killed before
// the rename, after it, or the file was later deleted.
const ArtifactMetaPrefix = "artifact:"

// AddArtifact records the file outDir/rel (already written, e.g. with
// WriteFileAtomic) as a final artifact of this output. TaskEnv.WriteArtifact
// and ArtifactPath record files without it.
func (o *Output) AddArtifact(outDir, rel string) error {
	if filepath.IsAbs(rel) || strings.HasPrefix(filepath.Clean(rel), "..") {
		return fmt.Errorf("artifact %q: must be relative to the output directory", rel)
	}
	digest, _, err := HashFile(filepath.Join(outDir, rel))
	if err != nil {
		return fmt.Errorf("artifact %q: %w", rel, err)
	}
	if o.Meta == nil {
		o.Meta = map[string]string{}
	}
	o.Meta[ArtifactMetaPrefix+filepath.ToSlash(rel)] = digest
	return nil
}

// Artifacts returns the artifacts recorded in o (path → digest).
func (o *Output) Artifacts() map[string]string {
	out := map[string]string{}
	for k, v := range o.Meta {
		if rel, ok := strings.CutPrefix(k, ArtifactMetaPrefix); ok {
			out[rel] = v
		}
	}
	return out
}
