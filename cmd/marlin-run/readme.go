package main

import (
	"flag"
	"fmt"
	"strings"
)

// cliReference renders the command table as the README's CLI section
// (between `<!-- BEGIN GENERATED: cli -->` markers; `make docs` writes it
// and TestREADMECLISection fails when it is stale): one synopsis line per
// command with its flags, then the common flags.
func cliReference(cmds []*command) string {
	var b strings.Builder
	b.WriteString("```\n")
	width := 0
	for _, c := range cmds {
		width = max(width, len(c.Name))
	}
	for _, c := range cmds {
		fmt.Fprintln(&b, strings.TrimRight(fmt.Sprintf("marlin-run %-*s %s", width, c.Name, c.Usage), " "))
	}
	b.WriteString("marlin-run --version\n```\n\n")
	b.WriteString("| command | what it does | flags |\n|---|---|---|\n")
	var common []string
	a := &app{}
	fs := flag.NewFlagSet("common", flag.ContinueOnError)
	a.commonFlags(fs)
	fs.VisitAll(func(f *flag.Flag) { common = append(common, flagSynopsis(f)) })
	jfs := flag.NewFlagSet("job", flag.ContinueOnError)
	a.jobFlags(jfs)
	var jobFlags []string
	jfs.VisitAll(func(f *flag.Flag) { jobFlags = append(jobFlags, flagSynopsis(f)) })
	for _, c := range cmds {
		var own []string
		if c.Job {
			own = append(own, jobFlags...)
		}
		if c.Flags != nil {
			fs := flag.NewFlagSet(c.Name, flag.ContinueOnError)
			c.Flags(fs)
			fs.VisitAll(func(f *flag.Flag) { own = append(own, flagSynopsis(f)) })
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", c.Name, strings.ReplaceAll(c.Summary, "|", `\|`), strings.ReplaceAll(strings.Join(own, " "), "|", `\|`))
	}
	fmt.Fprintf(&b, "\nEvery command also takes %s; `marlin-run COMMAND -h` describes each flag.\n", strings.Join(common, " and "))
	return b.String()
}

// flagSynopsis is "`--name`" or "`--name VALUE`" (the value name from the
// usage text's backquoted word, else the flag's type, in capitals unless
// it spells the values: text|dot, path=value); one-letter flags get one
// dash.
func flagSynopsis(f *flag.Flag) string {
	dash := "--"
	if len(f.Name) == 1 {
		dash = "-"
	}
	name, _ := flag.UnquoteUsage(f)
	if name == "" {
		return "`" + dash + f.Name + "`"
	}
	if !strings.ContainsAny(name, "|=") {
		name = strings.ToUpper(name)
	}
	return "`" + dash + f.Name + " " + name + "`"
}
