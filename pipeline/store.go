package pipeline

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/marlin-llm/marlin/internal/atomicfile"
	"github.com/marlin-llm/marlin/tensor"
	"github.com/marlin-llm/marlin/tensor/arrowio"
)

// FormatVersion is part of every task identity; bump it when the blob
// layout or the meaning of stored outputs changes so old checkpoints are
// not reused.
const FormatVersion = 1

// Workdir layout.
const (
	journalName = "journal.jsonl"
	lockName    = "lock"
	blobDirName = "blobs"
	outDirName  = "out"
)

// JournalEntry records one finished task. The journal is append-only JSON
// lines, fsynced after each record.
type JournalEntry struct {
	// ID is the task identity hash (see TaskID); blobs are named by it.
	ID    string `json:"id"`
	Stage string `json:"stage"`
	Key   string `json:"key"`
	// Digest is the hex SHA-256 of the blob's bytes, Size its length.
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
	// Artifacts are final files in the output directory (path → SHA-256).
	Artifacts map[string]string `json:"artifacts,omitempty"`
	// ArtifactStats are the artifacts' sizes and modification times when
	// recorded (status compares them; run re-hashes).
	ArtifactStats map[string]FileStat `json:"artifact_stats,omitempty"`
	// Stats are the output's run measurements (Output.Stats).
	Stats   map[string]float64 `json:"stats,omitempty"`
	Seconds float64            `json:"seconds"`
	Time    time.Time          `json:"time"`
}

// StoreOptions tune OpenStore.
type StoreOptions struct {
	// Fresh discards the journal and blobs (start over).
	Fresh bool
	// ReadOnly opens without taking the lock or writing (status).
	ReadOnly bool
}

// Store is a workdir's checkpoint store: content-addressed Arrow IPC blobs
// under blobs/, the journal of finished tasks, the output directory out/,
// and the lock that keeps two runs out of one workdir.
type Store struct {
	dir      string
	readOnly bool
	lock     *workdirLock

	mu      sync.Mutex
	journal *os.File
	entries map[string]JournalEntry
	// Dropped counts journal lines that could not be parsed.
	dropped int
}

// OpenStore opens (creating if needed) the store in workdir. Unless
// ReadOnly it takes the workdir lock, removes temporary files left by a
// killed run and truncates a torn last journal line.
func OpenStore(workdir string, opts StoreOptions) (*Store, error) {
	s := &Store{dir: workdir, readOnly: opts.ReadOnly, entries: map[string]JournalEntry{}}
	if opts.ReadOnly {
		if err := s.readJournal(); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return s, nil
	}
	if err := os.MkdirAll(workdir, 0o755); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	lk, err := lockWorkdir(filepath.Join(workdir, lockName))
	if err != nil {
		return nil, err
	}
	s.lock = lk
	fail := func(err error) (*Store, error) {
		s.Close()
		return nil, err
	}
	if opts.Fresh {
		if err := os.Remove(s.journalPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fail(fmt.Errorf("open store: %w", err))
		}
		if err := os.RemoveAll(filepath.Join(workdir, blobDirName)); err != nil {
			return fail(fmt.Errorf("open store: %w", err))
		}
	}
	for _, d := range []string{blobDirName, outDirName} {
		if err := os.MkdirAll(filepath.Join(workdir, d), 0o755); err != nil {
			return fail(fmt.Errorf("open store: %w", err))
		}
		if err := removeTemps(filepath.Join(workdir, d)); err != nil {
			return fail(err)
		}
	}
	if err := s.readJournal(); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fail(err)
	}
	f, err := os.OpenFile(s.journalPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fail(fmt.Errorf("open journal: %w", err))
	}
	s.journal = f
	if err := atomicfile.SyncDir(workdir); err != nil {
		return fail(err)
	}
	return s, nil
}

// removeTemps deletes leftovers of interrupted atomic writes below dir.
func removeTemps(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasPrefix(d.Name(), ".") && strings.Contains(d.Name(), tempMarker) {
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("remove stale temp file: %w", err)
			}
		}
		return nil
	})
}

func (s *Store) journalPath() string { return filepath.Join(s.dir, journalName) }

// Dir is the workdir.
func (s *Store) Dir() string { return s.dir }

// OutDir is the directory for final artifacts.
func (s *Store) OutDir() string { return filepath.Join(s.dir, outDirName) }

// HasJournal reports whether earlier runs recorded finished tasks.
func (s *Store) HasJournal() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries) > 0
}

// readJournal loads the journal. A torn last line (a run killed while
// appending) is cut off when the store is writable; other unparsable lines
// are skipped (their tasks are recomputed).
func (s *Store) readJournal() error {
	data, err := os.ReadFile(s.journalPath())
	if err != nil {
		return err
	}
	good := 0
	for off := 0; off < len(data); {
		nl := bytes.IndexByte(data[off:], '\n')
		if nl < 0 {
			break // torn tail
		}
		line := data[off : off+nl]
		off += nl + 1
		good = off
		var e JournalEntry
		if err := json.Unmarshal(line, &e); err != nil || e.ID == "" || e.Digest == "" {
			s.dropped++
			continue
		}
		s.entries[e.ID] = e
	}
	if good < len(data) && !s.readOnly {
		if err := os.Truncate(s.journalPath(), int64(good)); err != nil {
			return fmt.Errorf("truncate torn journal: %w", err)
		}
	}
	return nil
}

// Lookup returns the journal entry of a task identity.
func (s *Store) Lookup(id string) (JournalEntry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[id]
	return e, ok
}

// Entries returns all journal entries, sorted by stage and key.
func (s *Store) Entries() []JournalEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]JournalEntry, 0, len(s.entries))
	for _, e := range s.entries {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Stage != out[j].Stage {
			return out[i].Stage < out[j].Stage
		}
		return out[i].Key < out[j].Key
	})
	return out
}

// BlobPath is where the blob of a task identity lives.
func (s *Store) BlobPath(id string) string {
	p := id
	if len(p) > 2 {
		p = filepath.Join(id[:2], id)
	}
	return filepath.Join(s.dir, blobDirName, p+".arrow")
}

// Verify re-hashes an entry's blob and artifacts and reports the first
// mismatch (missing, truncated or altered file; an artifact replaced by a
// symbolic link or anything but a regular file).
func (s *Store) Verify(e JournalEntry) error {
	digest, size, err := HashFile(s.BlobPath(e.ID))
	if err != nil {
		return fmt.Errorf("blob %s: %w", e.ID[:min(12, len(e.ID))], err)
	}
	if size != e.Size || digest != e.Digest {
		return fmt.Errorf("blob %s: digest mismatch (size %d, journal says %d)", e.ID[:min(12, len(e.ID))], size, e.Size)
	}
	for rel, want := range e.Artifacts {
		path := filepath.Join(s.OutDir(), filepath.FromSlash(rel))
		if _, err := checkArtifactFile(path); err != nil {
			return fmt.Errorf("artifact %s: %w", rel, err)
		}
		got, _, err := HashFile(path)
		if err != nil {
			return fmt.Errorf("artifact %s: %w", rel, err)
		}
		if got != want {
			return fmt.Errorf("artifact %s: digest mismatch", rel)
		}
	}
	return nil
}

// HasBlob reports whether the blob of e is present (a transient output's
// blob is deleted once its consumers are done; see Task.Transient).
func (s *Store) HasBlob(e JournalEntry) bool {
	_, err := os.Stat(s.BlobPath(e.ID))
	return err == nil
}

// DropBlob deletes the blob of e, keeping its journal record (a transient
// output all of whose consumers are done). A missing blob is no error.
func (s *Store) DropBlob(e JournalEntry) error {
	if s.readOnly {
		return errors.New("store is read-only")
	}
	if err := os.Remove(s.BlobPath(e.ID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("drop %s/%s: %w", e.Stage, e.Key, err)
	}
	return nil
}

// hashWriter tees writes into a SHA-256 and counts them.
type hashWriter struct {
	w io.Writer
	h hashState
	n int64
}

type hashState interface {
	io.Writer
	Sum([]byte) []byte
}

func (h *hashWriter) Write(b []byte) (int, error) {
	n, err := h.w.Write(b)
	h.h.Write(b[:n])
	h.n += int64(n)
	return n, err
}

// Put stores a task's output as an Arrow IPC blob (temp file, fsync,
// rename) and appends its journal record (fsync). The returned entry
// carries the blob digest that downstream task identities use.
func (s *Store) Put(id string, ref TaskRef, out *Output, seconds float64) (JournalEntry, error) {
	if s.readOnly {
		return JournalEntry{}, errors.New("store is read-only")
	}
	if out == nil {
		out = &Output{}
	}
	path := s.BlobPath(id)
	f, err := CreateAtomic(path)
	if err != nil {
		return JournalEntry{}, fmt.Errorf("store %s: %w", ref, err)
	}
	defer f.Abort()
	bw := bufio.NewWriterSize(f, 1<<20)
	hw := &hashWriter{w: bw, h: sha256.New()}
	ts, err := toRefs(out.Tensors)
	if err != nil {
		return JournalEntry{}, fmt.Errorf("store %s: %w", ref, err)
	}
	if err := arrowio.Write(hw, ts, out.Meta); err != nil {
		return JournalEntry{}, fmt.Errorf("store %s: %w", ref, err)
	}
	if err := bw.Flush(); err != nil {
		return JournalEntry{}, fmt.Errorf("store %s: %w", ref, err)
	}
	if err := f.Commit(); err != nil {
		return JournalEntry{}, fmt.Errorf("store %s: %w", ref, err)
	}
	e := JournalEntry{
		ID: id, Stage: ref.Stage, Key: ref.Key,
		Digest: hex.EncodeToString(hw.h.Sum(nil)), Size: hw.n,
		Seconds: seconds, Time: time.Now().UTC().Truncate(time.Millisecond),
	}
	if a := out.Artifacts(); len(a) > 0 {
		e.Artifacts = a
		if e.ArtifactStats, err = statArtifacts(s.OutDir(), a); err != nil {
			return JournalEntry{}, fmt.Errorf("store %s: %w", ref, err)
		}
	}
	if len(out.Stats) > 0 {
		e.Stats = out.Stats
	}
	line, err := json.Marshal(e)
	if err != nil {
		return JournalEntry{}, fmt.Errorf("store %s: %w", ref, err)
	}
	line = append(line, '\n')
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.journal.Write(line); err != nil {
		return JournalEntry{}, fmt.Errorf("journal %s: %w", ref, err)
	}
	if err := s.journal.Sync(); err != nil {
		return JournalEntry{}, fmt.Errorf("journal %s: %w", ref, err)
	}
	s.entries[id] = e
	return e, nil
}

// Get reads the blob of an entry: one read of the file into memory, then
// arrowio.ReadBytes decodes it without copying (the tensors' Data are
// slices of that buffer and stay valid after the call).
func (s *Store) Get(e JournalEntry) (*Output, error) {
	data, err := os.ReadFile(s.BlobPath(e.ID))
	if err != nil {
		return nil, fmt.Errorf("load %s/%s: %w", e.Stage, e.Key, err)
	}
	ts, meta, err := arrowio.ReadBytes(data)
	if err != nil {
		return nil, fmt.Errorf("load %s/%s: %w", e.Stage, e.Key, err)
	}
	if err := fromRefs(ts); err != nil {
		return nil, fmt.Errorf("load %s/%s: %w", e.Stage, e.Key, err)
	}
	return &Output{Tensors: ts, Meta: meta, Stats: e.Stats}, nil
}

// Compact keeps only the journal entries and blobs whose task identities
// are in keep: the journal is rewritten atomically, then unreferenced blobs
// (stale outputs of changed configs, leftovers of other jobs) are deleted.
// With dryRun it only reports what it would remove.
func (s *Store) Compact(keep map[string]bool, dryRun bool) (removed int, freed int64, err error) {
	if s.readOnly {
		return 0, 0, errors.New("compact: store is read-only")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var blobs []string
	err = filepath.WalkDir(filepath.Join(s.dir, blobDirName), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		id := strings.TrimSuffix(d.Name(), ".arrow")
		if !keep[id] {
			blobs = append(blobs, p)
			if fi, err := d.Info(); err == nil {
				freed += fi.Size()
			}
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("compact: %w", err)
	}
	if dryRun {
		return len(blobs), freed, nil
	}
	var buf bytes.Buffer
	kept := map[string]JournalEntry{}
	for _, e := range s.entries {
		if keep[e.ID] {
			kept[e.ID] = e
		}
	}
	ids := make([]string, 0, len(kept))
	for id := range kept {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		line, err := json.Marshal(kept[id])
		if err != nil {
			return 0, 0, fmt.Errorf("compact: %w", err)
		}
		buf.Write(line)
		buf.WriteByte('\n')
	}
	if err := WriteFileAtomic(s.journalPath(), buf.Bytes()); err != nil {
		return 0, 0, fmt.Errorf("compact: %w", err)
	}
	s.journal.Close()
	f, err := os.OpenFile(s.journalPath(), os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.journal = nil
		return 0, 0, fmt.Errorf("compact: reopen journal: %w", err)
	}
	s.journal = f
	s.entries = kept
	for _, p := range blobs {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return removed, freed, fmt.Errorf("compact: %w", err)
		}
		removed++
	}
	return removed, freed, nil
}

// Close releases the journal and the lock.
func (s *Store) Close() error {
	var err error
	if s.journal != nil {
		err = s.journal.Close()
		s.journal = nil
	}
	if s.lock != nil {
		if e := s.lock.unlock(); err == nil {
			err = e
		}
		s.lock = nil
	}
	return err
}

// TaskID computes a task's identity hash from everything its output depends
// on: stage kind and its Version, canonical config JSON, task key, Meta,
// Fingerprint, the digests of its inputs (in Needs order) and
// FormatVersion. Fields are length-prefixed so no two different tuples
// hash the same input.
func TaskID(kind Kind, configJSON []byte, t *Task, inputDigests []string) string {
	h := sha256.New()
	field := func(s string) {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	field(fmt.Sprintf("marlin-task/%d", FormatVersion))
	if kind.Version == 0 {
		field(kind.Name) // the identities of version 0 predate Version
	} else {
		field(kind.Name + "@" + strconv.Itoa(kind.Version))
	}
	field(string(configJSON))
	field(t.Key)
	field(strconv.Itoa(len(t.Meta)))
	for _, k := range tensor.SortedMetaKeys(t.Meta) {
		field(k)
		field(t.Meta[k])
	}
	field(t.Fingerprint)
	field(strconv.Itoa(len(inputDigests)))
	for _, d := range inputDigests {
		field(d)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// artifactsUnchanged reports whether e's artifacts look as recorded
// without re-hashing them: regular files of the recorded size and
// modification time (entries written before ArtifactStats existed are
// re-hashed).
func (s *Store) artifactsUnchanged(e JournalEntry) bool {
	for rel, want := range e.Artifacts {
		path := filepath.Join(s.OutDir(), filepath.FromSlash(rel))
		fi, err := checkArtifactFile(path)
		if err != nil {
			return false
		}
		if st, ok := e.ArtifactStats[rel]; ok {
			if fi.Size() != st.Size || fi.ModTime().UnixNano() != st.ModTime {
				return false
			}
			continue
		}
		if got, _, err := HashFile(path); err != nil || got != want {
			return false
		}
	}
	return true
}
