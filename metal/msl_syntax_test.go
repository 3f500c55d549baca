package metal

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// findClang returns the first of names on PATH, or skips the test (fails
// it when MARLIN_REQUIRE_CLANG is set, as make metal-check does).
func findClang(t *testing.T, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	if os.Getenv("MARLIN_REQUIRE_CLANG") != "" {
		t.Fatalf("none of %v on PATH (apt-get install clang)", names)
	}
	t.Skipf("none of %v on PATH: MSL syntax check skipped (apt-get install clang)", names)
	return ""
}

var tgDeclRE = regexp.MustCompile(`(?m)^(\s*)threadgroup (\w+ \w+\[)`)

// TestMSLParsesWithStub compiles the assembled library source, Metal side
// of every #ifdef, with clang++ against a stand-in for the Metal standard
// library (check/stubs/msl) in which device and threadgroup are
// distinct address spaces. It catches syntax errors in the MSL-only code,
// C-isms that are not C++, wrong argument counts or types for the Metal
// built-ins as declared in the stub, and pointers passed across address
// spaces. It cannot catch what only Apple's compiler knows (MSL's own
// restrictions, the real headers).
func TestMSLParsesWithStub(t *testing.T) {
	clang := findClang(t, "clang++", "clang++-14", "clang++-15", "clang++-16")
	src, err := LibrarySource()
	if err != nil {
		t.Fatal(err)
	}
	// Kernel-scope threadgroup arrays become static so that they may carry
	// an address space in C++.
	src = tgDeclRE.ReplaceAllString(src, "${1}static threadgroup ${2}")
	f := filepath.Join(t.TempDir(), "marlin_metal.cc")
	if err := os.WriteFile(f, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	stubs, err := filepath.Abs(filepath.Join("check", "stubs", "msl"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(clang, "-fsyntax-only", "-std=c++17", "-D__METAL_VERSION__=310", "-Wall", "-Werror",
		"-Wno-unknown-attributes", "-Wno-unused-function", "-I", stubs, "-x", "c++", f)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
}
