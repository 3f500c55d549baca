package mmap

import (
	"os"
	"path/filepath"
	"testing"
)

func TestMapFile(t *testing.T) {
	dir := t.TempDir()
	full := filepath.Join(dir, "f")
	if err := os.WriteFile(full, []byte("GGUF and more"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		want string
		ok   bool
	}{
		{full, "GGUF and more", true},
		{empty, "", true},
		{dir, "", false},
		{filepath.Join(dir, "missing"), "", false},
	} {
		data, unmap, err := MapFile(c.path)
		if (err == nil) != c.ok {
			t.Errorf("MapFile(%s): err = %v, want ok=%v", c.path, err, c.ok)
			continue
		}
		if err != nil {
			continue
		}
		if string(data) != c.want {
			t.Errorf("MapFile(%s) = %q, want %q", c.path, data, c.want)
		}
		if err := unmap(); err != nil {
			t.Errorf("unmap: %v", err)
		}
	}
}
