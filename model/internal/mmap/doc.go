// Package mmap maps model files into memory read-only from the file's point
// of view (copy-on-write), falling back to reading the file where mmap is
// not available. It is shared by the safetensors and GGUF readers.
package mmap
