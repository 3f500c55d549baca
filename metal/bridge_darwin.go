//go:build darwin && cgo

package metal

/*
#cgo CFLAGS: -fobjc-arc
#cgo LDFLAGS: -framework Metal -framework Foundation -framework CoreFoundation
#include <stdlib.h>
#include "bridge_darwin.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"unsafe"

	"github.com/marlin-llm/marlin/kernels"
	"github.com/marlin-llm/marlin/metal/launch"
)

// mtlDevice is a device backed by the Objective-C bridge.
type mtlDevice struct {
	ctx     *C.mq_ctx
	devName string
}

func openDevice() (device, error) {
	src, err := LibrarySource()
	if err != nil {
		return nil, err
	}
	csrc := C.CString(src)
	defer C.free(unsafe.Pointer(csrc))
	var ebuf [4096]C.char
	ctx := C.mq_open(csrc, &ebuf[0], C.size_t(len(ebuf)))
	if ctx == nil {
		return nil, fmt.Errorf("%s: %w", C.GoString(&ebuf[0]), kernels.ErrUnavailable)
	}
	var nbuf [256]C.char
	C.mq_device_name(ctx, &nbuf[0], C.size_t(len(nbuf)))
	d := &mtlDevice{ctx: ctx, devName: C.GoString(&nbuf[0])}
	runtime.AddCleanup(d, func(c *C.mq_ctx) { C.mq_close(c) }, ctx)
	return d, nil
}

func (d *mtlDevice) name() string { return d.devName }

func (d *mtlDevice) dispatch(l launch.Launch, args []arg) error {
	for _, g := range l.Groups {
		if g == 0 {
			return nil
		}
	}
	// The argument array lives in C memory and points at Go memory: the
	// pinner keeps those pointers valid (cgo's rules) until the GPU is done.
	var pin runtime.Pinner
	defer pin.Unpin()
	cargs := (*[1 << 10]C.mq_arg)(C.calloc(C.size_t(len(args)), C.size_t(unsafe.Sizeof(C.mq_arg{}))))
	if cargs == nil {
		return fmt.Errorf("out of C memory")
	}
	defer C.free(unsafe.Pointer(cargs))
	for i, a := range args {
		if len(a.data) == 0 {
			return fmt.Errorf("%s: empty argument %d", l.Kernel, i)
		}
		pin.Pin(&a.data[0])
		kind := C.MQ_ARG_IN
		switch {
		case a.param:
			kind = C.MQ_ARG_BYTES
		case a.out:
			kind = C.MQ_ARG_OUT
		}
		cargs[i] = C.mq_arg{kind: C.int(kind), ptr: unsafe.Pointer(&a.data[0]), len: C.size_t(len(a.data))}
	}
	name := C.CString(l.Kernel)
	defer C.free(unsafe.Pointer(name))
	groups := [3]C.uint32_t{C.uint32_t(l.Groups[0]), C.uint32_t(l.Groups[1]), C.uint32_t(l.Groups[2])}
	threads := [3]C.uint32_t{C.uint32_t(l.Threads[0]), C.uint32_t(l.Threads[1]), C.uint32_t(l.Threads[2])}
	var ebuf [4096]C.char
	if C.mq_dispatch(d.ctx, name, &cargs[0], C.int(len(args)), &groups[0], &threads[0], &ebuf[0], C.size_t(len(ebuf))) != 0 {
		return fmt.Errorf("%s", C.GoString(&ebuf[0]))
	}
	runtime.KeepAlive(d)
	return nil
}
