//go:build !darwin || !cgo

package metal

import (
	"fmt"
	"runtime"

	"github.com/marlin-llm/marlin/kernels"
)

// openDevice: Metal exists only on Apple platforms (and the bridge needs
// cgo).
func openDevice() (device, error) {
	return nil, fmt.Errorf("no Metal on %s/%s (or built without cgo): %w", runtime.GOOS, runtime.GOARCH, kernels.ErrUnavailable)
}
