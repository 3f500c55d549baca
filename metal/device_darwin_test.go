//go:build darwin

package metal

import (
	"errors"
	"testing"

	"github.com/marlin-llm/marlin/kernels"
)

// testDevice opens the Mac's GPU; without one (or without cgo) the tests
// that need it skip.
func testDevice(t *testing.T) device {
	t.Helper()
	dev, err := openDevice()
	if errors.Is(err, kernels.ErrUnavailable) {
		t.Skipf("no Metal device: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Metal device: %s", dev.name())
	return dev
}

// TestAutoPicksMetal: on a Mac with a GPU, backend auto is Metal.
func TestAutoPicksMetal(t *testing.T) {
	testDevice(t)
	b, err := kernels.Open("auto", kernels.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if b.Name() != "metal" {
		t.Fatalf("auto picked %s", b.Name())
	}
}
