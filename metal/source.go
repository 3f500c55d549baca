package metal

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
//go:embed shaders/marlin.metal shaders/mq_*.h
var sources embed.FS

// MainFile is the MSL file whose #include tree forms the library.
const MainFile = "marlin.metal"

// shaderDir is where the sources live, relative to this package.
const shaderDir = "shaders"

// Sources returns the embedded MSL sources (marlin.metal and the mq_*.h
// headers of ./shaders).
func Sources() fs.FS {
	sub, err := fs.Sub(sources, shaderDir)
	if err != nil {
		panic(err) // a constant, valid directory name
	}
	return sub
}

var includeRE = regexp.MustCompile(`^\s*#\s*include\s+"([^"]+)"\s*$`)

// LibrarySource returns marlin.metal with its quoted #include directives
// replaced by the embedded headers (each header once, as its include guard
// would have it), ready for newLibraryWithSource, which cannot resolve
// includes from memory. System includes (<metal_stdlib>) are left alone.
func LibrarySource() (string, error) {
	return assemble(Sources(), MainFile)
}

// assemble inlines the quoted includes of main from fsys.
func assemble(fsys fs.FS, main string) (string, error) {
	var b strings.Builder
	seen := map[string]bool{}
	if err := inline(fsys, &b, main, seen, 0); err != nil {
		return "", fmt.Errorf("metal: assembling %s: %w", main, err)
	}
	return b.String(), nil
}

func inline(fsys fs.FS, b *strings.Builder, name string, seen map[string]bool, depth int) error {
	if depth > 16 {
		return fmt.Errorf("include depth over 16 at %s", name)
	}
	if seen[name] {
		return nil
	}
	seen[name] = true
	data, err := fs.ReadFile(fsys, name)
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	fmt.Fprintf(b, "// ---- begin %s\n", name)
	for i, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if m := includeRE.FindStringSubmatch(line); m != nil {
			if err := inline(fsys, b, m[1], seen, depth+1); err != nil {
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
