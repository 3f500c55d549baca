// Package shaders holds marlin's Metal Shading Language kernels, the host
// side of their launch (parameter blocks and grid shapes), and, on Linux
// with cgo, an emulator that runs the very same kernel code on the CPU.
//
// The arithmetic of every kernel (element and scale decoding, the GEMM tile
// loop, FWHT butterflies, router top-k) lives in the mq_*.h headers, written
// in the dialect shared by MSL and C (mq_compat.h). marlin.metal holds only
// the `kernel` entry points: argument binding and threadgroup arrays. On a
// Mac, LibrarySource inlines the headers into one source string that the
// metal package compiles with newLibraryWithSource. On Linux, emu.c and
// emu_kernels.c compile the same headers with gcc (half is _Float16) and run
// whole kernels under a small grid emulator (fibers per thread, barriers,
// SIMD-group reductions and shuffles, 8x8 simdgroup_matrix), which the tests
// compare with quant/ and kernels/.
//
// Why hand-written: no Go library emulates Metal's compute model, and the
// point is to test our own kernel source, so the emulator is ours (about 300
// lines of C); it is deliberately simple (one OS thread, ucontext fibers).
package shaders

import (
	"embed"
	"fmt"
	"io/fs"
	"regexp"
	"strings"
)

// sources are the files the GPU compiles: the entry points and the shared
// headers (the emulator's C files are not part of it).
//
//go:embed marlin.metal mq_*.h
var sources embed.FS

// MainFile is the MSL file whose #include tree forms the library.
const MainFile = "marlin.metal"

// FS returns the embedded MSL sources (marlin.metal and the mq_*.h headers).
func FS() fs.FS { return sources }

var includeRE = regexp.MustCompile(`^\s*#\s*include\s+"([^"]+)"\s*$`)

// LibrarySource returns marlin.metal with its quoted #include directives
// replaced by the embedded headers (each header once, as its include guard
// would have it), ready for newLibraryWithSource, which cannot resolve
// includes from memory. System includes (<metal_stdlib>) are left alone.
func LibrarySource() (string, error) {
	var b strings.Builder
	seen := map[string]bool{}
	if err := inline(&b, MainFile, seen, 0); err != nil {
		return "", fmt.Errorf("shaders: assembling %s: %w", MainFile, err)
	}
	return b.String(), nil
}

func inline(b *strings.Builder, name string, seen map[string]bool, depth int) error {
	if depth > 16 {
		return fmt.Errorf("include depth over 16 at %s", name)
	}
	if seen[name] {
		return nil
	}
	seen[name] = true
	data, err := sources.ReadFile(name)
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	fmt.Fprintf(b, "// ---- begin %s\n", name)
	for i, line := range strings.Split(string(data), "\n") {
		if m := includeRE.FindStringSubmatch(line); m != nil {
			if err := inline(b, m[1], seen, depth+1); err != nil {
				return fmt.Errorf("%s:%d: %w", name, i+1, err)
			}
			continue
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	fmt.Fprintf(b, "// ---- end %s\n", name)
	return nil
}
