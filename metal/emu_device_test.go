//go:build linux && cgo

package metal

import (
	"errors"
	"testing"

	"github.com/marlin-llm/marlin/kernels"
	"github.com/marlin-llm/marlin/metal/launch"
	"github.com/marlin-llm/marlin/metal/shaders"
)

// emuDevice runs the backend's dispatches in the shaders emulator, with
// the same argument lists the Objective-C bridge receives.
type emuDevice struct {
	order shaders.Order
}

func (d *emuDevice) name() string { return "emulator" }

func (d *emuDevice) dispatch(l launch.Launch, args []arg) error {
	bufs := make([][]byte, len(args))
	for i, a := range args {
		bufs[i] = a.data
	}
	return shaders.EmuDispatch(l, bufs, d.order)
}

func testDevice(t *testing.T) device { return &emuDevice{} }

// TestOffMacUnavailable: off macOS, Open reports ErrUnavailable and auto
// picks the CPU.
func TestOffMacUnavailable(t *testing.T) {
	if _, err := Open(kernels.Options{}); !errors.Is(err, kernels.ErrUnavailable) {
		t.Fatalf("Open: %v, want ErrUnavailable", err)
	}
	if _, err := kernels.Open("metal", kernels.Options{}); !errors.Is(err, kernels.ErrUnavailable) {
		t.Fatalf("kernels.Open(metal): %v, want ErrUnavailable", err)
	}
	b, err := kernels.Open("auto", kernels.Options{})
	if err != nil || b.Name() != "cpu" {
		t.Fatalf("auto: %v, %v; want the cpu backend", b, err)
	}
}
