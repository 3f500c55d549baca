package metal

import (
	"fmt"

	"github.com/marlin-llm/marlin/kernels"
)

func init() {
	kernels.Register("metal", func(o kernels.Options) (kernels.Backend, error) { return Open(o) })
}

// Open opens the default Metal device, compiles the kernel library from the
// embedded sources and returns the backend. Off macOS (or without cgo) it
// returns an error wrapping kernels.ErrUnavailable, so `backend: auto`
// falls back to the CPU.
func Open(opts kernels.Options) (*Backend, error) {
	dev, err := openDevice()
	if err != nil {
		return nil, fmt.Errorf("metal: %w", err)
	}
	return newBackend(dev, opts)
}
