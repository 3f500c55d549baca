//go:build linux && cgo

package metal

import (
	"github.com/marlin-llm/marlin/metal/shaders"
)

// emuDevice runs the backend's dispatches in the shaders emulator, with
// the same argument lists the Objective-C bridge receives.
type emuDevice struct {
	order    shaders.Order
	launches []shaders.Launch
}

func (d *emuDevice) name() string { return "emulator" }

func (d *emuDevice) dispatch(l shaders.Launch, args []arg) error {
	d.launches = append(d.launches, l)
	bufs := make([][]byte, len(args))
	for i, a := range args {
		if len(a.data) == 0 {
			panic("empty argument reaches the device")
		}
		bufs[i] = a.data
	}
	return shaders.EmuDispatch(l, bufs, d.order)
}
