package metal

import (
	"os"
	"os/exec"
	"testing"
)

// TestObjCBridgeParsesWithStubs syntax- and type-checks bridge_darwin.m
// with clang (Objective-C, ARC) against stand-ins for Foundation and Metal
// (check/stubs) that declare the SDK's signatures of what the bridge uses:
// misspelt selectors, wrong argument types and ARC errors show up on Linux.
// Whether the stubs match the real SDK is checked only on a Mac.
func TestObjCBridgeParsesWithStubs(t *testing.T) {
	var clang string
	for _, n := range []string{"clang", "clang-14", "clang-15", "clang-16"} {
		if p, err := exec.LookPath(n); err == nil {
			clang = p
			break
		}
	}
	if clang == "" {
		if os.Getenv("MARLIN_REQUIRE_CLANG") != "" {
			t.Fatal("no clang on PATH (apt-get install clang)")
		}
		t.Skip("no clang on PATH: Objective-C syntax check skipped (apt-get install clang)")
	}
	cmd := exec.Command(clang, "-fsyntax-only", "-x", "objective-c", "-fobjc-arc", "-fobjc-runtime=macosx-11.0",
		"-fblocks", "-Wall", "-Wextra", "-Werror", "-I", "check/stubs", "bridge_darwin.m")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
}
