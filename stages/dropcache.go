package stages

import (
	"crypto/sha256"
	"encoding/hex"
)

// copyDropping returns a copy of view (a tensor's bytes in a read-only file
// mapping) and drops the mapped pages behind the copy every few MiB, so a
// large tensor never holds its mapped pages and its whole copy in memory
// at once: the load task's peak is about one copy, as its EstBytes says.
func copyDropping(view []byte) []byte {
	const chunk = 8 << 20
	out := make([]byte, len(view))
	for off := 0; off < len(view); off += chunk {
		end := min(off+chunk, len(view))
		copy(out[off:end], view[off:end])
		dropPages(view[off:end])
	}
	dropPages(view) // the pages that straddle chunk boundaries
	return out
}

// hashDropping returns the hex SHA-256 of view (a read-only file mapping),
// dropping the mapped pages behind the hash every few MiB as copyDropping
// does.
func hashDropping(view []byte) string {
	const chunk = 8 << 20
	h := sha256.New()
	for off := 0; off < len(view); off += chunk {
		end := min(off+chunk, len(view))
		h.Write(view[off:end])
		dropPages(view[off:end])
	}
	dropPages(view)
	return hex.EncodeToString(h.Sum(nil))
}
