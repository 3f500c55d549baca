package main

import (
	"context"
	"fmt"
	"runtime/debug"
	"strings"
)

func versionCommand() *command {
	return &command{
		Name:    "version",
		Usage:   "",
		Summary: "print marlin-run's module version, VCS revision and Go version (also --version)",
		Run: func(ctx context.Context, a *app, args []string) error {
			if len(args) != 0 {
				return usagef("takes no arguments")
			}
			bi, ok := debug.ReadBuildInfo()
			fmt.Fprintln(a.Stdout, versionString(bi, ok))
			return nil
		},
	}
}

// versionString renders build information as one line: "marlin-run
// VERSION (revision REV, TIME, modified) GOVERSION". A binary built from
// a git checkout carries the revision (go build stamps vcs.* settings);
// `go install ...@v1.2.3` carries the module version.
func versionString(bi *debug.BuildInfo, ok bool) string {
	if !ok || bi == nil {
		return "marlin-run (no build information)"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var vcs []string
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	if r := settings["vcs.revision"]; r != "" {
		if len(r) > 12 {
			r = r[:12]
		}
		vcs = append(vcs, "revision "+r)
	}
	if t := settings["vcs.time"]; t != "" {
		vcs = append(vcs, t)
	}
	if settings["vcs.modified"] == "true" {
		vcs = append(vcs, "modified")
	}
	s := "marlin-run " + v
	if len(vcs) > 0 {
		s += " (" + strings.Join(vcs, ", ") + ")"
	}
	if bi.GoVersion != "" {
		s += " " + bi.GoVersion
	}
	return s
}
