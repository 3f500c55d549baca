package main

import (
	"bytes"
	"flag"
	"os"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/internal/readme"
	"github.com/marlin-llm/marlin/pipeline"
)

var updateREADME = flag.Bool("update-readme", false, "rewrite README.md's generated CLI section (make docs)")

// TestREADMECLISection fails when README.md's CLI section is not what the
// command table generates (a command or flag missing from the README):
// run `make docs`.
func TestREADMECLISection(t *testing.T) {
	const path = "../../README.md"
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sec := cliReference(commands())
	got, err := readme.Update(doc, map[string]string{"cli": sec})
	if err != nil {
		t.Fatal(err)
	}
	if *updateREADME {
		if err := pipeline.WriteFileAtomic(path, got); err != nil {
			t.Fatal(err)
		}
		return
	}
	if !bytes.Equal(got, doc) {
		t.Fatal("README.md's CLI section is out of date: run `make docs` and commit README.md")
	}
	// every command and its flags appear (not only the synopsis)
	for _, c := range commands() {
		if !strings.Contains(string(doc), "marlin-run "+c.Name) || !strings.Contains(string(doc), "| `"+c.Name+"` |") {
			t.Errorf("README.md lacks command %s", c.Name)
		}
		if c.Flags != nil {
			fs := flag.NewFlagSet(c.Name, flag.ContinueOnError)
			c.Flags(fs)
			fs.VisitAll(func(f *flag.Flag) {
				if !strings.Contains(sec, "`"+strings.Fields(strings.Trim(flagSynopsis(f), "`"))[0]) {
					t.Errorf("CLI section lacks %s --%s", c.Name, f.Name)
				}
			})
		}
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"-version"}, {"version"}} {
		code, out, errs := cli(t, args...)
		if code != 0 || !strings.HasPrefix(out, "marlin-run ") {
			t.Errorf("%v: exit %d, %q %q", args, code, out, errs)
		}
	}
	cases := []struct {
		name string
		bi   *debug.BuildInfo
		ok   bool
		want string
	}{
		{"none", nil, false, "marlin-run (no build information)"},
		{"module version", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v1.2.3"}}, true, "marlin-run v1.2.3 go1.26.0"},
		{"vcs", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.time", Value: "2026-01-02T03:04:05Z"}, {Key: "vcs.modified", Value: "true"},
		}}, true, "marlin-run (devel) (revision 0123456789ab, 2026-01-02T03:04:05Z, modified) go1.26.0"},
		{"clean vcs", &debug.BuildInfo{Main: debug.Module{}, Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "false"}}}, true, "marlin-run (devel) (revision abc)"},
	}
	for _, c := range cases {
		if got := versionString(c.bi, c.ok); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
