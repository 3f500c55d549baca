package pipeline

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// This file is how tasks write final files into the output directory:
// every file a task writes through TaskEnv.WriteArtifact or ArtifactPath
// is recorded as an artifact of the task's output (path and
// SHA-256 in the journal). A resumed run re-hashes them and re-runs the
// task when one is missing, altered or replaced by another run of the job
// with other settings; `status` compares their size and modification time.
// A stage therefore cannot forget to track a file it exports.

// CheckOutPath checks a config path naming a file or directory inside the
// run's output directory: relative, not escaping it, and not the output
// directory itself ("", ".", "a/.."). Stage configs call it from Validate
// for their `out:`-like fields.
func CheckOutPath(p string) error {
	if strings.TrimSpace(p) == "" {
		return errors.New("required")
	}
	if filepath.IsAbs(p) || filepath.IsAbs(filepath.FromSlash(p)) {
		return fmt.Errorf("must be a relative path inside the output directory, got %q", p)
	}
	c := filepath.Clean(filepath.FromSlash(p))
	if c == "." {
		return fmt.Errorf("%q names the output directory itself: name a file or directory inside it", p)
	}
	if c == ".." || strings.HasPrefix(c, ".."+string(filepath.Separator)) {
		return fmt.Errorf("must be a relative path inside the output directory, got %q", p)
	}
	return nil
}

// SafeOutPath returns outDir/rel for writing, after checking rel with
// CheckOutPath and walking the directories between outDir and the file:
// missing ones are created, and one that is a symbolic link (or not a
// directory) is an error, so a write never follows a link out of the
// workdir. The file itself may be an existing symbolic link: atomic writes
// rename over the link, replacing it, and never write through it.
func SafeOutPath(outDir, rel string) (string, error) {
	if err := CheckOutPath(rel); err != nil {
		return "", fmt.Errorf("output %q: %w", rel, err)
	}
	parts := strings.Split(filepath.Clean(filepath.FromSlash(rel)), string(filepath.Separator))
	dir := outDir
	for _, p := range parts[:len(parts)-1] {
		dir = filepath.Join(dir, p)
		fi, err := os.Lstat(dir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return "", fmt.Errorf("output %q: %w", rel, err)
			}
			// a concurrent task may have created it: check what is there
			if fi, err = os.Lstat(dir); err != nil {
				return "", fmt.Errorf("output %q: %w", rel, err)
			}
		case err != nil:
			return "", fmt.Errorf("output %q: %w", rel, err)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return "", fmt.Errorf("output %q: %s is a symbolic link; marlin does not write through links out of the workdir (remove it)", rel, dir)
		}
		if !fi.IsDir() {
			return "", fmt.Errorf("output %q: %s is not a directory", rel, dir)
		}
	}
	path := filepath.Join(dir, parts[len(parts)-1])
	if fi, err := os.Lstat(path); err == nil && fi.IsDir() {
		return "", fmt.Errorf("output %q: %s is a directory", rel, path)
	}
	return path, nil
}

// ArtifactPath returns the path of the output file rel (relative to OutDir)
// for the task to write atomically (WriteFileAtomic, CreateAtomic or a
// writer built on them), checked and prepared by SafeOutPath. The runner
// records the file as an artifact of the task's output when Run returns:
// it is an error for the file not to exist then.
func (e *TaskEnv) ArtifactPath(rel string) (string, error) {
	p, err := SafeOutPath(e.OutDir, rel)
	if err != nil {
		return "", err
	}
	e.record(rel, "")
	return p, nil
}

// ArtifactDir is ArtifactPath for a directory of files the task writes
// (each recorded with ArtifactPath or WriteArtifact): it returns
// OutDir/rel, created, with no symbolic link on the way. The directory
// itself is not recorded.
func (e *TaskEnv) ArtifactDir(rel string) (string, error) {
	p, err := SafeOutPath(e.OutDir, filepath.Join(rel, "_"))
	if err != nil {
		return "", err
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("output %q: %w", rel, err)
	}
	if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("output %q: %s is not a directory (%v)", rel, dir, err)
	}
	return dir, nil
}

// WriteArtifact writes data to the output file rel atomically and records
// it as an artifact of the task's output.
func (e *TaskEnv) WriteArtifact(rel string, data []byte) error {
	p, err := SafeOutPath(e.OutDir, rel)
	if err != nil {
		return err
	}
	if err := WriteFileAtomic(p, data); err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	e.record(rel, hex.EncodeToString(sum[:]))
	return nil
}

// record notes an artifact; digest "" means: hash the file when the task
// finishes.
func (e *TaskEnv) record(rel, digest string) {
	e.artMu.Lock()
	defer e.artMu.Unlock()
	if e.artifacts == nil {
		e.artifacts = map[string]string{}
	}
	e.artifacts[filepath.ToSlash(filepath.Clean(filepath.FromSlash(rel)))] = digest
}

// recordArtifacts adds the artifacts the task wrote through e to out.Meta,
// hashing those written through ArtifactPath. Artifacts the task recorded
// itself with Output.AddArtifact are kept.
func (e *TaskEnv) recordArtifacts(out *Output) error {
	e.artMu.Lock()
	defer e.artMu.Unlock()
	if len(e.artifacts) == 0 {
		return nil
	}
	rels := make([]string, 0, len(e.artifacts))
	for rel := range e.artifacts {
		rels = append(rels, rel)
	}
	sort.Strings(rels)
	if out.Meta == nil {
		out.Meta = map[string]string{}
	}
	for _, rel := range rels {
		if _, done := out.Meta[ArtifactMetaPrefix+rel]; done {
			continue
		}
		d := e.artifacts[rel]
		if d == "" {
			got, _, err := HashFile(filepath.Join(e.OutDir, filepath.FromSlash(rel)))
			if err != nil {
				return fmt.Errorf("artifact %s: %w", rel, err)
			}
			d = got
		}
		out.Meta[ArtifactMetaPrefix+rel] = d
	}
	return nil
}

// FileStat is an artifact's size and modification time when it was
// recorded: `status` compares them instead of re-hashing (a rewrite
// renames a new file into place, which changes the time).
type FileStat struct {
	Size    int64 `json:"size"`
	ModTime int64 `json:"mtime_ns"`
}

// statArtifacts returns the FileStat of each artifact in out.
func statArtifacts(outDir string, arts map[string]string) (map[string]FileStat, error) {
	if len(arts) == 0 {
		return nil, nil
	}
	st := make(map[string]FileStat, len(arts))
	for rel := range arts {
		fi, err := os.Lstat(filepath.Join(outDir, filepath.FromSlash(rel)))
		if err != nil {
			return nil, fmt.Errorf("artifact %s: %w", rel, err)
		}
		st[rel] = FileStat{Size: fi.Size(), ModTime: fi.ModTime().UnixNano()}
	}
	return st, nil
}

// checkArtifactFile reports whether the artifact at path is a regular file
// (not a link to one elsewhere).
func checkArtifactFile(path string) (fs.FileInfo, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s)", path, fi.Mode().Type())
	}
	return fi, nil
}
