package metal

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/marlin-llm/marlin/metal/launch"
)

// TestHeadersReachTheGPU checks that what the Linux tests compile is what
// the GPU compiles: every shared header in this directory is part of the
// assembled library source, verbatim, and nothing is left to include.
func TestHeadersReachTheGPU(t *testing.T) {
	src, err := LibrarySource()
	if err != nil {
		t.Fatal(err)
	}
	headers, err := filepath.Glob(filepath.Join(shaderDir, "mq_*.h"))
	if err != nil || len(headers) < 5 {
		t.Fatalf("headers %v, %v", headers, err)
	}
	for _, h := range headers {
		data, err := os.ReadFile(h)
		if err != nil {
			t.Fatal(err)
		}
		body := removeIncludes(string(data))
		if !strings.Contains(src, body) {
			t.Errorf("%s is not in the library source verbatim", h)
		}
		h = filepath.Base(h)
		if c := strings.Count(src, "// ---- begin "+h+"\n"); c != 1 {
			t.Errorf("%s inlined %d times", h, c)
		}
	}
	if regexp.MustCompile(`(?m)^\s*#\s*include\s+"`).MatchString(src) {
		t.Error("library source still has a quoted #include")
	}
	// The emulator compiles the same headers.
	emu, err := os.ReadFile(filepath.Join(shaderDir, "emu_kernels.h"))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"mq_gemm.h", "mq_fwht.h", "mq_moe.h"} {
		if !strings.Contains(string(emu), `#include "`+h+`"`) {
			t.Errorf("emu_kernels.h does not include %s", h)
		}
	}
}

func removeIncludes(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if !includeRE.MatchString(l) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

var (
	kernelRE = regexp.MustCompile(`(?s)kernel\s+void\s+(\w+)\s*\((.*?)\)\s*\{(.*?)\n\}`)
	bufferRE = regexp.MustCompile(`(\w+)\s*\[\[buffer\((\d+)\)\]\]`)
	bodyRE   = regexp.MustCompile(`(mq_\w+_body)\(`)
)

// TestBindingsMatchMetal parses the kernel signatures of marlin.metal: their
// [[buffer(i)]] arguments must be launch.Bindings in order, and the emulator's
// entry for each kernel must call the same body function.
func TestBindingsMatchMetal(t *testing.T) {
	metal, err := os.ReadFile(filepath.Join(shaderDir, MainFile))
	if err != nil {
		t.Fatal(err)
	}
	emu, err := os.ReadFile(filepath.Join(shaderDir, "emu_kernels.c"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, m := range kernelRE.FindAllStringSubmatch(string(metal), -1) {
		name, params, body := m[1], m[2], m[3]
		seen[name] = true
		want, ok := launch.Bindings[name]
		if !ok {
			t.Errorf("kernel %s has no launch.Bindings entry", name)
			continue
		}
		var got []string
		for i, b := range bufferRE.FindAllStringSubmatch(params, -1) {
			if b[2] != strconv.Itoa(i) {
				t.Errorf("%s: argument %s at buffer(%s), want buffer(%d)", name, b[1], b[2], i)
			}
			got = append(got, b[1])
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: buffers %v, launch.Bindings %v", name, got, want)
		}
		bm := bodyRE.FindStringSubmatch(body)
		if bm == nil {
			t.Errorf("%s calls no mq_*_body", name)
			continue
		}
		if !strings.Contains(string(emu), bm[1]+"(") {
			t.Errorf("%s: the emulator never calls %s", name, bm[1])
		}
	}
	var missing []string
	for k := range launch.Bindings {
		if !seen[k] {
			missing = append(missing, k)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("launch.Bindings name kernels absent from %s: %v", MainFile, missing)
	}
	// Every launch plan names a kernel that exists.
	p := launch.QParams{Rows: 3, Cols: 5, M: 2}
	fw, _ := launch.PlanFWHT(launch.FWHTParams{Total: 64, Log2B: 6})
	fs, _ := launch.PlanFWHT(launch.FWHTParams{Total: 64, Log2B: 2})
	rt, _ := launch.PlanRouter(launch.RouterParams{Tokens: 1, Experts: 4, K: 2})
	for _, l := range []launch.Launch{launch.PlanDequant(p), launch.PlanGEMM(p), launch.PlanGEMV(p), launch.PlanMoEGEMM(p, 3), fw, fs, rt} {
		if !seen[l.Kernel] {
			t.Errorf("plan names kernel %q, absent from %s", l.Kernel, MainFile)
		}
	}
}

func TestAssembleErrors(t *testing.T) {
	fsys := fstest.MapFS{
		"main.metal":    {Data: []byte("#include \"a.h\"\n#include <metal_stdlib>\nkernel\n")},
		"a.h":           {Data: []byte("#include \"b.h\"\nA\n#include \"a.h\"\n")},
		"b.h":           {Data: []byte("B\n")},
		"missing.metal": {Data: []byte("x\n  #  include \"nope.h\"\n")},
		"loop.metal":    {Data: []byte("#include \"loop.metal\"\n")},
	}
	src, err := assemble(fsys, "main.metal")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(src, "B\n// ---- end b.h\nA\n") || strings.Count(src, "begin a.h") != 1 || !strings.Contains(src, "#include <metal_stdlib>") {
		t.Fatalf("assembled:\n%s", src)
	}
	if _, err := assemble(fsys, "missing.metal"); err == nil || !strings.Contains(err.Error(), "missing.metal:2") {
		t.Fatalf("missing header: %v", err)
	}
	if _, err := assemble(fsys, "loop.metal"); err != nil {
		t.Fatalf("self-include (guarded): %v", err)
	}
}

// FuzzAssemble: any source text assembles without panicking or looping
// (includes of known, unknown and self names).
func FuzzAssemble(f *testing.F) {
	f.Add("#include \"a.h\"\nx\n")
	f.Add("  #include \"main.metal\"\n#include \"zz.h\"")
	f.Add("#include <metal_stdlib>\n#include \"")
	f.Fuzz(func(t *testing.T, text string) {
		fsys := fstest.MapFS{
			"main.metal": {Data: []byte(text)},
			"a.h":        {Data: []byte(text + "\n#include \"a.h\"\n")},
		}
		src, err := assemble(fsys, "main.metal")
		if err == nil && !strings.HasPrefix(src, "// ---- begin main.metal\n") {
			t.Fatalf("assembled %q", src)
		}
	})
}
