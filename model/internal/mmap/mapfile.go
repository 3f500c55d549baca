package mmap

import (
	"fmt"
	"os"
)

// MapFile opens path, checks that it is a regular file and maps all of it
// with Map. The descriptor is closed before returning; the mapping stays
// valid until unmap is called. Errors name the path.
func MapFile(path string) (data []byte, unmap func() error, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%s is not a regular file", path)
	}
	data, unmap, err = Map(f, st.Size())
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return data, unmap, nil
}
